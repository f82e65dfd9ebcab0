#pragma once
// The AVX2 + FMA vocabulary: Avx2<T>, the 256-bit vector of T (float or double) and the
// operations the AVX2 kernels use (gemm micro-kernels and row dots, the direct convolution,
// the Winograd helpers, pooling). Each operation is written once; `if constexpr` picks its
// _ps or _pd intrinsic. The kernels keep their loops, unrolling and register blocks; this
// file only names the instructions (ggml's vec.h is the model).
//
// Included inside an instruction set's namespace (isa_avx2, and isa_avx512, whose kernels
// also reduce through 256-bit halves) after <immintrin.h>: each build has its own copy, so the
// linker never merges an AVX-512-compiled copy into AVX2 code.
#define FASTRNN_SIMD_INLINE inline __attribute__((always_inline))

// One operation of both widths, inside Avx2<T> / Avx512<T>: name(params) returns
// prefix_op_ps(args) for float, prefix_op_pd(args) for double.
#define FASTRNN_SIMD_OP(ret, name, params, prefix, op, args) \
  FASTRNN_SIMD_INLINE static ret name params {               \
    if constexpr (kFloat) return prefix##_##op##_ps args;    \
    else return prefix##_##op##_pd args;                     \
  }
// The arithmetic both widths name alike (prefix _mm256 or _mm512): zero, load, store
// (unaligned), set1, add, sub, mul, div, fma(a, b, c) = a * b + c.
#define FASTRNN_SIMD_ARITHMETIC(prefix)                      \
  FASTRNN_SIMD_OP(V, zero, (), prefix, setzero, ())          \
  FASTRNN_SIMD_OP(V, load, (const T* p), prefix, loadu, (p)) \
  FASTRNN_SIMD_OP(void, store, (T* p, V v), prefix, storeu, (p, v)) \
  FASTRNN_SIMD_OP(V, set1, (T x), prefix, set1, (x))         \
  FASTRNN_SIMD_OP(V, add, (V a, V b), prefix, add, (a, b))   \
  FASTRNN_SIMD_OP(V, sub, (V a, V b), prefix, sub, (a, b))   \
  FASTRNN_SIMD_OP(V, mul, (V a, V b), prefix, mul, (a, b))   \
  FASTRNN_SIMD_OP(V, div, (V a, V b), prefix, div, (a, b))   \
  FASTRNN_SIMD_OP(V, fma, (V a, V b, V c), prefix, fmadd, (a, b, c))

// acc[i][j] = value for every i < R, j < C: a register tile's accumulators set before a k loop.
template <int R, int C, typename V>
FASTRNN_SIMD_INLINE void fill_tile(V (&acc)[R][C], V value) {
#pragma GCC unroll 24
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) acc[i][j] = value;
}

// The vector types of T, named directly (through a template argument GCC would drop their
// may_alias attribute).
template <typename T>
struct VectorTypes;
template <>
struct VectorTypes<float> {
  using V256 = __m256; using Quad = __m128; using V512 = __m512; using Mask512 = __mmask16;
};
template <>
struct VectorTypes<double> {
  using V256 = __m256d; using Quad = __m256d; using V512 = __m512d; using Mask512 = __mmask8;
};

template <typename T>
struct Avx2 {
  static constexpr bool kFloat = sizeof(T) == 4;
  using V = typename VectorTypes<T>::V256;
  using I = __m256i;                           // int32 lanes for float, int64 for double
  using Quad = typename VectorTypes<T>::Quad;  // four sums (reduce4)
  static constexpr int kLanes = 32 / sizeof(T);

  FASTRNN_SIMD_ARITHMETIC(_mm256)
  FASTRNN_SIMD_INLINE static V broadcast(const T* p) {
    if constexpr (kFloat) return _mm256_broadcast_ss(p); else return _mm256_broadcast_sd(p);
  }

