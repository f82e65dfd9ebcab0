// AVX2+FMA micro-kernels, included inside namespace fastrnn::cpu::isa_avx2 (see gemm_impl.h
// for the contract). 16 ymm registers: 6 rows x 2 vectors of accumulators (12), 2 for the B
// row, 1 broadcast.

// Depth of a packed slice: a B micro-panel of it (256 x NR) stays in L1.
constexpr int64_t kDepth = 256;

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 6, NR = 16;
};
template <>
struct Tile<double> {
  static constexpr int MR = 6, NR = 8;
};

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = __m256;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(float* c, V v, float alpha, float beta) {
    v = _mm256_mul_ps(_mm256_set1_ps(alpha), v);
    if (beta != 0.0f) v = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), v);
    _mm256_storeu_ps(c, v);
  }
};
template <>
struct Simd<double> {
  using V = __m256d;
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static void store(double* c, V v, double alpha, double beta) {
    v = _mm256_mul_pd(_mm256_set1_pd(alpha), v);
    if (beta != 0.0) v = _mm256_fmadd_pd(_mm256_set1_pd(beta), _mm256_loadu_pd(c), v);
    _mm256_storeu_pd(c, v);
  }
};

#include "cpu/gemm/microkernel_simd.h"

// M rows (M <= MR) of C from A (an accessor: a(k, i) is op(A)[i][k]) and one B panel.
template <int M, typename T, typename A>
inline __attribute__((always_inline)) void kernel_rows(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b, T* c,
                                                       int64_t ldc, int64_t nr, T alpha, T beta) {
  using S = Simd<T>;
  constexpr int NR = Tile<T>::NR, W = 32 / sizeof(T);
  typename S::V acc0[M], acc1[M];
  accumulate<M>(kc, a, b, c, ldc, beta, acc0, acc1);
  // Full tiles store straight to C; edge tiles go through a stack copy (AVX2 has no cheap masks).
  T edge[M * NR];
  const bool full = nr == NR;
  T* out = full ? c : edge;
  const int64_t ld = full ? ldc : NR;
  const T b_eff = full ? beta : T(0);
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    S::store(out + i * ld, acc0[i], alpha, b_eff);
    S::store(out + i * ld + W, acc1[i], alpha, b_eff);
  }
  if (!full) {
    for (int i = 0; i < M; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}
