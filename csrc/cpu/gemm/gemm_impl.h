// Packed, blocked GEMM (the BLIS loop structure) and the panel product the RNN recurrence
// uses. Included once per instruction set, inside namespace fastrnn::cpu::isa_<name>, after
// microkernel_<name>.h, which defines:
//   Tile<T>::MR, Tile<T>::NR   the register block (rows x columns of C)
//   kernel_rows<M>(kc, a, b, c, ldc, nr, alpha, beta)
//       C[M x nr] = alpha * A . B + beta * C (beta == 0: C is not read), where a(k, i) reads
//       op(A)[i][k] and b is an NR-column panel (kc groups of NR values, zero-padded).
//
// No standard-library templates here: each inclusion is compiled with different -m flags, and
// a shared inline template instantiated in two of them could be merged by the linker into
// the wrong instruction set.

constexpr int64_t kKC = kDepth;  // depth of a packed slice (microkernel_<name>.h)

template <typename T>
constexpr int64_t kMC = Tile<T>::MR * (144 / Tile<T>::MR);  // rows of an A block (in L2)
template <typename T>
constexpr int64_t kNC = Tile<T>::NR * ((1 << 20) / (kKC * sizeof(T)) / Tile<T>::NR);  // 1 MiB B block (L2)

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// A product whose C has at most this many elements and whose depth is at least 4x C's larger
// side has its depth split between the threads (parallel_gemm); each thread past the first
// keeps its partial C in its scratch slot, after the packing buffers.
constexpr int64_t kSplitDepthElems = 512 * 512;

template <typename T>
constexpr int64_t gemm_scratch_bytes() {
  return round_up((kMC<T> * kKC + kKC * kNC<T> + kSplitDepthElems) * static_cast<int64_t>(sizeof(T)), 64);
}

// A read from MR-row packed panels: a(k, i) = p[k * MR + i].
template <typename T>
struct PackedA {
  const T* p;
  T operator()(int64_t k, int i) const { return p[k * Tile<T>::MR + i]; }
};

// A read straight from row pointers: a(k, i) = rows[i][k0 + k].
template <typename T>
struct RowsA {
  const T* const* rows;
  int64_t k0;
  T operator()(int64_t k, int i) const { return rows[i][k0 + k]; }
};

// A as stored with a uniform row stride: a(k, i) = base[i * lda + k]. Rows read in place (the
// recurrence's, and the general GEMM's A where it is not packed) go through this rather than
// RowsA's 12 row pointers, which GCC could not keep in registers with the kernel's other
// operands (a row pointer reloaded from the stack and one moved from a vector register every
// k step; see bench/NOTES.md, gemm). On AVX-512 in float the general GEMM now packs A, see pack_a.
template <typename T>
struct StridedA {
  const T* base;
  int64_t lda;
  T operator()(int64_t k, int i) const { return base[i * lda + k]; }
};

// Runs the M-row kernel for mr <= MR rows (a partial row block compiles to its own kernel,
// so a batch of one does one row's work).
template <typename T, typename A, int M = Tile<T>::MR>
inline void micro_kernel(int64_t kc, const A& a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr, T alpha,
                         T beta) {
  if constexpr (M > 1) {
    if (mr < M) return micro_kernel<T, A, M - 1>(kc, a, b, c, ldc, mr, nr, alpha, beta);
  }
  kernel_rows<M>(kc, a, b, c, ldc, nr, alpha, beta);
}

// ---- Packing -------------------------------------------------------------------------------

// One NR-column panel over depth K from `cols` columns, column j of op(B) being the
// contiguous vector col(j) (a row of a weight matrix used transposed). Missing columns are 0.
// A transpose: written a row of NR at a time (contiguous stores), read from NR columns whose
// current cache lines stay in L1 across the next steps of k.
#ifdef __AVX2__
// out[i * ld + j] = src[j][k + i] for i, j < 8: eight 8-float rows transposed in registers.
inline void transpose_8x8(const float* const* src, int64_t k, float* out, int64_t ld) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src[j] + k);
#pragma GCC unroll 4
  for (int j = 0; j < 8; j += 2) {
    t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);      // j[0] j+1[0] j[1] j+1[1] | the same for 4, 5
    t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);  // elements 2, 3 | 6, 7
  }
