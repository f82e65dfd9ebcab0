// Packed, blocked GEMM (the BLIS loop structure), included once per instruction set by
// gemm_<isa>.cpp inside namespace fastrnn::cpu::FASTRNN_GEMM_NAMESPACE, after that file
// defines Tile<T>::{MR, NR} (the register block of the micro-kernel).
//
// C is cut into MC x NC tiles handed out to threads. For each tile and each KC-deep slice of
// K, the thread packs its slice of op(A) into MR-row panels and of op(B) into NR-column
// panels (zero-padded at the edges), then runs the MR x NR micro-kernel over them. Packing
// makes every micro-kernel read unit-stride whatever the transposes, and costs 1/NC + 1/MC
// of the arithmetic.
//
// No standard-library templates here: each inclusion is compiled with different -m flags, and
// a shared inline template instantiated in two of them could be merged by the linker into
// the wrong instruction set.

#ifndef FASTRNN_GEMM_NAMESPACE
#error "include gemm_impl.h only from a gemm_<isa>.cpp file"
#endif

constexpr int64_t kKC = 256;  // depth of a packed slice: one A panel + one B panel stay in L1

template <typename T>
constexpr int64_t kMC = Tile<T>::MR * (128 / Tile<T>::MR);  // rows of a tile (~128)
template <typename T>
constexpr int64_t kNC = Tile<T>::NR * (512 / Tile<T>::NR);  // columns of a tile (~512)

template <typename T>
constexpr int64_t scratch_bytes() {
  return ((kMC<T> * kKC + kKC * kNC<T>) * static_cast<int64_t>(sizeof(T)) + 63) / 64 * 64;
}

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packs rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) as panels of MR rows: panel p holds
// kc groups of MR values, row-fastest.
template <typename T>
void pack_a(const GemmArgs<T>& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  for (int64_t p = 0; p < mc; p += MR) {
    const int64_t rows = min_i64(MR, mc - p);
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < MR; ++i) {
        T v = T(0);
        if (i < rows) {
          const int64_t r = i0 + p + i, c = k0 + k;
          v = g.trans_a ? g.A[c * g.lda + r] : g.A[r * g.lda + c];
        }
        out[k * MR + i] = v;
      }
    }
    out += kc * MR;
  }
}

// Packs depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) as panels of NR columns.
template <typename T>
void pack_b(const GemmArgs<T>& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t q = 0; q < nc; q += NR) {
    const int64_t cols = min_i64(NR, nc - q);
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t r = k0 + k;
      for (int64_t j = 0; j < NR; ++j) {
        T v = T(0);
        if (j < cols) {
          const int64_t c = j0 + q + j;
          v = g.trans_b ? g.B[c * g.ldb + r] : g.B[r * g.ldb + c];
        }
        out[k * NR + j] = v;
      }
    }
    out += kc * NR;
  }
}

// C[mr x nr] = alpha * (a-panel . b-panel) + beta * C; beta == 0 never reads C.
// The accumulator is only ever indexed by compile-time constants (full unrolling), which lets
// the compiler keep it in vector registers; edge tiles go through a stack copy.
template <typename T>
void micro_kernel(int64_t kc, const T* FASTRNN_RESTRICT a, const T* FASTRNN_RESTRICT b, T* c, int64_t ldc,
                  int64_t mr, int64_t nr, T alpha, T beta) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  T acc[MR][NR];
#pragma GCC unroll 64
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 64
    for (int j = 0; j < NR; ++j) acc[i][j] = T(0);
  for (int64_t k = 0; k < kc; ++k) {
    const T* ak = a + k * MR;
    const T* bk = b + k * NR;
#pragma GCC unroll 64
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 64
      for (int j = 0; j < NR; ++j) acc[i][j] += ak[i] * bk[j];
  }
  T* out = c;
  int64_t ld = ldc;
  T edge[MR * NR];
  const bool full = mr == MR && nr == NR;
  if (!full) out = edge, ld = NR;
  if (full && beta != T(0)) {
#pragma GCC unroll 64
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 64
      for (int j = 0; j < NR; ++j) out[i * ld + j] = alpha * acc[i][j] + beta * out[i * ld + j];
  } else {
#pragma GCC unroll 64
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 64
      for (int j = 0; j < NR; ++j) out[i * ld + j] = alpha * acc[i][j];
  }
  if (!full) {
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j)
        c[i * ldc + j] = beta == T(0) ? edge[i * NR + j] : edge[i * NR + j] + beta * c[i * ldc + j];
  }
}

