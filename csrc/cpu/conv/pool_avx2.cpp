// The fused conv + ReLU + 2x2 max-pool block's epilogue with AVX2 (conv/kernels.h): 8 windows
// per step. The scalar epilogue (four compares and an int64 store per window, with branches)
// took longer than the first layer's convolution itself. Columns are split into even and odd
// in registers (shuffles), the row's last windows go through masked loads and stores; ReLU,
// the max and the argmax (a 0..3 code kept in a float vector) are blends on compare masks, in
// torch's scan order.
#include <immintrin.h>

#include "cpu/conv/kernels.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/simd/avx2.h"

namespace {

// x[0..16) -> (x[0], x[2], .. x[14]) and (x[1], x[3], .. x[15]), reading x[i] only for the
// lanes i set in (m0, m1) (the others read as 0).
inline void deinterleave(const float* x, __m256i m0, __m256i m1, __m256& even, __m256& odd) {
  Avx2<float>::deinterleave(_mm256_maskload_ps(x, m0), _mm256_maskload_ps(x + 8, m1), even, odd);
}

// relu that keeps NaN: v <= 0 is false for NaN
inline __m256 relu(__m256 v) { return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LE_OQ), v); }

// Lanes [0, n) set, as 32-bit masks.
inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? (n < 0 ? 0 : n) : 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Windows [px, px + n) of the row, n <= 8: all 8 lanes at full speed, the row's last few
// through masked loads and stores (nothing outside the row is touched).
inline __attribute__((always_inline)) void windows(const float* top, const float* bottom, __m256 bias, int64_t px,
                                                   int64_t n, int64_t index0, __m256i width, float* y,
                                                   int64_t* indices) {
  const __m256i all = _mm256_set1_epi32(-1);
  const bool full = n == 8;
  const __m256i m0 = full ? all : first_lanes(2 * n), m1 = full ? all : first_lanes(2 * n - 8);
  __m256 v[4];
  deinterleave(top + 2 * px, m0, m1, v[0], v[1]);
  deinterleave(bottom + 2 * px, m0, m1, v[2], v[3]);
  __m256 best = relu(_mm256_add_ps(v[0], bias)), code = _mm256_setzero_ps();
#pragma GCC unroll 3
  for (int i = 1; i < 4; ++i) {
    const __m256 r = relu(_mm256_add_ps(v[i], bias));
    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(r, best, _CMP_GT_OQ), _mm256_cmp_ps(r, r, _CMP_UNORD_Q));
    best = _mm256_blendv_ps(best, r, take);
    code = _mm256_blendv_ps(code, _mm256_set1_ps(static_cast<float>(i)), take);
  }
  // index = index0 + 2px + (code & 1) + (code >> 1) * out_width, as 32-bit (a plane holds
  // fewer than 2^31 elements: checked by the caller), widened to int64.
  const __m256i c = _mm256_cvtps_epi32(code);
  const __m256i at = _mm256_add_epi32(
      _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(index0 + 2 * px)),
                       _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
      _mm256_add_epi32(_mm256_and_si256(c, _mm256_set1_epi32(1)), _mm256_mullo_epi32(_mm256_srli_epi32(c, 1), width)));
  const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(at)),
                hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(at, 1));
  __m256i* out = reinterpret_cast<__m256i*>(indices + px);
  if (full) {
    _mm256_storeu_ps(y + px, best);
    _mm256_storeu_si256(out, lo);
    _mm256_storeu_si256(out + 1, hi);
  } else {
    const __m256i m = first_lanes(n);
    _mm256_maskstore_ps(y + px, m, best);
    // 64-bit lane j of the index stores is set when window j (low) or 4 + j (high) exists.
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(out), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)), lo);
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(out + 1),
                           _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1)), hi);
  }
}

}  // namespace

int64_t relu_pool_row(const float* top, const float* bottom, float bias, int64_t pw, int64_t index0,
                      int64_t out_width, float* y, int64_t* indices) {
  const __m256 b = _mm256_set1_ps(bias);
  const __m256i width = _mm256_set1_epi32(static_cast<int>(out_width));
  int64_t px = 0;
  for (; px + 8 <= pw; px += 8) windows(top, bottom, b, px, 8, index0, width, y, indices);
  if (px < pw) windows(top, bottom, b, px, pw - px, index0, width, y, indices);
  return pw;
}

}  // namespace fastrnn::cpu::isa_avx2
