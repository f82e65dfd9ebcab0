#pragma once
// Portable pooling loops for every option combination, and the work splitting shared by the
// per-ISA files (which run their SIMD rows on the interior and these loops on the borders).
// In an unnamed namespace: each translation unit keeps its own copy (see common/parallel.h).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <limits>

#include "common/parallel.h"
#include "common/pool_params.h"

namespace fastrnn::cpu {
namespace {

// The argmax (ih, iw) of output (oh, ow) as an index: int64, its flat position in the plane
// (torch's); uint8, its window slot (common/pool_params.h).
inline void store_argmax(int64_t* index, const Pool2dShape& s, const Pool2dParams&, int64_t, int64_t, int64_t ih,
                         int64_t iw) {
  *index = ih * s.width + iw;
}
inline void store_argmax(uint8_t* index, const Pool2dShape&, const Pool2dParams& p, int64_t oh, int64_t ow,
                         int64_t ih, int64_t iw) {
  const int64_t kh = (ih - (oh * p.stride_h - p.pad_h)) / p.dilation_h;
  const int64_t kw = (iw - (ow * p.stride_w - p.pad_w)) / p.dilation_w;
  *index = static_cast<uint8_t>(kh * p.kernel_w + kw);
}

// position(index, oh, ow, h0, h1): the flat position in the plane where output (oh, ow)'s
// gradient lands, or -1 outside the input rows [h0, h1) a thread owns (and, for a corrupt index,
// outside the plane). int64: the index itself.
template <typename Index>
class ArgmaxPosition {
 public:
  ArgmaxPosition(const Pool2dShape& s, const Pool2dParams&) : width_(s.width) {}
  int64_t operator()(int64_t at, int64_t, int64_t, int64_t h0, int64_t h1) const {
    return at >= h0 * width_ && at < h1 * width_ ? at : -1;
  }

 private:
  int64_t width_;
};

// uint8 window slots: the window's corner plus the slot's offset, looked up in tables (a
// division by kernel_w per gradient costs more than the scatter itself). Slots past the window
// have offsets far outside the plane, so they land nowhere.
template <>
class ArgmaxPosition<uint8_t> {
 public:
  ArgmaxPosition(const Pool2dShape& s, const Pool2dParams& p) : s_(s), p_(p) {
    constexpr int64_t kNowhere = -(int64_t(1) << 40);
    for (int64_t slot = 0; slot < kMaxWindowSlots; ++slot) {
      const bool inside = slot < p.kernel_h * p.kernel_w;
      row_[slot] = inside ? slot / p.kernel_w * p.dilation_h : kNowhere;
      col_[slot] = inside ? slot % p.kernel_w * p.dilation_w : 0;
      offset_[slot] = row_[slot] * s.width + col_[slot];
    }
    // Outputs whose windows lie inside [0, W) horizontally: [inner_first_, inner_last_).
    inner_first_ = (p.pad_w + p.stride_w - 1) / p.stride_w;
    const int64_t reach = s.width - 1 - (p.kernel_w - 1) * p.dilation_w + p.pad_w;
    inner_last_ = reach < 0 ? 0 : reach / p.stride_w + 1;
    inner_last_ = inner_last_ < s.out_width ? inner_last_ : s.out_width;
    inner_last_ = inner_last_ < inner_first_ ? inner_first_ : inner_last_;
  }
  int64_t operator()(uint8_t slot, int64_t oh, int64_t ow, int64_t h0, int64_t h1) const {
    const int64_t ih = oh * p_.stride_h - p_.pad_h + row_[slot];
    const int64_t iw = ow * p_.stride_w - p_.pad_w + col_[slot];
    return ih >= h0 && ih < h1 && iw >= 0 && iw < s_.width ? ih * s_.width + iw : -1;
  }
  // Output row oh's gradients, columns [ow0, ow1), added at their argmax in the rows [h0, h1).
  // Windows inside horizontally need only the flat range test (as int64 positions do).
  template <typename T>
  void scatter(const T* grad_out, const uint8_t* slot, T* grad_plane, int64_t oh, int64_t h0, int64_t h1,
               int64_t ow0, int64_t ow1) const {
    const int64_t first = ow0 > inner_first_ ? ow0 : inner_first_;
    const int64_t last = ow1 < inner_last_ ? ow1 : inner_last_;
    if (first >= last) return edges(grad_out, slot, grad_plane, oh, h0, h1, ow0, ow1);
    edges(grad_out, slot, grad_plane, oh, h0, h1, ow0, first);
    const int64_t lo = h0 * s_.width, hi = h1 * s_.width;
    const int64_t corner = (oh * p_.stride_h - p_.pad_h) * s_.width - p_.pad_w;
    for (int64_t ow = first; ow < last; ++ow) {
      const int64_t at = corner + ow * p_.stride_w + offset_[slot[ow]];
      if (at >= lo && at < hi) grad_plane[at] += grad_out[ow];
    }
    edges(grad_out, slot, grad_plane, oh, h0, h1, last, ow1);
  }