#pragma GCC unroll 2
  for (int h = 0; h < 8; h += 4) {  // rows 0-3, then rows 4-7 of the source
    r[h] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));      // element 0 | 4
    r[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));  // element 1 | 5
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0));  // 2 | 6
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2));  // 3 | 7
  }
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    _mm256_storeu_ps(out + e * ld, _mm256_permute2f128_ps(r[e], r[e + 4], 0x20));
    _mm256_storeu_ps(out + (e + 4) * ld, _mm256_permute2f128_ps(r[e], r[e + 4], 0x31));
  }
}
#endif

template <typename T, typename ColFn>
void pack_b_columns(int64_t K, int64_t cols, const ColFn& col, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  const T* src[NR];
  for (int64_t j = 0; j < NR; ++j) src[j] = j < cols ? col(j) : nullptr;
  int64_t k = 0;
#ifdef __AVX2__
  // Full float panels 8 x 8 at a time in registers: the scalar transpose below costs as much
  // as a batch-1 step's arithmetic when the forward packs its weights.
  if constexpr (sizeof(T) == 4 && NR % 8 == 0) {
    if (cols == NR) {
      for (; k + 8 <= K; k += 8) {
#pragma GCC unroll 4
        for (int jb = 0; jb < NR; jb += 8) transpose_8x8(src + jb, k, out + k * NR + jb, NR);
      }
    }
  }
#endif
  for (; k < K; ++k) {
    T* row = out + k * NR;
    if (cols == NR) {
#pragma GCC unroll 32
      for (int64_t j = 0; j < NR; ++j) row[j] = src[j][k];
    } else {
      for (int64_t j = 0; j < NR; ++j) row[j] = j < cols ? src[j][k] : T(0);
    }
  }
}

// One NR-column panel over depth K from a row-major block: op(B)[k][j] = b[k*ldb + j].
// GCC turns the full-width row copy into a memcpy call of NR values per k (a library call for
// two vector loads and two stores, see bench/NOTES.md, gemm);
// FASTRNN_NO_LIBCALL_LOOPS keeps it an inline vector copy.
template <typename T>
FASTRNN_NO_LIBCALL_LOOPS void pack_b_block(int64_t K, int64_t cols, const T* b, int64_t ldb, T* FASTRNN_RESTRICT out) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t k = 0; k < K; ++k) {
    if (cols == NR) {
#pragma omp simd
      for (int64_t j = 0; j < NR; ++j) out[k * NR + j] = b[k * ldb + j];
    } else {
      for (int64_t j = 0; j < NR; ++j) out[k * NR + j] = j < cols ? b[k * ldb + j] : T(0);
    }
  }
}

// Whether pack_row_panel has a vector path for this type and row block (float on AVX-512).
// Without one, the general GEMM reads A as stored in place (StridedA) and the recurrence reads
// its rows in place: a scalar pack costs more than it saves, and on AVX2 (6-row blocks, 5
// address adds per k step) a transposing pack measured no faster than reading in place (see
// bench/NOTES.md, gemm).
template <typename T>
constexpr bool kVectorRowPack =
#ifdef __AVX2__
    sizeof(T) == 4 && Tile<T>::MR == 12;
#else
    false;
#endif

