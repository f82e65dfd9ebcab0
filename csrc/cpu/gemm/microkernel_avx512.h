// AVX-512 micro-kernels, included inside namespace fastrnn::cpu::isa_avx512 (see gemm_impl.h
// for the contract). 32 zmm registers: 8 rows x 2 vectors of accumulators (16), 2 for the B
// row, broadcasts folded into the FMAs. Two FMA ports need >= 8 independent chains: 16 here.

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 8, NR = 32;
};
template <>
struct Tile<double> {
  static constexpr int MR = 8, NR = 16;
};

template <int M, typename T, typename V, typename LoadFn, typename Set1Fn, typename FmaFn, typename StoreFn>
inline void avx512_kernel(int64_t kc, const T* FASTRNN_RESTRICT a, const T* FASTRNN_RESTRICT b, T* c, int64_t ldc,
                          int64_t nr, T alpha, T beta, LoadFn load, Set1Fn set1, FmaFn fma, StoreFn store) {
  constexpr int MR = Tile<T>::MR, W = 64 / sizeof(T);  // lanes per vector
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
    b += 2 * W;
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    store(c + i * ldc, acc0[i], nr, alpha, beta);
    store(c + i * ldc + W, acc1[i], nr - W, alpha, beta);
  }
}

// Writes alpha * v (+ beta * c) to the first `n` (clamped to 0..16) floats of c; beta == 0
// never reads c. Masks keep edge tiles inside C.
inline void store_f32(float* c, __m512 v, int64_t n, float alpha, float beta) {
  if (n <= 0) return;
  const __mmask16 mask = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  v = _mm512_mul_ps(_mm512_set1_ps(alpha), v);
  if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), v);
  _mm512_mask_storeu_ps(c, mask, v);
}

inline void store_f64(double* c, __m512d v, int64_t n, double alpha, double beta) {
  if (n <= 0) return;
  const __mmask8 mask = n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1);
  v = _mm512_mul_pd(_mm512_set1_pd(alpha), v);
  if (beta != 0.0) v = _mm512_fmadd_pd(_mm512_set1_pd(beta), _mm512_maskz_loadu_pd(mask, c), v);
  _mm512_mask_storeu_pd(c, mask, v);
}

template <int M>
inline void kernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t nr, float alpha,
                        float beta) {
  avx512_kernel<M, float, __m512>(
      kc, a, b, c, ldc, nr, alpha, beta, [](const float* p) { return _mm512_loadu_ps(p); },
      [](float x) { return _mm512_set1_ps(x); }, [](__m512 x, __m512 y, __m512 z) { return _mm512_fmadd_ps(x, y, z); },
      store_f32);
}

template <int M>
inline void kernel_rows(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, int64_t nr,
                        double alpha, double beta) {
  avx512_kernel<M, double, __m512d>(
      kc, a, b, c, ldc, nr, alpha, beta, [](const double* p) { return _mm512_loadu_pd(p); },
      [](double x) { return _mm512_set1_pd(x); },
      [](__m512d x, __m512d y, __m512d z) { return _mm512_fmadd_pd(x, y, z); }, store_f64);
}

// C[mr x nr] = alpha * A-panel . B-panel + beta * C, mr <= MR rows and nr <= NR columns.
template <typename T>
inline void micro_kernel(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr, T alpha,
                         T beta) {
  switch (mr) {
    case 1: return kernel_rows<1>(kc, a, b, c, ldc, nr, alpha, beta);
    case 2: return kernel_rows<2>(kc, a, b, c, ldc, nr, alpha, beta);
    case 3: return kernel_rows<3>(kc, a, b, c, ldc, nr, alpha, beta);
    case 4: return kernel_rows<4>(kc, a, b, c, ldc, nr, alpha, beta);
    case 5: return kernel_rows<5>(kc, a, b, c, ldc, nr, alpha, beta);
    case 6: return kernel_rows<6>(kc, a, b, c, ldc, nr, alpha, beta);
    case 7: return kernel_rows<7>(kc, a, b, c, ldc, nr, alpha, beta);
    default: return kernel_rows<8>(kc, a, b, c, ldc, nr, alpha, beta);
  }
}
