#pragma once
// The AVX-512 (F, VL, BW, DQ) vocabulary: Avx512<T>, the 512-bit vector of T (16 floats, 8
// doubles), its lane mask and the operations the AVX-512 kernels use, each written once
// (`if constexpr` picks the _ps or _pd intrinsic). Edges go through lane masks: a masked-off
// lane is neither read nor written. Horizontal sums add the two halves and finish in Avx2<T>.
// Included inside namespace isa_avx512 after <immintrin.h> (see avx2.h).
#include "cpu/simd/avx2.h"

template <typename T>
struct Avx512 {
  static constexpr bool kFloat = sizeof(T) == 4;
  using V = typename VectorTypes<T>::V512;
  using Mask = typename VectorTypes<T>::Mask512;
  using Half = Avx2<T>;
  static constexpr int kLanes = 64 / sizeof(T);

  FASTRNN_SIMD_ARITHMETIC(_mm512)

  // ---- masks and partial vectors ----
  // Lanes [0, n), n clamped to kLanes.
  FASTRNN_SIMD_INLINE static Mask first(int64_t n) {
    return n >= kLanes ? Mask(kFloat ? 0xffff : 0xff) : static_cast<Mask>((1u << n) - 1);
  }
  // Masked-off lanes read as 0 and are not read, so their addresses may lie outside the array.
  FASTRNN_SIMD_INLINE static V load(Mask k, const T* p) {
    if constexpr (kFloat) return _mm512_maskz_loadu_ps(k, p); else return _mm512_maskz_loadu_pd(k, p);
  }
  FASTRNN_SIMD_INLINE static void store(T* p, Mask k, V v) {
    if constexpr (kFloat) _mm512_mask_storeu_ps(p, k, v); else _mm512_mask_storeu_pd(p, k, v);
  }
  // Lanes [0, n), n < kLanes (unclamped).
  template <typename N>
  FASTRNN_SIMD_INLINE static V load_first(const T* p, N n) {
    return load(static_cast<Mask>((1u << n) - 1), p);
  }
  template <typename N>
  FASTRNN_SIMD_INLINE static void store_first(T* p, V v, N n) {
    store(p, static_cast<Mask>((1u << n) - 1), v);
  }

