#pragma once
// Thin helpers over OpenMP. Bodies must not throw (see error.h).
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace fastrnn {

inline int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Splits rows x cols elements into one contiguous range per thread and calls
// fn(row, col_begin, col_end) for each row segment of the caller's range. Work under
// `serial_below` elements runs on the calling thread: a parallel region costs microseconds.
template <typename Fn>
void parallel_rows(int64_t rows, int64_t cols, int64_t serial_below, const Fn& fn) {
  const int64_t total = rows * cols;
  if (total <= 0) return;
  auto run_range = [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t row = begin / cols;
      const int64_t col = begin - row * cols;
      const int64_t col_end = std::min(cols, col + (end - begin));
      fn(row, col, col_end);
      begin += col_end - col;
    }
  };
  const int threads = static_cast<int>(std::min<int64_t>(max_threads(), total / std::max<int64_t>(serial_below, 1) + 1));
  if (threads <= 1) {
    run_range(0, total);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    run_range(total * id / n, total * (id + 1) / n);
  }
}

}  // namespace fastrnn
