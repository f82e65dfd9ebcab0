// AVX-512 micro-kernels, included inside namespace fastrnn::cpu::isa_avx512 (see gemm_impl.h
// for the contract). 32 zmm registers: in float, 12 rows x 2 vectors of accumulators (24), 2 for
// the B row, broadcasts folded into the FMAs; in double 8 x 2. Two FMA ports need >= 8
// independent chains. 12 rows rather than 8 pass over a B panel 6 times instead of 8 for a
// batch of 64: LSTM T100 B64 H1024 inference, whose weight slices stream from L3 every step,
// took 5.7% less whole-process time (median of 12 and of 6 A/B pairs); H512 and a large GEMM
// within noise (1.00, 1.02).

// Depth of a packed slice: twice AVX2's. The B micro-panel (64 KiB in float) then streams from
// L2, which on AVX-512 server cores is 1-2 MiB; in exchange C is read back half as often (a
// product over K = 512 writes C once instead of twice). LSTM T100 B64 H1024 inference, whole
// process: 10% less time than at 256; H512 within noise (Xeon, 2 MiB L2).
constexpr int64_t kDepth = 512;

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 12, NR = 32;
};
template <>
struct Tile<double> {
  static constexpr int MR = 8, NR = 16;
};

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = __m512;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // alpha * v (+ beta * c) into the first n (clamped to 0..16) floats of c; masks keep edge
  // tiles inside C, and beta == 0 never reads it.
  static void store(float* c, V v, int64_t n, float alpha, float beta) {
    if (n <= 0) return;
    const __mmask16 mask = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
    v = _mm512_mul_ps(_mm512_set1_ps(alpha), v);
    if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), v);
    _mm512_mask_storeu_ps(c, mask, v);
  }
};
template <>
struct Simd<double> {
  using V = __m512d;
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static void store(double* c, V v, int64_t n, double alpha, double beta) {
    if (n <= 0) return;
    const __mmask8 mask = n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1);
    v = _mm512_mul_pd(_mm512_set1_pd(alpha), v);
    if (beta != 0.0) v = _mm512_fmadd_pd(_mm512_set1_pd(beta), _mm512_maskz_loadu_pd(mask, c), v);
    _mm512_mask_storeu_pd(c, mask, v);
  }
};

// M rows (M <= MR) of C from A (an accessor: a(k, i) is op(A)[i][k]) and one B panel.
#include "cpu/gemm/microkernel_simd.h"

// M rows (M <= MR) of C from A (an accessor: a(k, i) is op(A)[i][k]) and one B panel.
template <int M, typename T, typename A>
inline __attribute__((always_inline)) void kernel_rows(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b, T* c,
                                                       int64_t ldc, int64_t nr, T alpha, T beta) {
  using S = Simd<T>;
  constexpr int W = 64 / sizeof(T);
  typename S::V acc0[M], acc1[M];
  accumulate<M>(kc, a, b, c, ldc, beta, acc0, acc1);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    S::store(c + i * ldc, acc0[i], nr, alpha, beta);
    S::store(c + i * ldc + W, acc1[i], nr - W, alpha, beta);
  }
}