 private:
  template <typename T>
  void edges(const T* grad_out, const uint8_t* slot, T* grad_plane, int64_t oh, int64_t h0, int64_t h1, int64_t ow0,
             int64_t ow1) const {
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const int64_t at = (*this)(slot[ow], oh, ow, h0, h1);
      if (at >= 0) grad_plane[at] += grad_out[ow];
    }
  }

  Pool2dShape s_;
  Pool2dParams p_;
  int64_t inner_first_, inner_last_;
  int64_t row_[kMaxWindowSlots], col_[kMaxWindowSlots], offset_[kMaxWindowSlots];
};

// Output (oh, ow) of a max pool over one (H, W) plane: torch's scan order, `>` keeps the first
// of equal maxima, a NaN always takes over (so the last NaN's index is kept). Index: int64_t or
// uint8_t (see store_argmax); `index` may be null.
template <typename T, typename Index>
inline void max_element(const T* plane, const Pool2dShape& s, const Pool2dParams& p, int64_t oh, int64_t ow,
                        T* out, Index* index) {
  const WindowRange rows = max_window(oh, p.kernel_h, p.pad_h, p.stride_h, p.dilation_h, s.height);
  const WindowRange cols = max_window(ow, p.kernel_w, p.pad_w, p.stride_w, p.dilation_w, s.width);
  T best = -std::numeric_limits<T>::infinity();
  int64_t at_h = rows.first, at_w = cols.first;
  for (int64_t ih = rows.first; ih < rows.last; ih += p.dilation_h) {
    const T* row = plane + ih * s.width;
    for (int64_t iw = cols.first; iw < cols.last; iw += p.dilation_w) {
      const T v = row[iw];
      if (v > best || v != v) {
        best = v;
        at_h = ih, at_w = iw;
      }
    }
  }
  *out = best;
  if (index != nullptr) store_argmax(index, s, p, oh, ow, at_h, at_w);
}

// Output (oh, ow) of an average pool: the window's sum in torch's order over its divisor.
template <typename T>
inline T avg_element(const T* plane, const Pool2dShape& s, const Pool2dParams& p, int64_t oh, int64_t ow) {
  const AvgWindow rows = avg_window(oh, p.kernel_h, p.pad_h, p.stride_h, s.height);
  const AvgWindow cols = avg_window(ow, p.kernel_w, p.pad_w, p.stride_w, s.width);
  if (rows.first >= rows.last || cols.first >= cols.last) return T(0);
  T sum = 0;
  for (int64_t ih = rows.first; ih < rows.last; ++ih) {
    for (int64_t iw = cols.first; iw < cols.last; ++iw) sum += plane[ih * s.width + iw];
  }
  return sum / T(avg_divisor(p, rows, cols));
}

// Output rows [begin, end) of all planes' P * OH rows.
template <typename T, typename Index>
void max_forward_rows(const T* input, T* output, Index* indices, const Pool2dShape& s, const Pool2dParams& p,
                      int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t plane = r / s.out_height, oh = r % s.out_height;
    const T* in = input + plane * s.height * s.width;
    T* out = output + r * s.out_width;
    Index* idx = indices != nullptr ? indices + r * s.out_width : nullptr;
    for (int64_t ow = 0; ow < s.out_width; ++ow) max_element(in, s, p, oh, ow, out + ow, idx ? idx + ow : nullptr);
  }
}