// One MR-row panel of depth kc from 1 <= `rows` <= MR rows contiguous in k (row[i], i < rows):
// out[k * MR + i] = row[i][k]. A partial panel's missing rows repeat its last row (the kernel
// runs mr-row code and never reads them), so every panel takes the vector transpose.
template <typename T>
void pack_row_panel(const T* const* row, int64_t rows, int64_t kc, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  const T* src[MR];
  for (int i = 0; i < MR; ++i) src[i] = row[i < rows ? i : rows - 1];
  int64_t k = 0;
#ifdef __AVX2__
  if constexpr (sizeof(T) == 4 && MR == 12) {
    // Two 8x8 transposes per 8 columns of depth, rows 0-7 and rows 4-11 (the 4 rows in both
    // are written twice, alike).
    for (; k + 8 <= kc; k += 8) {
      transpose_8x8(src, k, out + k * MR, MR);
      transpose_8x8(src + 4, k, out + k * MR + 4, MR);
    }
  }
#endif
  for (; k < kc; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) out[k * MR + i] = src[i][k];
  }
}

// Rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) as MR-row panels of depth kc: MR contiguous
// values per k, so the micro-kernel's MR broadcasts per k step come from one address and need no
// address arithmetic. A as stored (rows contiguous in k) is transposed panel by panel; A^T is
// walked k-outer: each k reads one contiguous run of mc values of a row of A and deals it out
// to the panels. (Panel-outer read MR values from each of kc rows lda apart; with lda a multiple
// of 4 KiB those rows share one L1 set and every panel re-fetched them from L2.)
// A as stored is packed only where pack_row_panel has a vector path (kVectorRowPack); read in
// place (StridedA) the AVX-512 kernel spends 11 integer adds per k step on row addresses
// (packed against in place: see bench/NOTES.md, gemm).
template <typename T>
void pack_a(const GemmArgs<T>& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  const int64_t full = mc / MR, rest = mc - full * MR;
  if (!g.trans_a) {
    for (int64_t p = 0; p * MR < mc; ++p) {
      const T* src[MR];
      const int64_t rows = min_i64(MR, mc - p * MR);
      for (int64_t i = 0; i < rows; ++i) src[i] = g.A + (i0 + p * MR + i) * g.lda + k0;
      pack_row_panel(src, rows, kc, out + p * kc * MR);
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const T* src = g.A + (k0 + k) * g.lda + i0;
    T* dst = out + k * MR;
    for (int64_t p = 0; p < full; ++p) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[p * kc * MR + i] = src[p * MR + i];
    }
    if (rest) {
      for (int i = 0; i < MR; ++i) dst[full * kc * MR + i] = i < rest ? src[full * MR + i] : T(0);
    }
  }
}

// Depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) as NR-column panels of depth kc.
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

// ---- Products against weights read in place (small batches) ------------------------------------

#if defined(__AVX2__) && defined(__FMA__)
#include "cpu/gemm/rowdot_avx2.h"
#else
constexpr bool kHasRowDot = false;  // callers pack instead; this is never called
template <typename T, typename RowFn, typename WeightFn>
void rowdot(int64_t, int64_t, const RowFn&, int64_t, const WeightFn&, T*, int64_t) {}
#endif

// ---- The panel product of the recurrence ------------------------------------------------------

// The loops of the recurrence's panel products: C[m x ncols] = A . B + beta * C on the calling
// thread, B one or more NR-column panels side by side (panel q at b + q * K * NR, each K x NR,
// the last ncols - q * NR wide). K is walked in kKC slices, outermost: each A slice (m x kKC)
// is fetched once into L2 and read there by every panel, and a B slice (kKC x NR) stays near
// the core while the row blocks pass over it. (With the panels outside, the backward's A over
// K = 4H ~ 2048 no longer fit in L2 beside its weights and every panel re-read it from L3.)
// block(p, mr, k0, kc, bq, cq, nr, beta) runs the micro-kernel on rows [p, p + mr) of A.
template <typename T, typename BlockFn>
void panel_loops(int64_t m, int64_t K, const T* b, T* c, int64_t ldc, int64_t ncols, T beta, const BlockFn& block) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  if (K <= 0) {  // an empty sum
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < ncols; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = min_i64(kKC, K - k0);
    for (int64_t q = 0; q * NR < ncols; ++q) {
      for (int64_t p = 0; p < m; p += MR) {
        block(p, min_i64(MR, m - p), k0, kc, b + q * K * NR + k0 * NR, c + p * ldc + q * NR,
              min_i64(NR, ncols - q * NR), k0 == 0 ? beta : T(1));
      }
    }
  }
}

