// Packed, blocked GEMM (the BLIS loop structure) and the panel helpers the RNN recurrence
// uses. Included once per instruction set, inside namespace fastrnn::cpu::isa_<name>, after
// microkernel_<name>.h, which defines:
//   Tile<T>::MR, Tile<T>::NR   the register block (rows x columns of C)
//   micro_kernel<T>(kc, a, b, c, ldc, mr, nr, alpha, beta)
//       C[mr x nr] = alpha * a . b + beta * C (beta == 0: C is not read), where `a` is an
//       MR-row panel (kc groups of MR values) and `b` an NR-column panel (kc groups of NR).
//
// Panels are zero-padded at the edges, so the micro-kernel always runs a full tile and only
// the store is trimmed. No standard-library templates here: each inclusion is compiled with
// different -m flags, and a shared inline template instantiated in two of them could be
// merged by the linker into the wrong instruction set.

constexpr int64_t kKC = 256;  // depth of a packed slice: an A and a B micro-panel stay in L1

template <typename T>
constexpr int64_t kMC = Tile<T>::MR * (144 / Tile<T>::MR);  // rows of a C tile (~144)
template <typename T>
constexpr int64_t kNC = Tile<T>::NR * (512 / Tile<T>::NR);  // columns of a C tile (~512)

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

template <typename T>
constexpr int64_t gemm_scratch_bytes() {
  return round_up((kMC<T> * kKC + kKC * kNC<T>) * static_cast<int64_t>(sizeof(T)), 64);
}

// ---- Panels of arbitrary rows (used by the recurrence) -------------------------------------

// Packs rows 0..m-1 (row(i) returns a pointer to row i's K values) as MR-row panels over the
// full depth K; panel p starts at out + p*MR*K. Rows m.. up to the next MR are zeros.
template <typename T, typename RowFn>
void pack_a_rows(int64_t m, int64_t K, const RowFn& row, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  for (int64_t p = 0; p < m; p += MR) {
    const int64_t rows = min_i64(MR, m - p);
    for (int64_t i = 0; i < MR; ++i) {
      if (i < rows) {
        const T* src = row(p + i);
        for (int64_t k = 0; k < K; ++k) out[k * MR + i] = src[k];
      } else {
        for (int64_t k = 0; k < K; ++k) out[k * MR + i] = T(0);
      }
    }
    out += MR * K;
  }
}

// One NR-column panel over depth K from `cols` columns, column j of op(B) being the
// contiguous vector col(j) (a row of a weight matrix used transposed). Missing columns are 0.
template <typename T, typename ColFn>
void pack_b_columns(int64_t K, int64_t cols, const ColFn& col, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t j = 0; j < NR; ++j) {
    if (j < cols) {
      const T* src = col(j);
      for (int64_t k = 0; k < K; ++k) out[k * NR + j] = src[k];
    } else {
      for (int64_t k = 0; k < K; ++k) out[k * NR + j] = T(0);
    }
  }
}

// One NR-column panel over depth K from a row-major block: op(B)[k][j] = b[k*ldb + j].
template <typename T>
void pack_b_block(int64_t K, int64_t cols, const T* b, int64_t ldb, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t j = 0; j < NR; ++j) out[k * NR + j] = j < cols ? b[k * ldb + j] : T(0);
  }
}

// C[m x nr] = A . B-panel + beta * C for packed A (pack_a_rows) and one B panel, both over
// depth K, on the calling thread. K is walked in kKC slices so the B slice stays in L1 while
// every A panel passes over it.
template <typename T>
void panel_gemm(int64_t m, int64_t K, const T* a_pack, const T* b_panel, T* c, int64_t ldc, int64_t nr, T beta) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = min_i64(kKC, K - k0);
    const T b_eff = k0 == 0 ? beta : T(1);
    for (int64_t p = 0; p < m; p += MR) {
      micro_kernel<T>(kc, a_pack + p * K + k0 * MR, b_panel + k0 * NR, c + p * ldc, ldc, min_i64(MR, m - p), nr,
                      T(1), b_eff);
    }
  }
}

// ---- General GEMM (gemm.h) -------------------------------------------------------------------

