#pragma once
// im2col and its adjoint col2im, the GEMM call and the bias sums of the CPU convolution's
// general path (plan.h: im2col + GEMM). Private to each translation unit (see
// cells/activations.h).
#include <algorithm>
#include <cstdint>

#include "cpu/conv.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu {
namespace {

// The output columns [lo, hi) of one kernel tap whose input column iw = ow * stride + offset
// lies inside [0, width).
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_columns(int64_t offset, int64_t stride, int64_t width, int64_t count) {
  const int64_t lo = offset >= 0 ? 0 : std::min(count, (-offset + stride - 1) / stride);
  const int64_t hi = offset > width - 1 ? 0 : std::min(count, (width - 1 - offset) / stride + 1);
  return {lo, std::max(lo, hi)};
}

// Calls row(k, ci, ih, iw_offset, v) for the rows of an im2col block of output rows [oh0, oh0 +
// rows) and columns [0, cols) in order k = 0, 1, ...: per input channel ci, tap (kh, kw) and
// output row, the input row ih it reads (maybe outside [0, height)), the input column of output
// column 0 and the output columns whose input column lies inside the input.
template <typename Row>
inline void for_each_patch_row(const ConvShape& s, int64_t cin_g, int64_t oh0, int64_t rows, int64_t cols,
                               const Row& row) {
  int64_t k = 0;
  for (int64_t ci = 0; ci < cin_g; ++ci) {
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const int64_t iw_offset = kw * s.dilation_w - s.pad_w;
        const ValidRange v = valid_columns(iw_offset, s.stride_w, s.width, cols);
        for (int64_t r = 0; r < rows; ++r, ++k)
          row(k, ci, (oh0 + r) * s.stride_h - s.pad_h + kh * s.dilation_h, iw_offset, v);
      }
    }
  }
}

// col (taps, rows * cols) = the input patches of output rows [oh0, oh0 + rows) and columns
// [0, cols) of one group; x is that group's (cin_g, H, W) input.
template <typename T>
void im2col(const ConvShape& s, int64_t cin_g, const T* x, int64_t oh0, int64_t rows, int64_t cols, T* col_block) {
  for_each_patch_row(s, cin_g, oh0, rows, cols,
                     [&](int64_t k, int64_t ci, int64_t ih, int64_t iw_offset, ValidRange v) {
                       T* col = col_block + k * cols;
                       if (ih < 0 || ih >= s.height) {
                         std::fill(col, col + cols, T(0));
                         return;
                       }
                       const T* src = x + (ci * s.height + ih) * s.width + iw_offset;
                       // Plain loops, not memcpy/fill: rows are short (14 columns on a 14x14 layer) and a
                       // library call per row cost more than the copy.
                       for (int64_t ow = 0; ow < v.lo; ++ow) col[ow] = T(0);
                       if (s.stride_w == 1) {
#pragma omp simd
                         for (int64_t ow = v.lo; ow < v.hi; ++ow) col[ow] = src[ow];
                       } else {
                         for (int64_t ow = v.lo; ow < v.hi; ++ow) col[ow] = src[ow * s.stride_w];
                       }
                       for (int64_t ow = v.hi; ow < cols; ++ow) col[ow] = T(0);
                     });
}

// dx (cin_g, H, W) += the patches in col (taps, rows * out_width): im2col's adjoint.
template <typename T>
void col2im(const ConvShape& s, int64_t cin_g, const T* col_block, int64_t oh0, int64_t rows, T* dx) {
  const int64_t cols = s.out_width;
  for_each_patch_row(s, cin_g, oh0, rows, cols,
                     [&](int64_t k, int64_t ci, int64_t ih, int64_t iw_offset, ValidRange v) {
                       if (ih < 0 || ih >= s.height) return;
                       const T* col = col_block + k * cols;
                       T* dst = dx + (ci * s.height + ih) * s.width + iw_offset;
                       if (s.stride_w == 1) {
#pragma omp simd
                         for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow] += col[ow];
                       } else {
                         for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow * s.stride_w] += col[ow];
                       }
                     });
}

// C (M, N) = op(A) op(B) + beta C, row-major with leading dimensions.
template <typename T>
void matmul(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
            T* C, int64_t ldc, const GemmScratch& scratch) {
  GemmArgs<T> g;
  g.trans_a = ta, g.trans_b = tb;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.B = B, g.ldb = ldb, g.beta = beta, g.C = C, g.ldc = ldc;
  gemm(g, scratch);
}

// sums[c] += the sum of row c of rows (count rows of n values, ld apart): the bias gradient.
template <typename T>
void add_row_sums(const T* rows, int64_t count, int64_t n, int64_t ld, T* sums) {
  for (int64_t c = 0; c < count; ++c) {
    const T* row = rows + c * ld;
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t q = 0; q < n; ++q) sum += row[q];
    sums[c] += sum;
  }
}

}  // namespace
}  // namespace fastrnn::cpu
