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

template <int M, typename T, typename V, typename LoadFn, typename Set1Fn, typename FmaFn, typename StoreFn>
inline void avx2_kernel(int64_t kc, const T* FASTRNN_RESTRICT a, const T* FASTRNN_RESTRICT b, T* c, int64_t ldc,
                        int64_t nr, T alpha, T beta, LoadFn load, Set1Fn set1, FmaFn fma, StoreFn store) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR, W = 32 / sizeof(T);
  V acc0[M], acc1[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) acc0[i] = acc1[i] = set1(T(0));
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = load(b), b1 = load(b + W);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const V ai = set1(a[i]);
      acc0[i] = fma(ai, b0, acc0[i]);
      acc1[i] = fma(ai, b1, acc1[i]);
    }
    a += MR;
    b += NR;
  }
  // Full tiles store straight to C; edge tiles go through a stack copy (AVX2 has no cheap masks).
  T edge[M * NR];
  T* out = nr == NR ? c : edge;
  const int64_t ld = nr == NR ? ldc : NR;
  const bool read_c = beta != T(0) && nr == NR;
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    store(out + i * ld, acc0[i], alpha, read_c ? beta : T(0));
    store(out + i * ld + W, acc1[i], alpha, read_c ? beta : T(0));
  }
  if (nr != NR) {
    for (int i = 0; i < M; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}

inline void store_f32(float* c, __m256 v, float alpha, float beta) {
  v = _mm256_mul_ps(_mm256_set1_ps(alpha), v);
  if (beta != 0.0f) v = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), v);
  _mm256_storeu_ps(c, v);
}

inline void store_f64(double* c, __m256d v, double alpha, double beta) {
  v = _mm256_mul_pd(_mm256_set1_pd(alpha), v);
  if (beta != 0.0) v = _mm256_fmadd_pd(_mm256_set1_pd(beta), _mm256_loadu_pd(c), v);
  _mm256_storeu_pd(c, v);
}

template <int M>
inline void kernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t nr, float alpha,
                        float beta) {
  avx2_kernel<M, float, __m256>(
      kc, a, b, c, ldc, nr, alpha, beta, [](const float* p) { return _mm256_loadu_ps(p); },
      [](float x) { return _mm256_set1_ps(x); }, [](__m256 x, __m256 y, __m256 z) { return _mm256_fmadd_ps(x, y, z); },
      store_f32);
}

template <int M>
inline void kernel_rows(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, int64_t nr,
                        double alpha, double beta) {
  avx2_kernel<M, double, __m256d>(
      kc, a, b, c, ldc, nr, alpha, beta, [](const double* p) { return _mm256_loadu_pd(p); },
      [](double x) { return _mm256_set1_pd(x); },
      [](__m256d x, __m256d y, __m256d z) { return _mm256_fmadd_pd(x, y, z); }, store_f64);
}

template <typename T>
inline void micro_kernel(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr, T alpha,
                         T beta) {
  switch (mr) {
    case 1: return kernel_rows<1>(kc, a, b, c, ldc, nr, alpha, beta);
    case 2: return kernel_rows<2>(kc, a, b, c, ldc, nr, alpha, beta);
    case 3: return kernel_rows<3>(kc, a, b, c, ldc, nr, alpha, beta);
    case 4: return kernel_rows<4>(kc, a, b, c, ldc, nr, alpha, beta);
    case 5: return kernel_rows<5>(kc, a, b, c, ldc, nr, alpha, beta);
    default: return kernel_rows<6>(kc, a, b, c, ldc, nr, alpha, beta);
  }
}
