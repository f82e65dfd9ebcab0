// Products against a weight matrix read in place, as dot products of its rows: for the
// forward recurrence at small batches, where packing the weights would cost more than it
// saves. Included inside an instruction set's namespace (AVX2 and AVX-512 translation units:
// both have AVX2 and FMA) by gemm_impl.h; kHasRowDot says whether it exists there.
//
// out[i * ldc + u] = sum_k row(i)[k] * w(u)[k] for i < m, u < units: every weight row w(u)
// is contiguous in k, so one pass reads the matrix once, front to back per row, with no copy.
// A tile of R rows x U weight rows keeps R*U >= 8 vector sums over k (two FMA pipes at
// 4 cycles' latency), then reduces them across lanes all at once.
//
// The AVX-512 build sums 512-bit vectors (half the loads and FMAs of 256-bit ones), reads the
// depth left over from the vectors with masked loads (AVX2 finishes it in scalar code) and,
// with 32 registers, takes four rows at a time where AVX2 takes two (kRows).

constexpr bool kHasRowDot = true;

// Everything here is inlined into the tile, so the sums stay in registers.
#define FASTRNN_ROWDOT_INLINE inline __attribute__((always_inline))

// 256-bit sums: the AVX2 build's RowDot, and where the AVX-512 build's reduce to.
template <typename T>
struct RowDot256;

template <>
struct RowDot256<float> {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kRows = 2;
  static constexpr bool kMaskedTail = false;
  FASTRNN_ROWDOT_INLINE static V zero() { return _mm256_setzero_ps(); }
  FASTRNN_ROWDOT_INLINE static V load(const float* p) { return _mm256_loadu_ps(p); }
  FASTRNN_ROWDOT_INLINE static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // The sums of a[0..3]'s lanes, in order.
  FASTRNN_ROWDOT_INLINE static __m128 reduce4(V a0, V a1, V a2, V a3) {
    const V t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));  // each half: 4 partial sums
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  }
  FASTRNN_ROWDOT_INLINE static void store4(float* p, __m128 v) { _mm_storeu_ps(p, v); }
  FASTRNN_ROWDOT_INLINE static float sum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

template <>
struct RowDot256<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static constexpr int kRows = 2;
  static constexpr bool kMaskedTail = false;
  FASTRNN_ROWDOT_INLINE static V zero() { return _mm256_setzero_pd(); }
  FASTRNN_ROWDOT_INLINE static V load(const double* p) { return _mm256_loadu_pd(p); }
  FASTRNN_ROWDOT_INLINE static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  FASTRNN_ROWDOT_INLINE static V reduce4(V a0, V a1, V a2, V a3) {
    const V t0 = _mm256_hadd_pd(a0, a1), t1 = _mm256_hadd_pd(a2, a3);  // (a0 lo, a1 lo, a0 hi, a1 hi), ...
    return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20), _mm256_permute2f128_pd(t0, t1, 0x31));
  }
  FASTRNN_ROWDOT_INLINE static void store4(double* p, V v) { _mm256_storeu_pd(p, v); }
  FASTRNN_ROWDOT_INLINE static double sum(V a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

#if defined(__AVX512F__)
// 512-bit sums, reduced by adding their halves into 256-bit ones. The halves come from
// zero-masked extracts with every lane kept: gcc 12 warns about the plain extract's undefined
// pass-through operand (and its _mm512_castps512_ps256 and _mm512_reduce_add_ps are that extract).
template <typename T>
struct RowDot;

template <>
struct RowDot<float> {
  using V = __m512;
  using Half = RowDot256<float>;
  static constexpr int W = 16;
  static constexpr int kRows = 4;
  static constexpr bool kMaskedTail = true;
  FASTRNN_ROWDOT_INLINE static V zero() { return _mm512_setzero_ps(); }
  FASTRNN_ROWDOT_INLINE static V load(const float* p) { return _mm512_loadu_ps(p); }
  // The first n (< W) values at p, zeros after them; nothing past p + n is read.
  FASTRNN_ROWDOT_INLINE static V load_first(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  FASTRNN_ROWDOT_INLINE static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  FASTRNN_ROWDOT_INLINE static Half::V halves(V a) {
    return _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, a, 0), _mm512_maskz_extractf32x8_ps(0xFF, a, 1));
  }
  FASTRNN_ROWDOT_INLINE static __m128 reduce4(V a0, V a1, V a2, V a3) {
    return Half::reduce4(halves(a0), halves(a1), halves(a2), halves(a3));
  }
  FASTRNN_ROWDOT_INLINE static void store4(float* p, __m128 v) { Half::store4(p, v); }
  FASTRNN_ROWDOT_INLINE static float sum(V a) { return Half::sum(halves(a)); }
};