template <typename T>
void avg_forward_rows(const T* input, T* output, const Pool2dShape& s, const Pool2dParams& p, int64_t begin,
                      int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t plane = r / s.out_height, oh = r % s.out_height;
    const T* in = input + plane * s.height * s.width;
    T* out = output + r * s.out_width;
    for (int64_t ow = 0; ow < s.out_width; ++ow) out[ow] = avg_element(in, s, p, oh, ow);
  }
}

// The output rows [first, last) whose windows reach input rows [h0, h1).
struct RowSpan {
  int64_t first, last;
};
inline RowSpan output_rows_touching(int64_t h0, int64_t h1, int64_t kernel, int64_t pad, int64_t stride,
                                    int64_t dilation, int64_t out_size) {
  // Window of oh spans input rows [oh*stride - pad, oh*stride - pad + (kernel-1)*dilation].
  const int64_t reach = h0 + pad - (kernel - 1) * dilation;
  int64_t first = reach <= 0 ? 0 : (reach + stride - 1) / stride;
  int64_t last = (h1 - 1 + pad) / stride + 1;
  last = last < out_size ? last : out_size;
  return {first, last < first ? first : last};
}

// Calls fn(plane, h0, h1) for the pieces of input rows [begin, end) of the P * H rows, one per plane.
template <typename Fn>
void for_each_plane_piece(const Pool2dShape& s, int64_t begin, int64_t end, const Fn& fn) {
  while (begin < end) {
    const int64_t plane = begin / s.height, h0 = begin % s.height;
    const int64_t h1 = end - plane * s.height < s.height ? end - plane * s.height : s.height;
    fn(plane, h0, h1);
    begin = plane * s.height + h1;
  }
}

// Adds output row `oh`'s gradients, columns [ow0, ow1), at their argmax if it lies in the
// owned input rows [h0, h1) (a piece of a plane: other threads own the rest).
template <typename T>
inline void max_scatter(const T* grad_out, const int64_t* idx, T* grad_plane, const ArgmaxPosition<int64_t>& position,
                        int64_t oh, int64_t h0, int64_t h1, int64_t ow0, int64_t ow1) {
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    const int64_t at = position(idx[ow], oh, ow, h0, h1);
    if (at >= 0) grad_plane[at] += grad_out[ow];
  }
}
template <typename T>
inline void max_scatter(const T* grad_out, const uint8_t* slots, T* grad_plane,
                        const ArgmaxPosition<uint8_t>& position, int64_t oh, int64_t h0, int64_t h1, int64_t ow0,
                        int64_t ow1) {
  position.scatter(grad_out, slots, grad_plane, oh, h0, h1, ow0, ow1);
}

// Adds output (oh, ow)'s gradient over its window, restricted to the owned rows [h0, h1).
template <typename T>
inline void avg_scatter(T grad, T* grad_plane, const Pool2dShape& s, const Pool2dParams& p, int64_t oh, int64_t ow,
                        int64_t h0, int64_t h1) {
  const AvgWindow rows = avg_window(oh, p.kernel_h, p.pad_h, p.stride_h, s.height);
  const AvgWindow cols = avg_window(ow, p.kernel_w, p.pad_w, p.stride_w, s.width);
  const T g = grad / T(avg_divisor(p, rows, cols));
  const int64_t first = rows.first > h0 ? rows.first : h0, last = rows.last < h1 ? rows.last : h1;
  for (int64_t ih = first; ih < last; ++ih) {
    T* row = grad_plane + ih * s.width;
    for (int64_t iw = cols.first; iw < cols.last; ++iw) row[iw] += g;
  }
}

// Input rows [h0, h1) of one plane of grad_input, written whole: zeroed, then every gradient
// that lands in them added (the rows stay in cache between the two).
template <typename T, typename Index>
void max_backward_piece(const T* grad_out, const Index* indices, T* grad_in, const Pool2dShape& s,
                        const Pool2dParams& p, const ArgmaxPosition<Index>& position, int64_t h0, int64_t h1) {
  std::memset(grad_in + h0 * s.width, 0, sizeof(T) * (h1 - h0) * s.width);
  const RowSpan span = output_rows_touching(h0, h1, p.kernel_h, p.pad_h, p.stride_h, p.dilation_h, s.out_height);
  for (int64_t oh = span.first; oh < span.last; ++oh) {
    max_scatter(grad_out + oh * s.out_width, indices + oh * s.out_width, grad_in, position, oh, h0, h1, 0,
                s.out_width);
  }
}