// The panel product with A's row i being row(i) (K values), read in place, with no packing.
template <typename T, typename RowFn>
void panel_gemm(int64_t m, int64_t K, const RowFn& row, const T* b, T* c, int64_t ldc, int64_t ncols, T beta) {
  constexpr int MR = Tile<T>::MR;
  const T* rows[MR];
  panel_loops<T>(m, K, b, c, ldc, ncols, beta,
                 [&](int64_t p, int64_t mr, int64_t k0, int64_t kc, const T* bq, T* cq, int64_t nr, T bk) {
                   for (int64_t i = 0; i < mr; ++i) rows[i] = row(p + i);
                   // Rows a constant stride apart (all but a step that mixes h0 and earlier
                   // outputs) take StridedA, which keeps the kernel's operands in registers.
                   const int64_t stride = mr > 1 ? rows[1] - rows[0] : 0;
                   bool strided = true;
                   for (int64_t i = 2; i < mr; ++i) strided = strided && rows[i] - rows[i - 1] == stride;
                   if (strided) {
                     micro_kernel<T>(kc, StridedA<T>{rows[0] + k0, stride}, bq, cq, ldc, mr, nr, T(1), bk);
                   } else {
                     micro_kernel<T>(kc, RowsA<T>{rows, k0}, bq, cq, ldc, mr, nr, T(1), bk);
                   }
                 });
}

// m rows of A (row(i): K values each) as MR-row panels of depth K for panel_gemm_packed: panel
// p at out + p * K (pack_row_panel's layout; a last partial panel's missing rows are filler).
template <typename T, typename RowFn>
void pack_rows(int64_t m, int64_t K, const RowFn& row, T* FASTRNN_RESTRICT out) {
  constexpr int MR = Tile<T>::MR;
  const T* src[MR];
  for (int64_t p = 0; p < m; p += MR) {
    const int64_t rows = min_i64(MR, m - p);
    for (int64_t i = 0; i < rows; ++i) src[i] = row(p + i);
    pack_row_panel(src, rows, K, out + p * K);
  }
}

// The panel product with A packed by pack_rows: the kernel's broadcasts from one contiguous
// panel instead of MR strided rows (no address arithmetic per k step).
template <typename T>
void panel_gemm_packed(int64_t m, int64_t K, const T* a, const T* b, T* c, int64_t ldc, int64_t ncols, T beta) {
  constexpr int MR = Tile<T>::MR;
  panel_loops<T>(m, K, b, c, ldc, ncols, beta,
                 [&](int64_t p, int64_t mr, int64_t k0, int64_t kc, const T* bq, T* cq, int64_t nr, T bk) {
                   micro_kernel<T>(kc, PackedA<T>{a + p * K + k0 * MR}, bq, cq, ldc, mr, nr, T(1), bk);
                 });
}

// ---- General GEMM (gemm.h) ----------------------------------------------------------------------