  // ---- horizontal sums ----
  // The sum of v's lanes.
  FASTRNN_SIMD_INLINE static T sum(V v) {
    if constexpr (kFloat) {
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    } else {
      const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
      return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
  }
  // The sums of a0..a3's lanes, in order.
  FASTRNN_SIMD_INLINE static Quad reduce4(V a0, V a1, V a2, V a3) {
    if constexpr (kFloat) {
      const V t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));  // each half: 4 partial sums
      return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    } else {
      const V t0 = _mm256_hadd_pd(a0, a1), t1 = _mm256_hadd_pd(a2, a3);  // (a0 lo, a1 lo, a0 hi, a1 hi), ...
      return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20), _mm256_permute2f128_pd(t0, t1, 0x31));
    }
  }
  FASTRNN_SIMD_INLINE static void store4(T* p, Quad v) {
    if constexpr (kFloat) _mm_storeu_ps(p, v); else _mm256_storeu_pd(p, v);
  }

  // ---- partial vectors: lanes [0, n), n < kLanes ----
  // Through a copy: a masked store cost more than a short tile's FMAs on AMD. load_first
  // reads nothing past p + n.
  static V load_first(const T* p, int n) {
    alignas(32) T part[kLanes] = {};
    for (int k = 0; k < n; ++k) part[k] = p[k];
    if constexpr (kFloat) return _mm256_load_ps(part); else return _mm256_load_pd(part);
  }
  static void store_first(T* p, V v, int n) {
    alignas(32) T part[kLanes];
    if constexpr (kFloat) _mm256_store_ps(part, v); else _mm256_store_pd(part, v);
    for (int k = 0; k < n; ++k) p[k] = part[k];
  }

  // ---- compares and selects, with torch's NaN rules ----
  // v <= 0 ? 0 : v (NaN stays).
  FASTRNN_SIMD_INLINE static V relu(V v) {
    if constexpr (kFloat) return _mm256_blendv_ps(v, zero(), _mm256_cmp_ps(v, zero(), _CMP_LE_OQ));
    else return _mm256_blendv_pd(v, zero(), _mm256_cmp_pd(v, zero(), _CMP_LE_OQ));
  }
  // Lanes where r takes over a running maximum top, as torch's scalar `r > top || isnan(r)`.
  FASTRNN_SIMD_INLINE static V greater_or_nan(V r, V top) {
    if constexpr (kFloat) return _mm256_or_ps(_mm256_cmp_ps(r, top, _CMP_GT_OQ), _mm256_cmp_ps(r, r, _CMP_UNORD_Q));
    else return _mm256_or_pd(_mm256_cmp_pd(r, top, _CMP_GT_OQ), _mm256_cmp_pd(r, r, _CMP_UNORD_Q));
  }
  // max that keeps a NaN from either side (the all-ones mask is a NaN).
  FASTRNN_SIMD_INLINE static V max_nan(V a, V b) {
    if constexpr (kFloat) return _mm256_or_ps(_mm256_max_ps(a, b), _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    else return _mm256_or_pd(_mm256_max_pd(a, b), _mm256_cmp_pd(a, b, _CMP_UNORD_Q));
  }
  // The lanes of b where m is set, of a elsewhere.
  FASTRNN_SIMD_INLINE static V blend(V m, V a, V b) {
    if constexpr (kFloat) return _mm256_blendv_ps(a, b, m); else return _mm256_blendv_pd(a, b, m);
  }
  FASTRNN_SIMD_INLINE static I blend(V m, I a, I b) {
    if constexpr (kFloat) return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
    else return _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(a), _mm256_castsi256_pd(b), m));
  }
  // v where mask is set, 0 elsewhere.
  FASTRNN_SIMD_INLINE static V keep(V mask, V v) {
    if constexpr (kFloat) return _mm256_and_ps(mask, v); else return _mm256_and_pd(mask, v);
  }

  // ---- even and odd elements ----
  // (a, b) = x[0..2 kLanes) -> x[0], x[2], .. and x[1], x[3], ..
  FASTRNN_SIMD_INLINE static void deinterleave(V a, V b, V& even, V& odd) {
    if constexpr (kFloat) {
      auto in_order = [](V v) { return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8)); };
      even = in_order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
      odd = in_order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    } else {
      even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
      odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
    }
  }
  // p[2j] = a[j], p[2j + 1] = b[j]
  FASTRNN_SIMD_INLINE static void interleave_store(T* p, V a, V b) {
    if constexpr (kFloat) {
      const V lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
      store(p, _mm256_permute2f128_ps(lo, hi, 0x20));
      store(p + kLanes, _mm256_permute2f128_ps(lo, hi, 0x31));
    } else {
      const V lo = _mm256_unpacklo_pd(a, b), hi = _mm256_unpackhi_pd(a, b);
      store(p, _mm256_permute2f128_pd(lo, hi, 0x20));
      store(p + kLanes, _mm256_permute2f128_pd(lo, hi, 0x31));
    }
  }
  // (lo, hi) = v[0], v[0], v[1], v[1], .. (each lane twice)
  FASTRNN_SIMD_INLINE static void duplicate(V v, V& lo, V& hi) {
    if constexpr (kFloat) {
      lo = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
      hi = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
    } else {
      lo = _mm256_permute4x64_pd(v, 0x50);
      hi = _mm256_permute4x64_pd(v, 0xFA);
    }
  }

  // ---- positions: a lane per element, int32 for float (planes hold fewer than 2^31 elements,
  // checked by the caller), int64 for double ----
  // first + step * lane; step is a literal at every call, so the ramp is a constant plus a broadcast.
  FASTRNN_SIMD_INLINE static I ramp(int64_t first, int step) {
    if constexpr (kFloat) {
      return _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first)),
                              _mm256_setr_epi32(0, step, 2 * step, 3 * step, 4 * step, 5 * step, 6 * step, 7 * step));
    } else {
      return _mm256_add_epi64(_mm256_set1_epi64x(first), _mm256_setr_epi64x(0, step, 2 * step, 3 * step));
    }
  }
  FASTRNN_SIMD_INLINE static I add(I a, int64_t c) {
    if constexpr (kFloat) return _mm256_add_epi32(a, _mm256_set1_epi32(static_cast<int>(c)));
    else return _mm256_add_epi64(a, _mm256_set1_epi64x(c));
  }
  // a, b, a, b, ..
  FASTRNN_SIMD_INLINE static I alternate(int a, int b) {
    if constexpr (kFloat) return _mm256_setr_epi32(a, b, a, b, a, b, a, b); else return _mm256_setr_epi64x(a, b, a, b);
  }
  FASTRNN_SIMD_INLINE static V equal(I a, I b) {
    if constexpr (kFloat) return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b));
    else return _mm256_castsi256_pd(_mm256_cmpeq_epi64(a, b));
  }
  FASTRNN_SIMD_INLINE static I max_index(I a, I b) {
    if constexpr (kFloat) return _mm256_max_epi32(a, b); else return _mm256_blendv_epi8(b, a, _mm256_cmpgt_epi64(a, b));
  }
  // kLanes positions as int64.
  FASTRNN_SIMD_INLINE static void store_index(int64_t* p, I i) {
    if constexpr (kFloat) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(i, 1)));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), i);
    }
  }
  // kLanes window slots (0..255) as bytes.
  FASTRNN_SIMD_INLINE static void store_slots(uint8_t* p, I i) {
    if constexpr (kFloat) {
      const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(words, words));
    } else {
      const I low_halves = _mm256_permutevar8x32_epi32(i, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
      const __m128i dwords = _mm256_castsi256_si128(low_halves);
      const __m128i words = _mm_packus_epi32(dwords, dwords);
      const int bytes = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
      __builtin_memcpy(p, &bytes, 4);
    }
  }
  // duplicate() for kLanes int64 positions (as int32 for float: their low halves).
  FASTRNN_SIMD_INLINE static void duplicate_index(const int64_t* p, I& lo, I& hi) {
    if constexpr (kFloat) {
      const I pick = _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6);
      lo = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), pick);
      hi = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4)), pick);
    } else {
      const I v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      lo = _mm256_permute4x64_epi64(v, 0x50);
      hi = _mm256_permute4x64_epi64(v, 0xFA);
    }
  }
  // duplicate() for kLanes window slots.
  FASTRNN_SIMD_INLINE static void duplicate_slots(const uint8_t* p, I& lo, I& hi) {
    if constexpr (kFloat) {
      const I v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
      lo = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
      hi = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
    } else {
      int bytes;
      __builtin_memcpy(&bytes, p, 4);
      const I v = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(bytes));
      lo = _mm256_permute4x64_epi64(v, 0x50);
      hi = _mm256_permute4x64_epi64(v, 0xFA);
    }
  }
  // p[0..kLanes) where column + lane lies in [0, width), -inf elsewhere (those lanes are not read).
  FASTRNN_SIMD_INLINE static V load_inside(const T* p, int64_t column, int64_t width) {
    const I c = ramp(column, 1);
    const V minus_inf = set1(-__builtin_inf());
    if constexpr (kFloat) {
      const I inside = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), c),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(width)), c));
      return _mm256_blendv_ps(minus_inf, _mm256_maskload_ps(p, inside), _mm256_castsi256_ps(inside));
    } else {
      const I inside = _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), c),
                                           _mm256_cmpgt_epi64(_mm256_set1_epi64x(width), c));
      return _mm256_blendv_pd(minus_inf, _mm256_maskload_pd(p, inside), _mm256_castsi256_pd(inside));
    }
  }
};
