// The k loop shared by the hand-written micro-kernels (AVX-512, AVX2): an M x (2 vectors)
// block of C accumulated over one A panel and one B panel. Included inside the instruction
// set's namespace by microkernel_<isa>.h, after it defines Simd<T> (V, load, set1, fma, add).

// acc0[i], acc1[i] = row i of A . B for the two vectors of columns, from a(k, i) = op(A)[i][k]
// and b, NR = 2 vectors wide. Also prefetches the C tile the caller will read back.
template <int M, typename T, typename A>
inline __attribute__((always_inline)) void accumulate(int64_t kc, const A& a, const T* FASTRNN_RESTRICT b,
                                                      const T* c, int64_t ldc, T beta, typename Simd<T>::V* acc0,
                                                      typename Simd<T>::V* acc1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = sizeof(V) / sizeof(T), NR = 2 * W;  // lanes per vector, columns of the block
  // C is read only after the k loop; when it will be (beta != 0), ask for its lines now so a
  // C that lives in memory arrives meanwhile (a product over a large K passes over C many times).
  // The prefetch takes its addresses from an opaque copy of c and ldc: computed from c itself,
  // GCC kept the M row addresses live across the k loop for the caller's stores, ran out of
  // general registers, parked them in vector registers and spilled a B vector to the stack
  // instead (12 FMAs a k step reading B from the stack, in the A-transposed GEMM and in the GRU
  // recurrence; see bench/NOTES.md, gemm).
  if (beta != T(0)) {
    const T* cp = c;
    int64_t ldp = ldc;
    asm("" : "+r"(cp), "+r"(ldp));
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      __builtin_prefetch(cp + i * ldp, 1, 3);
      __builtin_prefetch(cp + i * ldp + NR - 1, 1, 3);
    }
  }
  // Two FMA ports with 4-cycle latency need 8 independent sums: with few rows, each row keeps
  // U partial sums over alternating k and adds them at the end.
  constexpr int U = M >= 4 ? 1 : (M == 1 ? 4 : 2);
  V sum0[U][M], sum1[U][M];
#pragma GCC unroll 16
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) sum0[u][i] = sum1[u][i] = S::set1(T(0));
  // B's panel streams from L2 when it outgrows L1 (AVX-512's 512-deep panels are 64 KiB), and
  // the hardware prefetchers bring its lines too late for a loop that eats two of them every
  // 12 cycles: each k step asks for the lines of the row kPrefetchRows ahead. (AVX2's 256-deep
  // panels, 16 KiB, stay in L1.)
  constexpr bool kPrefetchB = kDepth * NR * sizeof(T) > 32 * 1024;
  constexpr int kLines = kPrefetchB ? NR * sizeof(T) / 64 : 0, kPrefetchRows = 2048 / (NR * sizeof(T));
  int64_t k = 0;
  for (; k + U <= kc; k += U) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
#pragma GCC unroll 4
      for (int l = 0; l < kLines; ++l) __builtin_prefetch(b + (k + u + kPrefetchRows) * NR + l * (64 / sizeof(T)), 0, 3);
      const V b0 = S::load(b + (k + u) * NR), b1 = S::load(b + (k + u) * NR + W);
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i) {
        const V ai = S::set1(a(k + u, i));
        sum0[u][i] = S::fma(ai, b0, sum0[u][i]);
        sum1[u][i] = S::fma(ai, b1, sum1[u][i]);
      }
    }
  }
  for (; k < kc; ++k) {
    const V b0 = S::load(b + k * NR), b1 = S::load(b + k * NR + W);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const V ai = S::set1(a(k, i));
      sum0[0][i] = S::fma(ai, b0, sum0[0][i]);
      sum1[0][i] = S::fma(ai, b1, sum1[0][i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    acc0[i] = sum0[0][i];
    acc1[i] = sum1[0][i];
#pragma GCC unroll 16
    for (int u = 1; u < U; ++u) {
      acc0[i] = S::add(acc0[i], sum0[u][i]);
      acc1[i] = S::add(acc1[i], sum1[u][i]);
    }
  }
}
