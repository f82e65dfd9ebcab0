// AVX2+FMA micro-kernels, included inside namespace fastrnn::cpu::isa_avx2 (see gemm_impl.h
// for the contract). 16 ymm registers: 6 rows x 2 vectors of accumulators (12), 2 for the B
// row, 1 broadcast.

// Depth of a packed slice: a B micro-panel of it (256 x NR) stays in L1.
constexpr int64_t kDepth = 256;

// The register block: 6 rows x 2 vectors (16 floats, 8 doubles).
template <typename T>
struct Tile {
  static constexpr int MR = 6, NR = 64 / sizeof(T);
};

#include "cpu/simd/simd.h"

#include "cpu/gemm/microkernel_simd.h"

// c = alpha * v + beta * c (beta == 0: c is not read).
template <typename S, typename T>
inline void store_scaled(T* c, typename S::V v, T alpha, T beta) {
  v = S::mul(S::set1(alpha), v);
  if (beta != T(0)) v = S::fma(S::set1(beta), S::load(c), v);
  S::store(c, v);
}

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
    store_scaled<S>(out + i * ld, acc0[i], alpha, b_eff);
    store_scaled<S>(out + i * ld + W, acc1[i], alpha, b_eff);
  }
  if (!full) {
    for (int i = 0; i < M; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}
