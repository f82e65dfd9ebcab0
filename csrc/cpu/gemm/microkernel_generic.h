// Portable micro-kernel, included inside namespace fastrnn::cpu::isa_generic (see
// gemm_impl.h for the contract). Plain C++ the compiler vectorises for the baseline target;
// the accumulator is indexed only by compile-time constants so it can live in registers.

// Depth of a packed slice: a B micro-panel of it (256 x NR) stays in L1.
constexpr int64_t kDepth = 256;

// The register block: 4 rows x 16 floats or 8 doubles.
template <typename T>
struct Tile {
  static constexpr int MR = 4, NR = 64 / sizeof(T);
};

template <int M, typename T, typename A>
inline __attribute__((always_inline)) void kernel_rows_packed(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b, T* c,
                                                       int64_t ldc, int64_t nr, T alpha, T beta) {
  constexpr int NR = Tile<T>::NR;
  T acc[M][NR];
#pragma GCC unroll 64
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 64
    for (int j = 0; j < NR; ++j) acc[i][j] = T(0);
  for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 64
    for (int i = 0; i < M; ++i) {
      const T ai = a(k, i);
#pragma GCC unroll 64
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[k * NR + j];
    }
  }
  // Only compile-time indices into acc: edge tiles go through a stack copy.
  T edge[M * NR];
  const bool full = nr == NR;
  T* out = full ? c : edge;
  const int64_t ld = full ? ldc : NR;
  const bool read_c = full && beta != T(0);
#pragma GCC unroll 64
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 64
    for (int j = 0; j < NR; ++j) out[i * ld + j] = alpha * acc[i][j] + (read_c ? beta * out[i * ld + j] : T(0));
  if (!full) {
    for (int i = 0; i < M; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}

// Read through row pointers, the compiler no longer keeps the accumulators in registers, so every A is first copied into a packed panel on the stack (at most 256 deep;
// 1/NR of the multiply-adds).
template <int M, typename T, typename A>
inline __attribute__((always_inline)) void kernel_rows(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b, T* c,
                                                       int64_t ldc, int64_t nr, T alpha, T beta) {
  constexpr int MR = Tile<T>::MR;
  T panel[256 * MR];
  for (int64_t k0 = 0; k0 < kc; k0 += 256) {
    const int64_t n = kc - k0 < 256 ? kc - k0 : 256;
    for (int64_t k = 0; k < n; ++k)
      for (int i = 0; i < M; ++i) panel[k * MR + i] = a(k0 + k, i);
    struct Panel {
      const T* p;
      T operator()(int64_t k, int i) const { return p[k * MR + i]; }
    };
    kernel_rows_packed<M>(n, Panel{panel}, b + k0 * Tile<T>::NR, c, ldc, nr, alpha, k0 == 0 ? beta : T(1));
  }
}