// C[m0:m1, n0:n1] on the calling thread: for each NC-column block and KC slice, B is packed
// once (it stays in L2) and reused by every MC-row block of A.
template <typename T>
void gemm_range(const GemmArgs<T>& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, T* a_buf, T* b_buf) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  for (int64_t jc = n0; jc < n1; jc += kNC<T>) {
    const int64_t nc = min_i64(kNC<T>, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += kKC) {
      const int64_t kc = min_i64(kKC, g.K - pc);
      const T beta = pc == 0 ? g.beta : T(1);
      pack_b(g, pc, kc, jc, nc, b_buf);
      for (int64_t ic = m0; ic < m1; ic += kMC<T>) {
        const int64_t mc = min_i64(kMC<T>, m1 - ic);
        const bool packed = g.trans_a || kVectorRowPack<T>;
        if (packed) pack_a(g, ic, mc, pc, kc, a_buf);
        // A B micro-panel stays in L1 while the A panels of the block (in L2) pass over it.
        for (int64_t q = 0; q < nc; q += NR) {
          for (int64_t p = 0; p < mc; p += MR) {
            const int64_t mr = min_i64(MR, mc - p), nr = min_i64(NR, nc - q);
            T* c = g.C + (ic + p) * g.ldc + jc + q;
            if (packed) {
              micro_kernel<T>(kc, PackedA<T>{a_buf + p * kc}, b_buf + q * kc, c, g.ldc, mr, nr, g.alpha, beta);
            } else {
              micro_kernel<T>(kc, StridedA<T>{g.A + (ic + p) * g.lda + pc, g.lda}, b_buf + q * kc, c, g.ldc, mr, nr,
                              g.alpha, beta);
            }
          }
        }
      }
    }
  }
}

// ---- Few rows: B read in place --------------------------------------------------------------------

// With one or two rows of C (a batch-1 step's input gradient: 1 x 128 from 1 x 512 times W_ih,
// 512 x 128) a packed product spends more on copying B (256 KiB there) than on its
// multiply-adds, and the copy pushes the caller's data out of the caches. Here each row of B is
// read once, where it is, and added (scaled by A's column) into C's rows, which stay in L1 in
// blocks of kFewCols columns. Columns [n0, n1) of C. Faster than the packed product at one and
// two rows; at four rows the accumulators' loads and stores lose to the packed kernel's
// registers, so the path stops at two (see bench/NOTES.md, gemm).
constexpr int64_t kFewRows = 2;
constexpr int64_t kFewCols = 512;

template <typename T>
void few_rows_gemm(const GemmArgs<T>& g, int64_t n0, int64_t n1) {
  T acc[kFewRows * kFewCols];
  for (int64_t j0 = n0; j0 < n1; j0 += kFewCols) {
    const int64_t nc = min_i64(kFewCols, n1 - j0);
    for (int64_t i = 0; i < g.M; ++i) {
      T* r = acc + i * kFewCols;
#pragma omp simd
      for (int64_t j = 0; j < nc; ++j) r[j] = T(0);
    }
    for (int64_t k = 0; k < g.K; ++k) {
      const T* b = g.B + k * g.ldb + j0;
      for (int64_t i = 0; i < g.M; ++i) {
        const T a = g.trans_a ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
        T* r = acc + i * kFewCols;
#pragma omp simd
        for (int64_t j = 0; j < nc; ++j) r[j] += a * b[j];
      }
    }
    for (int64_t i = 0; i < g.M; ++i) {
      const T* r = acc + i * kFewCols;
      T* c = g.C + i * g.ldc + j0;
      if (g.beta == T(0)) {
#pragma omp simd
        for (int64_t j = 0; j < nc; ++j) c[j] = g.alpha * r[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < nc; ++j) c[j] = g.alpha * r[j] + g.beta * c[j];
      }
    }
  }
}