template <typename T>
void avg_backward_piece(const T* grad_out, T* grad_in, const Pool2dShape& s, const Pool2dParams& p, int64_t h0,
                        int64_t h1) {
  std::memset(grad_in + h0 * s.width, 0, sizeof(T) * (h1 - h0) * s.width);
  const RowSpan span = output_rows_touching(h0, h1, p.kernel_h, p.pad_h, p.stride_h, 1, s.out_height);
  for (int64_t oh = span.first; oh < span.last; ++oh) {
    for (int64_t ow = 0; ow < s.out_width; ++ow) avg_scatter(grad_out[oh * s.out_width + ow], grad_in, s, p, oh, ow, h0, h1);
  }
}

// Runs fn(begin, end) on each thread's contiguous share of `units` rows. Threads are added only
// for work worth a parallel region (about 64 KB of traffic each).
template <typename Fn>
void parallel_rows(int64_t units, int64_t bytes_per_unit, const Fn& fn) {
  constexpr int64_t kBytesPerThread = 64 << 10;
  int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t useful = units * bytes_per_unit / kBytesPerThread;
  threads = threads < useful ? threads : useful;
  threads = threads < units ? threads : units;
  if (threads <= 1) {
    if (units > 0) fn(int64_t(0), units);
    return;
  }
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const Range r = split(units, omp_get_thread_num(), omp_get_num_threads());
    if (r.begin < r.end) fn(r.begin, r.end);
  }
}

// The portable kernels: every option, any instruction set. Index: int64_t or uint8_t (window slots).
template <typename T, typename Index>
void max_forward_generic(const Pool2dShape& s, const Pool2dParams& p, const T* input, T* output, Index* indices) {
  const int64_t index_bytes = indices ? int64_t(sizeof(Index)) : 0;
  const int64_t bytes =
      (s.width * s.height / s.out_height + s.out_width) * int64_t(sizeof(T)) + s.out_width * index_bytes;
  parallel_rows(s.planes * s.out_height, bytes, [&](int64_t b, int64_t e) {
    max_forward_rows(input, output, indices, s, p, b, e);
  });
}

template <typename T>
void avg_forward_generic(const Pool2dShape& s, const Pool2dParams& p, const T* input, T* output) {
  const int64_t bytes = (s.width * s.height / s.out_height + s.out_width) * int64_t(sizeof(T));
  parallel_rows(s.planes * s.out_height, bytes, [&](int64_t b, int64_t e) {
    avg_forward_rows(input, output, s, p, b, e);
  });
}

template <typename T, typename Index>
void max_backward_generic(const Pool2dShape& s, const Pool2dParams& p, const T* grad_out, const Index* indices,
                          T* grad_in) {
  const int64_t out_plane = s.out_height * s.out_width, in_plane = s.height * s.width;
  const ArgmaxPosition<Index> position(s, p);
  parallel_rows(s.planes * s.height, s.width * int64_t(sizeof(T)) * 2, [&](int64_t b, int64_t e) {
    for_each_plane_piece(s, b, e, [&](int64_t plane, int64_t h0, int64_t h1) {
      max_backward_piece(grad_out + plane * out_plane, indices + plane * out_plane, grad_in + plane * in_plane, s, p,
                         position, h0, h1);
    });
  });
}

template <typename T>
void avg_backward_generic(const Pool2dShape& s, const Pool2dParams& p, const T* grad_out, T* grad_in) {
  const int64_t out_plane = s.out_height * s.out_width, in_plane = s.height * s.width;
  parallel_rows(s.planes * s.height, s.width * int64_t(sizeof(T)) * 2, [&](int64_t b, int64_t e) {
    for_each_plane_piece(s, b, e, [&](int64_t plane, int64_t h0, int64_t h1) {
      avg_backward_piece(grad_out + plane * out_plane, grad_in + plane * in_plane, s, p, h0, h1);
    });
  });
}

}  // namespace
}  // namespace fastrnn::cpu
