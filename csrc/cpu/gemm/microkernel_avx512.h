// AVX-512 micro-kernels, included inside namespace fastrnn::cpu::isa_avx512 (see gemm_impl.h
// for the contract). 32 zmm registers: in float, 12 rows x 2 vectors of accumulators (24), 2 for
// the B row, broadcasts folded into the FMAs; in double 8 x 2. Two FMA ports need >= 8
// independent chains. 12 rows rather than 8 pass over a B panel 6 times instead of 8 for a
// batch of 64, which pays where the weight slices stream from L3 every step (see
// bench/NOTES.md, gemm: MR = 12).

// Depth of a packed slice: twice AVX2's. The B micro-panel (64 KiB in float) then streams from
// L2, which on AVX-512 server cores is 1-2 MiB; in exchange C is read back half as often (a
// product over K = 512 writes C once instead of twice). See bench/NOTES.md, gemm: KC = 512.
constexpr int64_t kDepth = 512;

// The register block: 12 x 2 vectors (32 floats) or 8 x 2 (16 doubles).
template <typename T>
struct Tile {
  static constexpr int MR = sizeof(T) == 4 ? 12 : 8, NR = 128 / sizeof(T);
};

#include "cpu/simd/simd.h"

// alpha * v (+ beta * c) into the first n (clamped to 0..W) values of c; masks keep edge
// tiles inside C, and beta == 0 never reads it.
template <typename S, typename T>
inline void store_scaled(T* c, typename S::V v, int64_t n, T alpha, T beta) {
  if (n <= 0) return;
  const typename S::Mask mask = S::first(n);
  v = S::mul(S::set1(alpha), v);
  if (beta != T(0)) v = S::fma(S::set1(beta), S::load(mask, c), v);
  S::store(c, mask, v);
}

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
    store_scaled<S>(c + i * ldc, acc0[i], nr, alpha, beta);
    store_scaled<S>(c + i * ldc + W, acc1[i], nr - W, alpha, beta);
  }
}