// The general product of gemm.h with this instruction set's micro-kernel. Threads take
// disjoint column ranges (each then packs all of A) or row ranges (each packs all of B),
// whichever packs less.
template <typename T>
void parallel_gemm(const GemmArgs<T>& g, const GemmScratch& scratch) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {  // alpha times an empty sum
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) g.C[i * g.ldc + j] = g.beta == T(0) ? T(0) : g.beta * g.C[i * g.ldc + j];
    return;
  }
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  const bool nested = omp_in_parallel();
  int threads = nested ? 1 : static_cast<int>(min_i64(omp_get_max_threads(), scratch.threads));
  if (g.M <= kFewRows && !g.trans_b) {
    // Threads take column ranges of whole cache lines, once each has enough of B to read.
    constexpr int64_t kLine = 64 / sizeof(T);
    const int64_t lines = ceil_div(g.N, kLine);
    if (g.N * g.K < 256 * 1024) threads = 1;
    if (threads > lines) threads = static_cast<int>(lines);
    if (threads <= 1) {
      few_rows_gemm(g, 0, g.N);
      return;
    }
#pragma omp parallel num_threads(threads)
    {
      const Range r = split(lines, omp_get_thread_num(), omp_get_num_threads());
      few_rows_gemm(g, r.begin * kLine, min_i64(r.end * kLine, g.N));
    }
    return;
  }
  if (g.M * g.N * g.K < 64 * 64 * 64) threads = 1;  // too small to pay for a parallel region
  // A small C over a long depth (the weight gradients of small layers: 256 x 256 over 1600
  // rows): splitting C's rows or columns makes every thread pack all of one operand and
  // shortens the runs each packed block serves, so 2 threads ran little faster than one.
  // Split the depth instead: each thread packs its own share of A and B and computes a whole
  // partial C, and the partials are added in at the end, a share of the rows per thread.
  if (threads > 1 && g.M * g.N <= kSplitDepthElems && g.K >= 4 * (g.M > g.N ? g.M : g.N)) {
    const int64_t packed = kMC<T> * kKC + kKC * kNC<T>;  // elements before a slot's partial C
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      T* a_buf = reinterpret_cast<T*>(scratch.data + t * scratch.bytes_per_thread);
      const Range depth = split(g.K, t, nt);
      GemmArgs<T> part = g;
      part.K = depth.end - depth.begin;  // > 0: K >= 4 * max(M, N) >= threads
      part.A = g.trans_a ? g.A + depth.begin * g.lda : g.A + depth.begin;
      part.B = g.trans_b ? g.B + depth.begin : g.B + depth.begin * g.ldb;
      if (t > 0) {
        part.C = a_buf + packed;
        part.ldc = g.N;
        part.beta = T(0);
      }
      gemm_range(part, 0, g.M, 0, g.N, a_buf, a_buf + kMC<T> * kKC);
#pragma omp barrier
      const Range rows = split(g.M, t, nt);
      for (int u = 1; u < nt; ++u) {
        const T* partial = reinterpret_cast<const T*>(scratch.data + u * scratch.bytes_per_thread) + packed;
        for (int64_t i = rows.begin; i < rows.end; ++i) {
          T* c = g.C + i * g.ldc;
          const T* p = partial + i * g.N;
#pragma omp simd
          for (int64_t j = 0; j < g.N; ++j) c[j] += p[j];
        }
      }
    }
    return;
  }
  const bool split_columns = g.N >= threads * 4 * NR && g.M <= g.N;

  auto run = [&](int slot, int part, int parts) {
    T* a_buf = reinterpret_cast<T*>(scratch.data + slot * scratch.bytes_per_thread);
    T* b_buf = a_buf + kMC<T> * kKC;
    if (split_columns) {
      const int64_t blocks = ceil_div(g.N, NR);
      const Range r = split(blocks, part, parts);
      gemm_range(g, 0, g.M, r.begin * NR, min_i64(r.end * NR, g.N), a_buf, b_buf);
    } else {
      const int64_t blocks = ceil_div(g.M, MR);
      const Range r = split(blocks, part, parts);
      gemm_range(g, r.begin * MR, min_i64(r.end * MR, g.M), 0, g.N, a_buf, b_buf);
    }
  };
  if (threads <= 1) {
    run(nested ? omp_get_thread_num() : 0, 0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  run(omp_get_thread_num(), omp_get_thread_num(), omp_get_num_threads());
}