// Packs rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) as MR-row panels of depth kc.
template <typename T>
void pack_a(const GemmArgs<T>& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  for (int64_t p = 0; p < mc; p += MR) {
    const int64_t rows = min_i64(MR, mc - p);
    if (g.trans_a) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = g.A + (k0 + k) * g.lda + i0 + p;
        for (int64_t i = 0; i < MR; ++i) out[k * MR + i] = i < rows ? src[i] : T(0);
      }
    } else {
      for (int64_t i = 0; i < MR; ++i) {
        const T* src = g.A + (i0 + p + i) * g.lda + k0;
        for (int64_t k = 0; k < kc; ++k) out[k * MR + i] = i < rows ? src[k] : T(0);
      }
    }
    out += kc * MR;
  }
}

// Packs depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) as NR-column panels of depth kc.
template <typename T>
void pack_b(const GemmArgs<T>& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t q = 0; q < nc; q += NR) {
    const int64_t cols = min_i64(NR, nc - q);
    if (g.trans_b) {
      pack_b_columns<T>(kc, cols, [&](int64_t j) { return g.B + (j0 + q + j) * g.ldb + k0; }, out);
    } else {
      pack_b_block<T>(kc, cols, g.B + k0 * g.ldb + j0 + q, g.ldb, out);
    }
    out += kc * NR;
  }
}

// One MC x NC tile of C, all of K, on the calling thread.
template <typename T>
void gemm_tile(const GemmArgs<T>& g, int64_t i0, int64_t mc, int64_t j0, int64_t nc, T* a_buf, T* b_buf) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  for (int64_t k0 = 0; k0 < g.K; k0 += kKC) {
    const int64_t kc = min_i64(kKC, g.K - k0);
    const T beta = k0 == 0 ? g.beta : T(1);
    pack_a(g, i0, mc, k0, kc, a_buf);
    pack_b(g, k0, kc, j0, nc, b_buf);
    // B micro-panel outer: it stays in L1 while the A panels (in L2) stream past it.
    for (int64_t q = 0; q < nc; q += NR) {
      for (int64_t p = 0; p < mc; p += MR) {
        micro_kernel<T>(kc, a_buf + p * kc, b_buf + q * kc, g.C + (i0 + p) * g.ldc + j0 + q, g.ldc,
                        min_i64(MR, mc - p), min_i64(NR, nc - q), g.alpha, beta);
      }
    }
  }
}

// The general product of gemm.h with this instruction set's micro-kernel.
template <typename T>
void parallel_gemm(const GemmArgs<T>& g, const GemmScratch& scratch) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {  // alpha times an empty sum
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) g.C[i * g.ldc + j] = g.beta == T(0) ? T(0) : g.beta * g.C[i * g.ldc + j];
    return;
  }
  constexpr int NR = Tile<T>::NR;
  const bool nested = omp_in_parallel();
  int threads = nested ? 1 : min_i64(omp_get_max_threads(), scratch.threads);
  // A product too small to pay for a parallel region runs on one thread.
  if (g.M * g.N * g.K < 64 * 64 * 64) threads = 1;
  const int64_t m_blocks = ceil_div(g.M, kMC<T>);
  // Narrow the column tiles until every thread has one, but keep them at least NR wide.
  int64_t nc = kNC<T>;
  if (m_blocks * ceil_div(g.N, nc) < threads) nc = round_up(ceil_div(g.N, ceil_div(threads, m_blocks)), NR);
  const int64_t tiles = m_blocks * ceil_div(g.N, nc);
  if (threads > tiles) threads = static_cast<int>(tiles);

  auto run_tiles = [&](int slot, int64_t first, int64_t step) {
    T* a_buf = reinterpret_cast<T*>(scratch.data + slot * scratch.bytes_per_thread);
    T* b_buf = a_buf + kMC<T> * kKC;
    for (int64_t t = first; t < tiles; t += step) {
      const int64_t i0 = (t % m_blocks) * kMC<T>, j0 = (t / m_blocks) * nc;
      gemm_tile(g, i0, min_i64(kMC<T>, g.M - i0), j0, min_i64(nc, g.N - j0), a_buf, b_buf);
    }
  };
  if (threads <= 1) {
    run_tiles(nested ? omp_get_thread_num() : 0, 0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  run_tiles(omp_get_thread_num(), omp_get_thread_num(), omp_get_num_threads());
}