  // ---- horizontal sums ----
  // The two 256-bit halves added. (Zero-masked extracts keeping every lane: gcc 12 warns about
  // the plain extract's undefined pass-through operand, which _mm512_castps512_ps256 and
  // _mm512_reduce_add_ps use.)
  FASTRNN_SIMD_INLINE static typename Half::V halves(V a) {
    if constexpr (kFloat) {
      return _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, a, 0), _mm512_maskz_extractf32x8_ps(0xFF, a, 1));
    } else {
      return _mm256_add_pd(_mm512_maskz_extractf64x4_pd(0xF, a, 0), _mm512_maskz_extractf64x4_pd(0xF, a, 1));
    }
  }
  FASTRNN_SIMD_INLINE static T sum(V a) { return Half::sum(halves(a)); }
  FASTRNN_SIMD_INLINE static typename Half::Quad reduce4(V a0, V a1, V a2, V a3) {
    return Half::reduce4(halves(a0), halves(a1), halves(a2), halves(a3));
  }
  FASTRNN_SIMD_INLINE static void store4(T* p, typename Half::Quad v) { Half::store4(p, v); }

  // ---- compares and selects, with torch's NaN rules ----
  // v <= 0 ? 0 : v (NaN stays).
  FASTRNN_SIMD_INLINE static V relu(V v) {
    if constexpr (kFloat) return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero(), _CMP_LE_OQ), v, zero());
    else return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(v, zero(), _CMP_LE_OQ), v, zero());
  }
  // Lanes where r takes over a running maximum top: r > top or r NaN.
  FASTRNN_SIMD_INLINE static Mask greater_or_nan(V r, V top) {
    if constexpr (kFloat) return _mm512_cmp_ps_mask(r, top, _CMP_GT_OQ) | _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
    else return _mm512_cmp_pd_mask(r, top, _CMP_GT_OQ) | _mm512_cmp_pd_mask(r, r, _CMP_UNORD_Q);
  }
  // The lanes of b where m is set, of a elsewhere.
  FASTRNN_SIMD_INLINE static V blend(Mask m, V a, V b) {
    if constexpr (kFloat) return _mm512_mask_blend_ps(m, a, b); else return _mm512_mask_blend_pd(m, a, b);
  }

  // ---- permutes: lane i of permute(a, idx, b) is lane idx[i] of a:b (2 kLanes lanes) ----
  FASTRNN_SIMD_INLINE static V permute(V a, __m512i idx, V b) {
    if constexpr (kFloat) return _mm512_permutex2var_ps(a, idx, b); else return _mm512_permutex2var_pd(a, idx, b);
  }
  // The index vector of lanes f + k * pair and f + k * pair + odd, k = 0, 1, .. (2 kLanes lanes
  // of a:b).
  FASTRNN_SIMD_INLINE static __m512i lane_pattern(int f, int pair, int odd) {
    if constexpr (kFloat) {
      return _mm512_setr_epi32(f, f + odd, f + pair, f + pair + odd, f + 2 * pair, f + 2 * pair + odd, f + 3 * pair,
                               f + 3 * pair + odd, f + 4 * pair, f + 4 * pair + odd, f + 5 * pair, f + 5 * pair + odd,
                               f + 6 * pair, f + 6 * pair + odd, f + 7 * pair, f + 7 * pair + odd);
    } else {
      return _mm512_setr_epi64(f, f + odd, f + pair, f + pair + odd, f + 2 * pair, f + 2 * pair + odd, f + 3 * pair,
                               f + 3 * pair + odd);
    }
  }
  // Lanes f, f + 2, f + 4, .. of a:b: f = 0 the even ones, 1 the odd ones.
  FASTRNN_SIMD_INLINE static __m512i every_other(int f) { return lane_pattern(f, 4, 2); }
  // a[h], b[h], a[h + 1], b[h + 1], ..: h = 0 interleaves the low halves, kLanes / 2 the high ones.
  FASTRNN_SIMD_INLINE static __m512i alternate_halves(int h) { return lane_pattern(h, 1, kLanes); }

  // r[0..kLanes) rows of kLanes -> r[k] = column k (r[i] lane k becomes r[k] lane i).
  static void transpose(V* r) {
    if constexpr (kFloat) {
      V t[16], u[16];
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
      // u[4q + k]: rows 4q..4q+3 of columns k, k + 4, k + 8, k + 12 (one per 128-bit lane)
      for (int q = 0; q < 4; ++q) {
        const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
      }
      for (int k = 0; k < 4; ++k) {
        const V va = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), vb = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
        const V wa = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88), wb = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
        r[k] = _mm512_shuffle_f32x4(va, wa, 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(va, wa, 0xdd);
        r[k + 4] = _mm512_shuffle_f32x4(vb, wb, 0x88);
        r[k + 12] = _mm512_shuffle_f32x4(vb, wb, 0xdd);
      }
    } else {
      V t[8], v[8];
      for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
      }
      // v[4h + ...]: rows 4h..4h+3 (pairs) of columns {0,4}, {2,6}, {1,5}, {3,7}
      for (int h = 0; h < 2; ++h) {
        v[4 * h + 0] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0x88);
        v[4 * h + 1] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0xdd);
        v[4 * h + 2] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0x88);
        v[4 * h + 3] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0xdd);
      }
      r[0] = _mm512_shuffle_f64x2(v[0], v[4], 0x88), r[4] = _mm512_shuffle_f64x2(v[0], v[4], 0xdd);
      r[2] = _mm512_shuffle_f64x2(v[1], v[5], 0x88), r[6] = _mm512_shuffle_f64x2(v[1], v[5], 0xdd);
      r[1] = _mm512_shuffle_f64x2(v[2], v[6], 0x88), r[5] = _mm512_shuffle_f64x2(v[2], v[6], 0xdd);
      r[3] = _mm512_shuffle_f64x2(v[3], v[7], 0x88), r[7] = _mm512_shuffle_f64x2(v[3], v[7], 0xdd);
    }
  }
};
