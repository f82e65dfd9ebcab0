// AVX2+FMA micro-kernels, included inside namespace fastrnn::cpu::isa_avx2 (see gemm_impl.h
// for the contract). 16 ymm registers: 6 rows x 2 vectors of accumulators (12), 2 for the B
// row, 1 broadcast.

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

template <int M, typename T, typename A>
inline __attribute__((always_inline)) void kernel_rows(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b, T* c,
                                                       int64_t ldc, int64_t nr, T alpha, T beta) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int NR = Tile<T>::NR, W = 32 / sizeof(T);
  // Two FMA ports with 4-cycle latency need 8 independent sums: with few rows, each row
  // keeps U partial sums over alternating k and adds them at the end.
  constexpr int U = M >= 4 ? 1 : (M == 1 ? 4 : 2);
  // C is read only after the k loop; when it will be (beta != 0), ask for its lines now so a
  // C that lives in memory arrives meanwhile (a product over a large K passes over C many times).
  if (beta != T(0)) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      __builtin_prefetch(c + i * ldc, 1, 3);
      __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    }
  }
  V acc0[U][M], acc1[U][M];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) acc0[u][i] = acc1[u][i] = S::set1(T(0));
  int64_t k = 0;
  for (; k + U <= kc; k += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const V b0 = S::load(b + (k + u) * NR), b1 = S::load(b + (k + u) * NR + W);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        const V ai = S::set1(a(k + u, i));
        acc0[u][i] = S::fma(ai, b0, acc0[u][i]);
        acc1[u][i] = S::fma(ai, b1, acc1[u][i]);
      }
    }
  }
  for (; k < kc; ++k) {
    const V b0 = S::load(b + k * NR), b1 = S::load(b + k * NR + W);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const V ai = S::set1(a(k, i));
      acc0[0][i] = S::fma(ai, b0, acc0[0][i]);
      acc1[0][i] = S::fma(ai, b1, acc1[0][i]);
    }
  }
#pragma GCC unroll 8
  for (int u = 1; u < U; ++u)
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      acc0[0][i] = S::add(acc0[0][i], acc0[u][i]);
      acc1[0][i] = S::add(acc1[0][i], acc1[u][i]);
    }
  // Full tiles store straight to C; edge tiles go through a stack copy (AVX2 has no cheap masks).
  T edge[M * NR];
  const bool full = nr == NR;
  T* out = full ? c : edge;
  const int64_t ld = full ? ldc : NR;
  const T b_eff = full ? beta : T(0);
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    S::store(out + i * ld, acc0[0][i], alpha, b_eff);
    S::store(out + i * ld + W, acc1[0][i], alpha, b_eff);
  }
  if (!full) {
    for (int i = 0; i < M; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}