template <>
struct RowDot<double> {
  using V = __m512d;
  using Half = RowDot256<double>;
  static constexpr int W = 8;
  static constexpr int kRows = 4;
  static constexpr bool kMaskedTail = true;
  FASTRNN_ROWDOT_INLINE static V zero() { return _mm512_setzero_pd(); }
  FASTRNN_ROWDOT_INLINE static V load(const double* p) { return _mm512_loadu_pd(p); }
  FASTRNN_ROWDOT_INLINE static V load_first(const double* p, int64_t n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  FASTRNN_ROWDOT_INLINE static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  FASTRNN_ROWDOT_INLINE static Half::V halves(V a) {
    return _mm256_add_pd(_mm512_maskz_extractf64x4_pd(0xF, a, 0), _mm512_maskz_extractf64x4_pd(0xF, a, 1));
  }
  FASTRNN_ROWDOT_INLINE static Half::V reduce4(V a0, V a1, V a2, V a3) {
    return Half::reduce4(halves(a0), halves(a1), halves(a2), halves(a3));
  }
  FASTRNN_ROWDOT_INLINE static void store4(double* p, Half::V v) { Half::store4(p, v); }
  FASTRNN_ROWDOT_INLINE static double sum(V a) { return Half::sum(halves(a)); }
};
#else
template <typename T>
struct RowDot : RowDot256<T> {};
#endif

// out[0..U) = the lane sums of acc[0..U), four at a time where U allows.
template <int U, typename T>
FASTRNN_ROWDOT_INLINE void reduce_store(const typename RowDot<T>::V* acc, T* out) {
  using D = RowDot<T>;
  if constexpr (U % 4 == 0) {
#pragma GCC unroll 2
    for (int u = 0; u < U; u += 4) D::store4(out + u, D::reduce4(acc[u], acc[u + 1], acc[u + 2], acc[u + 3]));
  } else {
    for (int u = 0; u < U; ++u) out[u] = D::sum(acc[u]);
  }
}

// R rows x U weight rows of out over depth K.
template <int R, int U, typename T>
inline __attribute__((always_inline)) void rowdot_tile(int64_t K, const T* const* x, const T* const* w, T* out,
                                                       int64_t ldc) {
  using D = RowDot<T>;
  using V = typename D::V;
  constexpr int W = D::W;
  V acc[R][U];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) acc[i][u] = D::zero();
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    V xv[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) xv[i] = D::load(x[i] + k);
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const V wv = D::load(w[u] + k);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) acc[i][u] = D::fma(xv[i], wv, acc[i][u]);
    }
  }
  if constexpr (D::kMaskedTail) {
    if (k < K) {  // depth left over from the vectors: one masked vector
      V xv[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) xv[i] = D::load_first(x[i] + k, K - k);
#pragma GCC unroll 8
      for (int u = 0; u < U; ++u) {
        const V wv = D::load_first(w[u] + k, K - k);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) acc[i][u] = D::fma(xv[i], wv, acc[i][u]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    T* o = out + i * ldc;
    reduce_store<U, T>(acc[i], o);
    if constexpr (!D::kMaskedTail) {
      for (int64_t kk = k; kk < K; ++kk) {  // depth left over from the vectors
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u) o[u] += x[i][kk] * w[u][kk];
      }
    }
  }
}

// out[i * ldc + u] = row(i) . weight(u) for i < m, u < units (row(i) and weight(u) each K
// contiguous values).
template <typename T, typename RowFn, typename WeightFn>
void rowdot(int64_t m, int64_t K, const RowFn& row, int64_t units, const WeightFn& weight, T* out, int64_t ldc) {
  using D = RowDot<T>;
  int64_t u = 0;
  const T* w[8];
  const T* x[4];
  for (; u + 8 <= units; u += 8) {  // one row x 8 weight rows: the batch-1 step
    for (int j = 0; j < 8; ++j) w[j] = weight(u + j);
    int64_t i = 0;
    if constexpr (D::kRows == 4) {  // four rows x 4 weight rows, twice: 8 loads per 16 FMAs, 21 registers
      for (; i + 4 <= m; i += 4) {
        for (int r = 0; r < 4; ++r) x[r] = row(i + r);
        rowdot_tile<4, 4>(K, x, w, out + i * ldc + u, ldc);
        rowdot_tile<4, 4>(K, x, w + 4, out + i * ldc + u + 4, ldc);
      }
    }
    for (; i + 2 <= m; i += 2) {  // two rows x 4 weight rows, twice: 6 loads per 8 FMAs
      x[0] = row(i), x[1] = row(i + 1);
      rowdot_tile<2, 4>(K, x, w, out + i * ldc + u, ldc);
      rowdot_tile<2, 4>(K, x, w + 4, out + i * ldc + u + 4, ldc);
    }
    if (i < m) {
      x[0] = row(i);
      rowdot_tile<1, 8>(K, x, w, out + i * ldc + u, ldc);
    }
  }
  for (; u < units; ++u) {  // the last few weight rows, one at a time
    w[0] = weight(u);
    for (int64_t i = 0; i < m; ++i) {
      x[0] = row(i);
      rowdot_tile<1, 1>(K, x, w, out + i * ldc + u, ldc);
    }
  }
}

#undef FASTRNN_ROWDOT_INLINE
