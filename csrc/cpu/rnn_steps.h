#pragma once
// Helpers of the RNN forward and backward drivers, and the teams of threads that run the calls.
// Read only through rnn_impl.h, whose top says what the includer provides.
#include "cpu/rnn_workspace.h"

// What the forward and backward jobs start with: the call's sizes and how its steps are walked.
struct SequenceJob {
  const RnnDims* d;
  const int64_t* batch_sizes;  // (T), or null: every step has B rows
  bool reverse;
};

template <typename T>
const T* data_or_null(const TensorView& v) {
  return v.defined() ? v.data_as<T>() : nullptr;
}

template <typename T>
void gemm_call(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc, const GemmScratch& scratch) {
  GemmArgs<T> g;
  g.trans_a = trans_a, g.trans_b = trans_b;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.B = B, g.ldb = ldb;
  g.beta = beta, g.C = C, g.ldc = ldc;
  parallel_gemm(g, scratch);
}

// Column sums of a (rows, cols) matrix (the bias gradients), split over columns.
template <typename T>
void column_sums(const T* m, int64_t rows, int64_t cols, T* out) {
  const int n = cols * rows < 65536 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(n)
  {
    const Range r = split(cols, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t j = r.begin; j < r.end; ++j) out[j] = T(0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = m + i * cols;
#pragma omp simd
      for (int64_t j = r.begin; j < r.end; ++j) out[j] += row[j];
    }
  }
}

// dst (n values) = src, or zeros when src is absent (a bias, an initial state or its gradient).
template <typename T>
void copy_or_zero(T* dst, const TensorView& src, int64_t n) {
  if (src.defined()) {
    std::memcpy(dst, src.data, n * sizeof(T));
  } else {
    std::memset(dst, 0, n * sizeof(T));
  }
}

// dst[b, j0:j0+cols] = mask[b, j0:j0+cols] * src[b, j0:j0+cols] for rows b < rows.
template <typename T>
void mask_columns(int64_t rows, int64_t j0, int64_t cols, const T* src, int64_t src_ld, const T* mask, int64_t P,
                  T* dst) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* s = src + b * src_ld + j0;
    const T* m = mask + b * P + j0;
    T* o = dst + b * P + j0;
#pragma omp simd
    for (int64_t u = 0; u < cols; ++u) o[u] = m[u] * s[u];
  }
}

// Splits the threads between `count` independent calls (the two directions of a layer), so
// they run side by side: each team meets only at its own barrier. Returns the region size and
// fills team_of(first thread) / size of each team.
template <typename T>
int plan_teams(const RnnDims* const* dims, int count, int* team_start, int* team_size) {
  const int available = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (count > available) return 0;  // not enough threads: the caller runs the calls one by one
  int total = 0;
  for (int k = 0; k < count; ++k) {
    const Range share = split(available, k, count);
    const int want = recurrence_threads<T>(*dims[k]);
    team_size[k] = static_cast<int>(share.end - share.begin) < want ? static_cast<int>(share.end - share.begin) : want;
    team_start[k] = total;
    total += team_size[k];
  }
  return total;
}

template <typename T, typename Prepared, typename RunTeam>
void run_calls(Prepared* calls, const RnnDims* const* dims, int count, const RunTeam& run_team) {
  int team_start[kMaxCalls], team_size[kMaxCalls];
  const int total = count > 1 ? plan_teams<T>(dims, count, team_start, team_size) : 0;
  if (total == 0) {  // one at a time, each with all the threads it can use
    for (int k = 0; k < count; ++k) {
      SpinBarrier barrier;
#pragma omp parallel num_threads(recurrence_threads<T>(*dims[k]))
      {
#pragma omp single
        barrier.reset(omp_get_num_threads());
        run_team(calls[k], omp_get_thread_num(), omp_get_num_threads(), barrier);
      }
    }
    return;
  }
  SpinBarrier barriers[kMaxCalls];
  for (int k = 0; k < count; ++k) barriers[k].reset(team_size[k]);
#pragma omp parallel num_threads(total)
  {
    // Should OpenMP grant fewer threads than asked, the teams would wait forever at their
    // barriers: then one thread runs the calls one after the other instead.
    if (omp_get_num_threads() == total) {
      const int tid = omp_get_thread_num();
      int k = 0;
      while (k + 1 < count && tid >= team_start[k + 1]) ++k;
      run_team(calls[k], tid - team_start[k], team_size[k], barriers[k]);
    } else {
#pragma omp single
      for (int k = 0; k < count; ++k) {
        SpinBarrier alone;
        alone.reset(1);
        run_team(calls[k], 0, 1, alone);
      }
    }
  }
}
