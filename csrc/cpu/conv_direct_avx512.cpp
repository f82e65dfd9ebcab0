// The direct stride-1 forward and weight gradient of conv_avx2.h with AVX-512 (zmm vectors: 16
// floats, 8 doubles). The fused block's sparse kernels and epilogue stay on AVX2
// (conv_direct_avx2.cpp, conv_pool_avx2.cpp).
//
// Forward (conv_direct_kernels.h): 32 registers hold twice the AVX2 blocks: 8 output channels
// x 3 vectors or 6 x 4 (24 accumulators), 24 channels x 1 vector. Per tap, 3 loads and 8
// broadcasts feed 24 FMAs, where the AVX2 block needs 7 for 12.
#include <immintrin.h>

#include <algorithm>

#include "cpu/conv_avx2.h"

namespace fastrnn::cpu::isa_avx512 {
namespace {

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
  static V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p); }
  static void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v); }
};
template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int kLanes = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static double sum(V v) { return _mm512_reduce_add_pd(v); }
  static V load_first(const double* p, int n) { return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p); }
  static void store_first(double* p, V v, int n) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), v); }
};

// Output channels per forward register block of NV vectors: 24 accumulators.
template <int NV>
constexpr int kTileChannels = NV == 1 ? 24 : NV == 3 ? 8 : 6;
// The dot-product weight gradient's block: 4 channels x 6 taps, 24 accumulators.
constexpr int kDotChannels = 4, kDotTaps = 6;

}  // namespace

#include "cpu/conv_direct_kernels.h"

namespace {

// The weight gradient's register block: M (<= 12) taps x NB (1 or 2) channel blocks, one
// vector each (a block, 64 bytes, is one zmm), NB blocks of dy `block_stride` apart and of dw
// `dw_stride` apart. Per position: NB dy loads and M broadcast loads feed NB * M FMAs (14
// loads for 24 FMAs at M = 12, NB = 2; one block would need a load per FMA), summed over
// output rows [oh0, oh1).
template <int M, int NB, typename T>
inline __attribute__((always_inline)) void weight_grad_tile(const DirectWeightGradArgs& a, const T* xpad,
                                                            const int64_t* offsets, const T* dy, int64_t block_stride,
                                                            int64_t oh0, int64_t oh1, T* dw, int64_t dw_stride) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M][NB];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) acc[i][j] = S::load(dw + j * dw_stride + i * W);
  const T* x[M];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) x[i] = xpad + offsets[i];
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const T* d = dy + oh * a.out_width * W;
    const int64_t row = oh * a.wp;
    for (int64_t ow = 0; ow < a.out_width; ++ow, d += W) {
      V dv[NB];
#pragma GCC unroll 2
      for (int j = 0; j < NB; ++j) dv[j] = S::load(d + j * block_stride);
#pragma GCC unroll 12
      for (int i = 0; i < M; ++i) {
        const V xi = S::set1(x[i][row + ow]);
#pragma GCC unroll 2
        for (int j = 0; j < NB; ++j) acc[i][j] = S::fma(xi, dv[j], acc[i][j]);
      }
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) S::store(dw + j * dw_stride + i * W, acc[i][j]);
}

// Every tap of NB channel blocks over rows [oh0, oh1), 12 taps at a time.
template <int NB, typename T>
void weight_grad_blocks(const DirectWeightGradArgs& a, const T* xpad, const T* dy, int64_t block_stride,
                        int64_t oh0, int64_t oh1, T* dw, int64_t dw_stride) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  int64_t t = 0;
  for (; t + 12 <= a.taps; t += 12)
    weight_grad_tile<12, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride);
  const int64_t left = a.taps - t;
  if (left >= 8) weight_grad_tile<8, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride), t += 8;
  if (a.taps - t >= 4) weight_grad_tile<4, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride), t += 4;
  switch (a.taps - t) {
    case 3: weight_grad_tile<3, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    case 2: weight_grad_tile<2, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    case 1: weight_grad_tile<1, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    default: break;
  }
}

}  // namespace

// Rows outside: a block of rows keeps two channel blocks' dy (2 x rows x out_width x 64 bytes,
// about 16 KiB) in L1 while every tap block passes over them; pairs of channel blocks, then
// the last one alone when their number is odd.
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  static_assert(B == Simd<T>::kLanes, "a channel block is one vector");
  const int64_t rows = std::max<int64_t>(1, 128 / std::max<int64_t>(1, a.out_width));
  const int64_t positions = a.out_height * a.out_width, dw_stride = a.taps * B;
  for (int64_t oh0 = 0; oh0 < a.out_height; oh0 += rows) {
    const int64_t oh1 = std::min(a.out_height, oh0 + rows);
    int64_t b = 0;
    for (; b + 2 <= a.channel_blocks; b += 2)
      weight_grad_blocks<2>(a, xpad, dy_blocked + b * positions * B, positions * B, oh0, oh1, dw_blocked + b * dw_stride,
                            dw_stride);
    if (b < a.channel_blocks)
      weight_grad_blocks<1>(a, xpad, dy_blocked + b * positions * B, positions * B, oh0, oh1, dw_blocked + b * dw_stride,
                            dw_stride);
  }
}

template void conv_dot_weight_grad<float>(const int64_t*, int64_t, int64_t, int64_t, const float*, const float*,
                                           int64_t, float*, int64_t, int64_t);
template void conv_dot_weight_grad<double>(const int64_t*, int64_t, int64_t, int64_t, const double*, const double*,
                                            int64_t, double*, int64_t, int64_t);
template void conv_direct<float>(const DirectConvArgs&, const float*, const float*, const float*, float*);
template void conv_direct<double>(const DirectConvArgs&, const double*, const double*, const double*, double*);
template void conv_direct_rows<float>(const DirectConvArgs&, const float*, const float*, const float*, float*);
template void conv_direct_rows<double>(const DirectConvArgs&, const double*, const double*, const double*, double*);
template void conv_direct_weight_grad<float>(const DirectWeightGradArgs&, const float*, const float*, float*);
template void conv_direct_weight_grad<double>(const DirectWeightGradArgs&, const double*, const double*, double*);

}  // namespace fastrnn::cpu::isa_avx512
