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
// with 32 registers, takes four rows at a time where AVX2 takes two (kRowDotRows).

constexpr bool kHasRowDot = true;

// Everything here is inlined into the tile, so the sums stay in registers.
#define FASTRNN_ROWDOT_INLINE inline __attribute__((always_inline))

#include "cpu/simd/avx2.h"
#if defined(__AVX512F__)
#include "cpu/simd/avx512.h"
template <typename T>
using RowDot = Avx512<T>;
constexpr int kRowDotRows = 4;
constexpr bool kRowDotMaskedTail = true;
#else
template <typename T>
using RowDot = Avx2<T>;
constexpr int kRowDotRows = 2;
constexpr bool kRowDotMaskedTail = false;
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
  constexpr int W = D::kLanes;
  V acc[R][U];
  fill_tile(acc, D::zero());
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
  if constexpr (kRowDotMaskedTail) {
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
    if constexpr (!kRowDotMaskedTail) {
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
  int64_t u = 0;
  const T* w[8];
  const T* x[4];
  for (; u + 8 <= units; u += 8) {  // one row x 8 weight rows: the batch-1 step
    for (int j = 0; j < 8; ++j) w[j] = weight(u + j);
    int64_t i = 0;
    if constexpr (kRowDotRows == 4) {  // four rows x 4 weight rows, twice: 8 loads per 16 FMAs, 21 registers
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