// One MC x NC tile of C, all of K, on the calling thread.
template <typename T>
void gemm_tile(const GemmArgs<T>& g, int64_t i0, int64_t mc, int64_t j0, int64_t nc, T* pack_a_buf,
               T* pack_b_buf) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  for (int64_t k0 = 0; k0 < g.K; k0 += kKC) {
    const int64_t kc = min_i64(kKC, g.K - k0);
    const T beta = k0 == 0 ? g.beta : T(1);
    pack_a(g, i0, mc, k0, kc, pack_a_buf);
    pack_b(g, k0, kc, j0, nc, pack_b_buf);
    for (int64_t q = 0; q < nc; q += NR) {
      for (int64_t p = 0; p < mc; p += MR) {
        micro_kernel<T>(kc, pack_a_buf + p * kc, pack_b_buf + q * kc, g.C + (i0 + p) * g.ldc + j0 + q, g.ldc,
                        min_i64(MR, mc - p), min_i64(NR, nc - q), g.alpha, beta);
      }
    }
  }
}

// C = beta * C for the K == 0 case (alpha * an empty sum).
template <typename T>
void scale_c(const GemmArgs<T>& g) {
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < g.N; ++j) g.C[i * g.ldc + j] = g.beta == T(0) ? T(0) : g.beta * g.C[i * g.ldc + j];
}

template <typename T>
void gemm(const GemmArgs<T>& g, const GemmScratch& scratch) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    scale_c(g);
    return;
  }
  constexpr int NR = Tile<T>::NR;
  const int64_t m_blocks = ceil_div(g.M, kMC<T>);
  const bool nested = omp_in_parallel();
  int threads = nested ? 1 : (omp_get_max_threads() < scratch.threads ? omp_get_max_threads() : scratch.threads);
  // Narrow the column tiles until every thread has one, but keep them at least NR wide.
  int64_t nc = kNC<T>;
  if (m_blocks * ceil_div(g.N, nc) < threads) {
    const int64_t n_blocks = ceil_div(threads, m_blocks);
    nc = ceil_div(ceil_div(g.N, n_blocks), NR) * NR;
  }
  const int64_t n_blocks = ceil_div(g.N, nc);
  const int64_t tiles = m_blocks * n_blocks;
  // A product too small to pay for a parallel region runs serially.
  if (g.M * g.N * g.K < 32 * 1024) threads = 1;
  if (threads > tiles) threads = static_cast<int>(tiles);

  auto run_tiles = [&](int slot, int64_t first, int64_t step) {
    char* base = scratch.data + slot * scratch.bytes_per_thread;
    T* pa = reinterpret_cast<T*>(base);
    T* pb = pa + kMC<T> * kKC;
    for (int64_t t = first; t < tiles; t += step) {
      const int64_t mb = t % m_blocks, nb = t / m_blocks;
      const int64_t i0 = mb * kMC<T>, j0 = nb * nc;
      gemm_tile(g, i0, min_i64(kMC<T>, g.M - i0), j0, min_i64(nc, g.N - j0), pa, pb);
    }
  };
  if (threads <= 1) {
    run_tiles(nested ? omp_get_thread_num() : 0, 0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  run_tiles(omp_get_thread_num(), omp_get_thread_num(), omp_get_num_threads());
}

template void gemm<float>(const GemmArgs<float>&, const GemmScratch&);
template void gemm<double>(const GemmArgs<double>&, const GemmScratch&);

int64_t scratch_bytes_per_thread(DType dtype) {
  return dtype == DType::Float64 ? scratch_bytes<double>() : scratch_bytes<float>();
}
