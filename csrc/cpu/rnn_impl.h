// The RNN sequence driver: one time loop for every cell, forward and BPTT backward. Included
// once per instruction set inside namespace fastrnn::cpu::isa_<name>, after
// microkernel_<name>.h and gemm_impl.h, so the element math (csrc/cells) vectorises for that
// set and the products call its micro-kernel directly.
//
// Rows: x, y, the reserve and the gate gradients hold one row per (t, b) pair that is really
// computed, step after step; step t owns rows [offset(t), offset(t) + batch(t)). Packed
// sequences therefore cost nothing for their padding (see StepWalker).
//
// The recurrence is weight-stationary. Each of n threads owns a slice of hidden units (chunks
// of NR units) with all G gates of each, packs its slices of W_ih and W_hh once per call into
// its own workspace (they then stay near that core), and per step
//   forward:  computes its units' gate pre-activations h_prev W_hh^T with the micro-kernel
//             (reading h_prev in place), applies the cell right away (the tile is still in L1),
//             writes its units of h, then one barrier. The input projection x W_ih^T of its
//             units is computed by the same thread for a block of steps at a time (enough rows
//             for an efficient product: one step at batch 64, 64 steps at batch 1) into a small
//             buffer it owns, rather than for all steps up front: that would be a (T*B, G*H)
//             buffer that does not fit in cache, read in pieces scattered per unit chunk that
//             the prefetchers cannot follow;
//   backward: applies the cell backward to its units, a barrier, then computes its columns of
//             dh_prev = dgates_hh W_hh (its slice of W_hh's columns, packed once); after the
//             loop dx, dW_ih, dW_hh, dW_hr and the bias gradients are products over all rows.
// With a projection (LSTM proj_size) a second barrier per step separates the cell from the
// projection h = W_hr m, whose output columns are split the same way.
//
// Recurrent (variational) dropout: a mask (B, P) multiplies h_prev where it enters the
// product only. The forward's threads write their columns of mask * h into one of two (B, P)
// buffers as they write h (two, because within a step the others may still be reading
// mask * h_prev, all columns, from the other one); mask * h0 is formed once. The
// backward multiplies the saved h_prev rows by the mask (dW_hh) and the mask into its
// columns of dgates_hh W_hh, leaving the cell's direct term (GRU's z * dh) unmasked.

// ---- Workspace ---------------------------------------------------------------------------------

// Threads for the recurrence: one per chunk at most, and one alone when a step is too small to
// pay for a barrier.
template <typename T>
int recurrence_threads(const RnnDims& d) {
  constexpr int NR = Tile<T>::NR;
  const int64_t chunks = d.proj ? (ceil_div(d.H, NR) > ceil_div(d.P, NR) ? ceil_div(d.H, NR) : ceil_div(d.P, NR))
                                : ceil_div(d.H, NR);
  int n = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (n > chunks) n = static_cast<int>(chunks);
  if (d.B * d.G * d.H * d.P < 8192) n = 1;  // ~a microsecond of work: less than a barrier costs
  return n < 1 ? 1 : n;
}

// Steps whose input projection the forward computes together: enough rows for the micro-kernel
// to run full row blocks (a block also ends with the sequence).
inline int64_t block_steps(const RnnDims& d) { return ceil_div(64, d.B); }

// Whether the forward reads W_hh (and, for a short call, W_ih) in place (rowdot) instead of
// packing them. At a few rows per step packing costs more than it saves: each call packs the
// weights afresh, from memory when they went cold since the last call (a batch-1 GRU's 384 KiB:
// ~100 us, as much as 15 of its steps), and the one-row panel product loads 3 values per 2 FMAs
// where rowdot's 8-unit tile loads 9 per 8. A call of one or two steps (a cell, a short chunk)
// reads each packed weight only once or twice, so packing does not pay there either up to a
// batch of 64: against packing, in one process, LSTM T1 B16 H256 1.74x, T1 B64 H512 1.10-1.13x,
// T2 B16 1.34x, T2 B64 1.02x; at T1 B128 0.996x and B256 0.95x, at T4 B32 0.97x.
inline bool weights_in_place(const RnnDims& d) {
  return kHasRowDot && (d.B <= 4 || (d.B <= 64 && d.rows <= 2 * d.B));
}
// W_ih the same way only for a call of few rows: the projection runs on blocks of up to 64 rows
// (block_steps), where the packed panel product's 12-row blocks beat rowdot once the call has
// rows enough to repay packing W_ih (B1 H128, in one process against rowdot: T100 1.03-1.045x,
// T64 1.036x, T48 1.012x, T32 0.99-1.01x, T10 0.96x, T1 0.91x; B4 T100 1.05-1.135x).
inline bool input_weights_in_place(const RnnDims& d) { return weights_in_place(d) && d.rows < 64; }
// Whether the backward reads W_hh in place for dh_prev (few_rows_gemm) instead of packing W_hh^T:
// a one-step call of one or two rows (a cell at batch 1) would copy all of W_hh for one use.
inline bool backward_weights_in_place(const RnnDims& d) { return d.rows == d.B && d.B <= kFewRows; }
// Whether a one-step backward (a cell, a T1 chunk) leaves dh_prev = dgates_hh W_hh to the
// products after the recurrence (finish_backward) instead of packing all of W_hh^T for one use
// in the step loop: the general GEMM packs W_hh in cache-sized blocks and splits the work over
// every thread. (A mask or a projection keeps the step's own product, which those need.)
inline bool backward_hh_after(const RnnDims& d, bool masked) {
  return d.rows == d.B && !backward_weights_in_place(d) && !d.proj && !masked;
}

// Whether the forward packs the rows its products share (x of a block of steps, h_prev of a
// step) once per thread, for panel_gemm_packed, instead of every unit chunk's product reading
// them in place (StridedA: 11 integer adds per k step for the row addresses). In one process,
// packing against in place: T100 B64 H512 inference LSTM 1.08x, GRU 1.08x; B16 H256 within
// noise (0.99-1.02x). Below a full row panel there is nothing to gain.
template <typename T>
inline bool pack_shared_rows(const RnnDims& d) {
  return kVectorRowPack<T> && !weights_in_place(d) && d.B >= Tile<T>::MR;
}

template <typename T>
struct ThreadSpace {
  T* wi_pack = nullptr;  // this thread's W_ih panels (forward)
  T* w_pack = nullptr;   // this thread's W_hh panels (rows of its units / columns of its outputs)
  T* wr_pack = nullptr;  // this thread's W_hr panels (projection only)
  T* x_block = nullptr;  // per unit chunk, (block rows) x (G*NR): x W_ih^T for a block of steps
  T* tile = nullptr;     // (MR-padded B) x (G*NR): h_prev W_hh^T of one chunk, or backward's dm
  T* a_pack = nullptr;   // the rows a step's products share, packed (pack_rows), when there are enough
};

// One thread's piece of the workspace when n threads share the recurrence.
template <typename T>
ThreadSpace<T> thread_space(char* base, const RnnDims& d, int n, bool backward, int64_t* bytes) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  const int64_t mpad = round_up(d.B, MR);
  const int64_t h_chunks = ceil_div(ceil_div(d.H, NR), n), p_chunks = ceil_div(ceil_div(d.P, NR), n);
  const int64_t GH = d.G * d.H;
  Carver c(base);
  ThreadSpace<T> s;
  if (!backward) {
    s.wi_pack = c.take<T>(input_weights_in_place(d) ? 0 : h_chunks * d.G * d.I * NR);
    s.w_pack = c.take<T>(weights_in_place(d) ? 0 : h_chunks * d.G * d.P * NR);
    if (d.proj) s.wr_pack = c.take<T>(p_chunks * d.H * NR);
    s.x_block = c.take<T>(h_chunks * block_steps(d) * d.B * d.G * NR);
    s.tile = c.take<T>(mpad * d.G * NR);
    if (pack_shared_rows<T>(d)) s.a_pack = c.take<T>(round_up(block_steps(d) * d.B, MR) * (d.I > d.P ? d.I : d.P));
  } else {
    s.w_pack = c.take<T>(backward_weights_in_place(d) ? 0 : p_chunks * GH * NR);
    if (d.proj) s.wr_pack = c.take<T>(h_chunks * d.P * NR);
    s.tile = c.take<T>(mpad * NR);  // the projection's dm, or a masked step's dgates_hh W_hh
  }
  *bytes = round_up(c.bytes(), kAlign);
  return s;
}

template <typename T>
struct ForwardSpace {
  T* bias_ih = nullptr;  // (G*H) bias_ih, or zeros
  T* bias_hh = nullptr;  // (G*H) bias_hh, or zeros
  T* m = nullptr;        // (B, H) one step's unprojected output (projection only)
  T* h0_masked = nullptr;               // (B, P) recurrent_mask * h0
  T* h_masked[2] = {nullptr, nullptr};  // (B, P) recurrent_mask * h of alternate steps
  char* threads = nullptr;  // per-thread pieces (thread_space), `thread_bytes` apart
  int64_t thread_bytes = 0;
  int64_t bytes = 0;
};

template <typename T>
ForwardSpace<T> forward_space(void* base, const RnnDims& d, int n) {
  Carver c(base);
  ForwardSpace<T> s;
  s.bias_ih = c.take<T>(d.G * d.H);
  s.bias_hh = c.take<T>(d.G * d.H);
  if (d.proj) s.m = c.take<T>(d.B * d.H);
  s.h0_masked = c.take<T>(d.B * d.P);
  for (T*& h : s.h_masked) h = c.take<T>(d.B * d.P);
  thread_space<T>(nullptr, d, n, false, &s.thread_bytes);
  s.threads = c.take<char>(n * s.thread_bytes);
  s.bytes = c.bytes();
  return s;
}

template <typename T>
struct BackwardSpace {
  T* dgates_ih = nullptr;  // (rows, G*H) dL/d(pre-activations), input side
  T* dgates_hh = nullptr;  // (rows, G*H) recurrent side; the same buffer unless the cell splits them
  T* h_prev = nullptr;     // (rows, P) the state each row started from
  T* dh_total = nullptr;   // (rows, P) dL/dh of each row (projection only, for dW_hr)
  GemmScratch scratch;
  char* threads = nullptr;
  int64_t thread_bytes = 0;
  int64_t bytes = 0;
};

template <typename T>
BackwardSpace<T> backward_space(void* base, const RnnDims& d, bool split_dgates, int n) {
  Carver c(base);
  BackwardSpace<T> s;
  s.dgates_ih = c.take<T>(d.rows * d.G * d.H);
  s.dgates_hh = split_dgates ? c.take<T>(d.rows * d.G * d.H) : s.dgates_ih;
  s.h_prev = c.take<T>(d.rows * d.P);
  if (d.proj) s.dh_total = c.take<T>(d.rows * d.P);
  s.scratch.threads = omp_get_max_threads();
  s.scratch.bytes_per_thread = gemm_scratch_bytes<T>();
  s.scratch.data = c.take<char>(s.scratch.threads * s.scratch.bytes_per_thread);
  thread_space<T>(nullptr, d, n, true, &s.thread_bytes);
  s.threads = c.take<char>(n * s.thread_bytes);
  s.bytes = c.bytes();
  return s;
}

// ---- Helpers -----------------------------------------------------------------------------------

template <typename T>
const T* data_or_null(const TensorView& v) {
  return v.defined() ? v.data_as<T>() : nullptr;
}

template <typename T>
void gemm_call(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc, const GemmScratch& scratch) {
  GemmArgs<T> g;
  g.trans_a = trans_a, g.trans_b = trans_b;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.B = B, g.ldb = ldb;
  g.beta = beta, g.C = C, g.ldc = ldc;
  parallel_gemm(g, scratch);
}

// Column sums of a (rows, cols) matrix (the bias gradients), split over columns.
template <typename T>
void column_sums(const T* m, int64_t rows, int64_t cols, T* out) {
  const int n = cols * rows < 65536 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(n)
  {
    const Range r = split(cols, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t j = r.begin; j < r.end; ++j) out[j] = T(0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = m + i * cols;
#pragma omp simd
      for (int64_t j = r.begin; j < r.end; ++j) out[j] += row[j];
    }
  }
}

// ---- Forward -----------------------------------------------------------------------------------

template <typename T>
struct ForwardJob {
  const RnnDims* d;
  const int64_t* batch_sizes;
  bool reverse;
  const T* x;          // (rows, I)
  const T* h0;         // (B, P)
  const T* weight_ih;  // (G*H, I)
  const T* weight_hh;  // (G*H, P)
  const T* weight_hr;  // (P, H) or null
  const T* bias_ih;    // (G*H), zeros when absent
  const T* bias_hh;    // (G*H), zeros when absent
  T* y;                // (rows, P), row stride y_ld
  int64_t y_ld;
  T* c;                // (B, H) running cell state (LSTM), starts as c0
  T* reserve;          // (rows, R) or null in inference
  int64_t R;
  T* m;                // (B, H) projection input of the current step
  const T* mask;       // (B, P) recurrent dropout mask, or null
  const T* h0_masked;  // (B, P) mask * h0 (with a mask)
  T* h_masked[2];      // (B, P) each: mask * h of alternate steps (with a mask)
};

// dst[b, j0:j0+cols] = mask[b, j0:j0+cols] * src[b, j0:j0+cols] for rows b < rows.
template <typename T>
void mask_columns(int64_t rows, int64_t j0, int64_t cols, const T* src, int64_t src_ld, const T* mask, int64_t P,
                  T* dst) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* s = src + b * src_ld + j0;
    const T* m = mask + b * P + j0;
    T* o = dst + b * P + j0;
#pragma omp simd
    for (int64_t u = 0; u < cols; ++u) o[u] = m[u] * s[u];
  }
}

// The cell over units [j0, j0+cols) of rows 0..bt-1 of one step. x_tile, h_tile: (bt, G*NR)
// projections of x_t and h_prev; h_prev(b) gives row b's previous state (only GRU reads it);
// out rows get h (or m).
template <class Cell, bool kTraining, typename T, typename HPrev>
void cell_forward_chunk(const ForwardJob<T>& job, int64_t row0, int64_t bt, int64_t j0, int64_t cols,
                        const T* x_tile, const T* h_tile, const HPrev& h_prev, T* out, int64_t out_ld) {
  constexpr int NR = Tile<T>::NR;
  const int64_t H = job.d->H;
  for (int64_t b = 0; b < bt; ++b) {
    const T* xrow = x_tile + b * Cell::kGates * NR;
    const T* grow = h_tile + b * Cell::kGates * NR;
    const T* bias_ih = job.bias_ih + j0;
    const T* bias_hh = job.bias_hh + j0;
    const T* hp = Cell::kReadsHiddenPrev ? h_prev(b) + j0 : nullptr;
    T* crow = Cell::kHasCellState ? job.c + b * H + j0 : nullptr;
    T* rrow = kTraining ? job.reserve + (row0 + b) * job.R + j0 : nullptr;
    T* orow = out + b * out_ld + j0;
#pragma omp simd
    for (int64_t u = 0; u < cols; ++u) {
      T h = T(0), c = T(0);
      Cell::forward(xrow + u, grow + u, NR, bias_ih + u, bias_hh + u, H, Cell::kReadsHiddenPrev ? hp[u] : T(0),
                    Cell::kHasCellState ? crow[u] : T(0), h, c, kTraining ? rrow + u : nullptr);
      orow[u] = h;
      if (Cell::kHasCellState) crow[u] = c;
    }
  }
}

// The gate pre-activations of units [j0, j0+cols) for m rows, laid out as panel_gemm's G
// panels would leave them (out[i * G*NR + g * NR + u]), from row-major weights (G*H, K) read
// in place.
template <typename T, typename RowFn>
void gates_in_place(int64_t m, int64_t K, const RowFn& row, const T* weight, int64_t H, int64_t j0, int64_t cols,
                    int G, T* out) {
  constexpr int NR = Tile<T>::NR;
  for (int g = 0; g < G; ++g) {
    const T* w = weight + (g * H + j0) * K;
    rowdot<T>(m, K, row, cols, [&](int64_t u) { return w + u * K; }, out + g * NR, G * NR);
  }
}

template <class Cell, bool kTraining, typename T>
void forward_thread(const ForwardJob<T>& job, const ThreadSpace<T>& ts, int tid, int n, SpinBarrier& barrier) {
  constexpr int NR = Tile<T>::NR, G = Cell::kGates;
  const RnnDims& d = *job.d;
  const int64_t H = d.H, P = d.P;
  const Range hc = split(ceil_div(H, NR), tid, n), pc = split(ceil_div(P, NR), tid, n);
  // Pack this thread's weights once: for each of its unit chunks, one panel per gate (the
  // W_ih and W_hh rows of those units, used transposed), and for the projection its output
  // columns.
  const int64_t I = d.I;
  const bool in_place = weights_in_place(d), wi_in_place = input_weights_in_place(d);
  for (int64_t c = hc.begin; c < hc.end && !wi_in_place; ++c) {  // (W_ih in place: W_hh too)
    const int64_t j0 = c * NR, cols = min_i64(NR, H - j0);
    for (int k = 0; k < G; ++k) {
      const T* wi = job.weight_ih + (k * H + j0) * I;
      if (!wi_in_place)
        pack_b_columns<T>(I, cols, [&](int64_t j) { return wi + j * I; },
                          ts.wi_pack + ((c - hc.begin) * G + k) * I * NR);
      const T* wh = job.weight_hh + (k * H + j0) * P;
      if (!in_place)
        pack_b_columns<T>(P, cols, [&](int64_t j) { return wh + j * P; },
                          ts.w_pack + ((c - hc.begin) * G + k) * P * NR);
    }
  }
  if (d.proj) {
    for (int64_t c = pc.begin; c < pc.end; ++c) {
      const T* rows = job.weight_hr + c * NR * H;
      pack_b_columns<T>(H, min_i64(NR, P - c * NR), [&](int64_t j) { return rows + j * H; },
                        ts.wr_pack + (c - pc.begin) * H * NR);
    }
  }

  const int64_t block = block_steps(d);
  const int64_t x_block_chunk = block * d.B * G * NR;  // one chunk's share of x_block
  int64_t block_left = 0, block_row0 = 0;
  int parity = 0;  // which h_masked buffer holds mask * h_prev
  for (StepWalker step(d, job.batch_sizes, job.reverse, false); !step.done(); step.next()) {
    if (block_left == 0) {
      // The next `block` steps own one contiguous range of rows: project it for every chunk.
      StepWalker ahead = step;
      int64_t lo = step.offset(), hi = step.offset() + step.batch();
      for (block_left = 0; block_left < block && !ahead.done(); ++block_left, ahead.next()) {
        lo = min_i64(lo, ahead.offset());
        hi = hi > ahead.offset() + ahead.batch() ? hi : ahead.offset() + ahead.batch();
      }
      block_row0 = lo;
      auto x_row = [&](int64_t r) { return job.x + (lo + r) * I; };
      if (ts.a_pack) pack_rows<T>(hi - lo, I, x_row, ts.a_pack);
      for (int64_t c = hc.begin; c < hc.end; ++c) {
        T* out = ts.x_block + (c - hc.begin) * x_block_chunk;
        if (wi_in_place) {
          gates_in_place<T>(hi - lo, I, x_row, job.weight_ih, H, c * NR, min_i64(NR, H - c * NR), G, out);
        } else if (ts.a_pack) {
          const T* wi = ts.wi_pack + (c - hc.begin) * G * I * NR;
          panel_gemm_packed<T>(hi - lo, I, ts.a_pack, wi, out, G * NR, G * NR, T(0));
        } else {
          const T* wi = ts.wi_pack + (c - hc.begin) * G * I * NR;
          panel_gemm<T>(hi - lo, I, x_row, wi, out, G * NR, G * NR, T(0));  // one panel per gate
        }
      }
    }
    --block_left;
    const int64_t bt = step.batch(), row0 = step.offset();
    if (bt == 0) continue;  // every thread skips alike, so the barriers still pair up
    const int64_t prev_bt = step.prev_batch(), prev_row0 = step.prev_offset();
    auto h_prev = [&](int64_t b) { return b < prev_bt ? job.y + (prev_row0 + b) * job.y_ld : job.h0 + b * P; };
    // What the product reads: h_prev, or mask * h_prev.
    const T* h_masked_prev = job.mask ? job.h_masked[parity] : nullptr;
    T* h_masked_next = job.mask ? job.h_masked[1 - parity] : nullptr;
    parity = 1 - parity;
    auto h_in = [&](int64_t b) {
      if (!h_masked_prev) return h_prev(b);
      return b < prev_bt ? h_masked_prev + b * P : job.h0_masked + b * P;
    };
    if (ts.a_pack) pack_rows<T>(bt, P, h_in, ts.a_pack);
    for (int64_t c = hc.begin; c < hc.end; ++c) {
      if (in_place) {
        gates_in_place<T>(bt, P, h_in, job.weight_hh, H, c * NR, min_i64(NR, H - c * NR), G, ts.tile);
      } else if (ts.a_pack) {
        const T* wh = ts.w_pack + (c - hc.begin) * G * P * NR;
        panel_gemm_packed<T>(bt, P, ts.a_pack, wh, ts.tile, G * NR, G * NR, T(0));
      } else {
        const T* wh = ts.w_pack + (c - hc.begin) * G * P * NR;
        panel_gemm<T>(bt, P, h_in, wh, ts.tile, G * NR, G * NR, T(0));  // one panel per gate
      }
      const T* x_tile = ts.x_block + (c - hc.begin) * x_block_chunk + (row0 - block_row0) * G * NR;
      const int64_t j0 = c * NR, cols = min_i64(NR, H - j0);
      T* out = d.proj ? job.m : job.y + row0 * job.y_ld;
      cell_forward_chunk<Cell, kTraining>(job, row0, bt, j0, cols, x_tile, ts.tile, h_prev, out, d.proj ? H : job.y_ld);
      if (!d.proj && h_masked_next) mask_columns(bt, j0, cols, out, job.y_ld, job.mask, P, h_masked_next);
      if (d.proj && kTraining) {  // the reserve keeps m for dW_hr
        for (int64_t b = 0; b < bt; ++b) {
          std::memcpy(job.reserve + (row0 + b) * job.R + 5 * H + j0, job.m + b * H + j0, cols * sizeof(T));
        }
      }
    }
    if (d.proj) {
      barrier.wait();
      // h = m W_hr^T for this thread's output columns.
      auto m_row = [&](int64_t b) { return job.m + b * H; };
      for (int64_t c = pc.begin; c < pc.end; ++c) {
        T* out = job.y + row0 * job.y_ld;
        panel_gemm<T>(bt, H, m_row, ts.wr_pack + (c - pc.begin) * H * NR, out + c * NR, job.y_ld,
                      min_i64(NR, P - c * NR), T(0));
        if (h_masked_next) {
          mask_columns(bt, c * NR, min_i64(NR, P - c * NR), out, job.y_ld, job.mask, P, h_masked_next);
        }
      }
    }
    barrier.wait();
  }
}

// One forward call, set up and ready for a team of threads (run_forward_team), then finished.
template <typename T>
struct ForwardCall {
  const RnnForwardParams* p;
  const RnnDims* d;
  ForwardJob<T> job;
  ForwardSpace<T> ws;
  bool training;
};

template <class Cell, typename T>
ForwardCall<T> prepare_forward(const RnnForwardParams& p, const RnnDims& d) {
  const int64_t GH = d.G * d.H;
  ForwardCall<T> call;
  call.p = &p;
  call.d = &d;
  const int64_t R = reserve_blocks(p.cell, d.proj) * d.H;
  call.training = p.training && R > 0;
  call.ws = forward_space<T>(p.workspace.data, d, recurrence_threads<T>(d));
  ForwardJob<T>& job = call.job;
  job.d = &d;
  job.batch_sizes = data_or_null<int64_t>(p.batch_sizes);
  job.reverse = p.reverse;
  job.x = p.x.data_as<T>();
  job.h0 = p.h0.data_as<T>();
  job.weight_ih = p.weight_ih.data_as<T>();
  job.weight_hh = p.weight_hh.data_as<T>();
  job.weight_hr = data_or_null<T>(p.weight_hr);
  job.y = p.y.data_as<T>();
  job.y_ld = row_stride(p.y);
  job.c = Cell::kHasCellState ? p.c_n.data_as<T>() : nullptr;
  job.reserve = call.training ? p.reserve.data_as<T>() : nullptr;
  job.R = R;
  job.m = call.ws.m;
  job.mask = data_or_null<T>(p.recurrent_mask);
  job.h0_masked = call.ws.h0_masked;
  job.h_masked[0] = call.ws.h_masked[0];
  job.h_masked[1] = call.ws.h_masked[1];
  if (job.mask) mask_columns<T>(d.B, 0, d.P, job.h0, d.P, job.mask, d.P, call.ws.h0_masked);
  // Absent biases become zeros, so the cells always add both.
  auto copy_or_zero = [&](const TensorView& bias, T* copy) {
    if (bias.defined()) {
      std::memcpy(copy, bias.data, GH * sizeof(T));
    } else {
      std::memset(copy, 0, GH * sizeof(T));
    }
  };
  copy_or_zero(p.bias_ih, call.ws.bias_ih);
  copy_or_zero(p.bias_hh, call.ws.bias_hh);
  job.bias_ih = call.ws.bias_ih;
  job.bias_hh = call.ws.bias_hh;
  // The cell state lives in c_n: it starts as c0 and sequences that end early keep theirs.
  if (job.c) std::memcpy(job.c, p.c0.data, d.B * d.H * sizeof(T));
  return call;
}

// Thread `tid` of a team of `nt` running one call's recurrence. The per-thread layout follows
// the team size (the size query covered every size up to recurrence_threads).
template <class Cell, typename T>
void run_forward_team(const ForwardCall<T>& call, int tid, int nt, SpinBarrier& barrier) {
  int64_t thread_bytes;
  thread_space<T>(nullptr, *call.d, nt, false, &thread_bytes);
  const ThreadSpace<T> ts = thread_space<T>(call.ws.threads + tid * thread_bytes, *call.d, nt, false, &thread_bytes);
  if (call.training) {
    forward_thread<Cell, true, T>(call.job, ts, tid, nt, barrier);
  } else {
    forward_thread<Cell, false, T>(call.job, ts, tid, nt, barrier);
  }
}

// h_n: each sequence's output at its last step (step 0 for the reverse direction); a sequence
// with no steps keeps h0.
template <typename T>
void finish_forward(const ForwardCall<T>& call) {
  const RnnDims& d = *call.d;
  T* h_n = call.p->h_n.template data_as<T>();
  std::memcpy(h_n, call.job.h0, d.B * d.P * sizeof(T));
  for (StepWalker step(d, call.job.batch_sizes, call.job.reverse, false); !step.done(); step.next()) {
    // Rows active now but not at the next processed step end here.
    const int64_t next_t = call.job.reverse ? step.t() - 1 : step.t() + 1;
    for (int64_t b = step.batch(next_t); b < step.batch(); ++b) {
      std::memcpy(h_n + b * d.P, call.job.y + (step.offset() + b) * call.job.y_ld, d.P * sizeof(T));
    }
  }
}

// Splits the threads between `count` independent calls (the two directions of a layer), so
// they run side by side: each team meets only at its own barrier. Returns the region size and
// fills team_of(first thread) / size of each team.
template <typename T>
int plan_teams(const RnnDims* const* dims, int count, int* team_start, int* team_size) {
  const int available = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (count > available) return 0;  // not enough threads: the caller runs the calls one by one
  int total = 0;
  for (int k = 0; k < count; ++k) {
    const Range share = split(available, k, count);
    const int want = recurrence_threads<T>(*dims[k]);
    team_size[k] = static_cast<int>(share.end - share.begin) < want ? static_cast<int>(share.end - share.begin) : want;
    team_start[k] = total;
    total += team_size[k];
  }
  return total;
}

template <typename T, typename Prepared, typename RunTeam>
void run_calls(Prepared* calls, const RnnDims* const* dims, int count, const RunTeam& run_team) {
  int team_start[kMaxCalls], team_size[kMaxCalls];
  const int total = count > 1 ? plan_teams<T>(dims, count, team_start, team_size) : 0;
  if (total == 0) {  // one at a time, each with all the threads it can use
    for (int k = 0; k < count; ++k) {
      SpinBarrier barrier;
#pragma omp parallel num_threads(recurrence_threads<T>(*dims[k]))
      {
#pragma omp single
        barrier.reset(omp_get_num_threads());
        run_team(calls[k], omp_get_thread_num(), omp_get_num_threads(), barrier);
      }
    }
    return;
  }
  SpinBarrier barriers[kMaxCalls];
  for (int k = 0; k < count; ++k) barriers[k].reset(team_size[k]);
#pragma omp parallel num_threads(total)
  {
    // Should OpenMP grant fewer threads than asked, the teams would wait forever at their
    // barriers: then one thread runs the calls one after the other instead.
    if (omp_get_num_threads() == total) {
      const int tid = omp_get_thread_num();
      int k = 0;
      while (k + 1 < count && tid >= team_start[k + 1]) ++k;
      run_team(calls[k], tid - team_start[k], team_size[k], barriers[k]);
    } else {
#pragma omp single
      for (int k = 0; k < count; ++k) {
        SpinBarrier alone;
        alone.reset(1);
        run_team(calls[k], 0, 1, alone);
      }
    }
  }
}

template <class Cell, typename T>
void forward(const RnnForwardParams* params, const RnnDims* dims, int count) {
  ForwardCall<T> calls[kMaxCalls];
  const RnnDims* dim_ptrs[kMaxCalls];
  for (int k = 0; k < count; ++k) {
    calls[k] = prepare_forward<Cell, T>(params[k], dims[k]);
    dim_ptrs[k] = &dims[k];
  }
  run_calls<T>(calls, dim_ptrs, count, [](const ForwardCall<T>& call, int tid, int nt, SpinBarrier& barrier) {
    run_forward_team<Cell, T>(call, tid, nt, barrier);
  });
  for (int k = 0; k < count; ++k) {
    if (params[k].h_n.defined()) finish_forward(calls[k]);
  }
}

// ---- Backward ----------------------------------------------------------------------------------

template <typename T>
struct BackwardJob {
  const RnnDims* d;
  const int64_t* batch_sizes;
  bool reverse;
  const T* h0;         // (B, P)
  const T* c0;         // (B, H)
  const T* weight_hh;  // (G*H, P)
  const T* weight_hr;  // (P, H) or null
  const T* y;          // (rows, P), row stride y_ld
  int64_t y_ld;
  const T* reserve;    // (rows, R)
  int64_t R;
  const T* dy;         // (rows, P), row stride dy_ld
  int64_t dy_ld;
  T* dh;               // (B, P) running dL/dh_prev, starts as dh_n, ends as dh0
  T* dc;               // (B, H) running dL/dc, starts as dc_n (LSTM)
  T* dgates_ih;
  T* dgates_hh;
  T* h_prev;           // (rows, P) the product's input: h_prev, times the mask when there is one
  T* dh_total;         // (rows, P), projection only
  const T* mask;       // (B, P) recurrent dropout mask, or null
};

// The cell backward over units [j0, j0+cols) of the step's rows. dh_in(b) points at row b's
// dL/dh for these units. Without a projection (kOwnsState) dy is added to it, and this thread
// also owns these columns of dh (the direct term goes there) and of h_prev. Every choice is
// made at compile time so the unit loop vectorises.
template <class Cell, bool kOwnsState, typename T, typename HPrev, typename DhIn>
void cell_backward_chunk(const BackwardJob<T>& job, int64_t row0, int64_t bt, int64_t j0, int64_t cols,
                         int64_t prev_bt, int64_t prev_row0, const HPrev& h_prev, const DhIn& dh_in) {
  constexpr bool kReserve = Cell::kReserveBlocks > 0, kState = Cell::kHasCellState;
  constexpr bool kHiddenPrev = Cell::kReadsHiddenPrev || kOwnsState;
  const RnnDims& d = *job.d;
  const int64_t H = d.H, P = d.P, GH = d.G * d.H;
  for (int64_t b = 0; b < bt; ++b) {
    const int64_t row = row0 + b;
    const T* rrow = kReserve ? job.reserve + row * job.R + j0 : nullptr;
    const T* hp = kHiddenPrev ? h_prev(b) + j0 : nullptr;
    const T* cp = nullptr;
    if (kState) cp = (b < prev_bt ? job.reserve + (prev_row0 + b) * job.R + 4 * H : job.c0 + b * H) + j0;
    const T* dhb = dh_in(b);
    const T* dyb = kOwnsState ? job.dy + row * job.dy_ld + j0 : nullptr;
    const T* hrow = Cell::kBackwardReadsOutput ? job.y + row * job.y_ld + j0 : nullptr;
    T* dcb = kState ? job.dc + b * H + j0 : nullptr;
    T* dgi = job.dgates_ih + row * GH + j0;
    T* dgh = job.dgates_hh + row * GH + j0;
    T* direct = kOwnsState ? job.dh + b * P + j0 : nullptr;
    T* hp_out = kOwnsState ? job.h_prev + row * P + j0 : nullptr;
#pragma omp simd
    for (int64_t u = 0; u < cols; ++u) {
      T dc = kState ? dcb[u] : T(0);
      const T dh = kOwnsState ? dhb[u] + dyb[u] : dhb[u];
      const T dhp = Cell::backward(kReserve ? rrow + u : nullptr, H, Cell::kBackwardReadsOutput ? hrow[u] : T(0),
                                   Cell::kReadsHiddenPrev ? hp[u] : T(0), kState ? cp[u] : T(0), dh, dc, dgi + u,
                                   dgh + u);
      if (kState) dcb[u] = dc;
      if (kOwnsState) {
        direct[u] = dhp;
        hp_out[u] = hp[u];
      }
    }
  }
}

template <class Cell, typename T>
void backward_thread(const BackwardJob<T>& job, const ThreadSpace<T>& ts, int tid, int n, SpinBarrier& barrier) {
  constexpr int NR = Tile<T>::NR;
  const RnnDims& d = *job.d;
  const int64_t H = d.H, P = d.P, GH = d.G * d.H;
  const Range hc = split(ceil_div(H, NR), tid, n), pc = split(ceil_div(P, NR), tid, n);
  // Pack once (unless W_hh is read in place): the W_hh columns of this thread's outputs of
  // dh_prev, and (projection) the W_hr columns of its units of dm.
  const bool wh_in_place = backward_weights_in_place(d), hh_after = backward_hh_after(d, job.mask != nullptr);
  for (int64_t c = pc.begin; c < pc.end && !wh_in_place && !hh_after; ++c) {
    pack_b_block<T>(GH, min_i64(NR, P - c * NR), job.weight_hh + c * NR, P, ts.w_pack + (c - pc.begin) * GH * NR);
  }
  if (d.proj) {
    for (int64_t c = hc.begin; c < hc.end; ++c) {
      pack_b_block<T>(P, min_i64(NR, H - c * NR), job.weight_hr + c * NR, H, ts.wr_pack + (c - hc.begin) * P * NR);
    }
  }

  for (StepWalker step(d, job.batch_sizes, job.reverse, true); !step.done(); step.next()) {
    const int64_t bt = step.batch(), row0 = step.offset();
    if (bt == 0) continue;
    const int64_t prev_bt = step.prev_batch(), prev_row0 = step.prev_offset();
    auto h_prev = [&](int64_t b) { return b < prev_bt ? job.y + (prev_row0 + b) * job.y_ld : job.h0 + b * P; };
    if (!d.proj) {
      for (int64_t c = hc.begin; c < hc.end; ++c) {
        const int64_t j0 = c * NR, cols = min_i64(NR, H - j0);
        cell_backward_chunk<Cell, true>(job, row0, bt, j0, cols, prev_bt, prev_row0, h_prev,
                                        [&](int64_t b) { return job.dh + b * P + c * NR; });
        T* saved = job.h_prev + row0 * P;
        if (job.mask) mask_columns(bt, j0, cols, saved, P, job.mask, P, saved);
      }
    } else {
      // dL/dh of this step for this thread's output columns, kept for dW_hr.
      for (int64_t b = 0; b < bt; ++b) {
        const int64_t row = row0 + b;
        for (int64_t j = pc.begin * NR; j < min_i64(pc.end * NR, P); ++j) {
          job.dh_total[row * P + j] = job.dh[b * P + j] + job.dy[row * job.dy_ld + j];
          job.h_prev[row * P + j] = job.mask ? job.mask[b * P + j] * h_prev(b)[j] : h_prev(b)[j];
        }
      }
      barrier.wait();
      // dm = dh_total W_hr for this thread's units, then the cell backward on it.
      auto dh_row = [&](int64_t b) { return job.dh_total + (row0 + b) * P; };
      for (int64_t c = hc.begin; c < hc.end; ++c) {
        panel_gemm<T>(bt, P, dh_row, ts.wr_pack + (c - hc.begin) * P * NR, ts.tile, NR, NR, T(0));
        cell_backward_chunk<Cell, false>(job, row0, bt, c * NR, min_i64(NR, H - c * NR), prev_bt, prev_row0, h_prev,
                                         [&](int64_t b) { return ts.tile + b * NR; });
      }
    }
    if (hh_after) continue;  // one step: the product is finish_backward's, after the team's end
    barrier.wait();
    // dh_prev = dgates_hh W_hh (+ the cell's direct term already in dh) for this thread's columns;
    // with a mask, mask * (dgates_hh W_hh) + the direct term.
    auto dg_row = [&](int64_t b) { return job.dgates_hh + (row0 + b) * GH; };
    // out (row stride ld) = dgates_hh W_hh (+ beta out) for columns [j0, j0 + cols) of this thread's.
    auto hh_product = [&](int64_t j0, int64_t cols, T* out, int64_t ld, T beta) {
      if (wh_in_place) {
        GemmArgs<T> g;
        g.M = bt, g.N = cols, g.K = GH;
        g.A = dg_row(0), g.lda = GH, g.B = job.weight_hh + j0, g.ldb = P;
        g.C = out, g.ldc = ld, g.beta = beta;
        few_rows_gemm(g, 0, cols);
      } else {
        panel_gemm<T>(bt, GH, dg_row, ts.w_pack + (j0 / NR - pc.begin) * GH * NR, out, ld, cols, beta);
      }
    };
    if (!job.mask) {
      if (pc.end > pc.begin) {
        const int64_t j0 = pc.begin * NR;
        hh_product(j0, min_i64(pc.end * NR, P) - j0, job.dh + j0, P, Cell::kDirectHiddenGrad ? T(1) : T(0));
      }
      continue;
    }
    for (int64_t c = pc.begin; c < pc.end; ++c) {
      const int64_t j0 = c * NR, cols = min_i64(NR, P - j0);
      hh_product(j0, cols, ts.tile, NR, T(0));
      for (int64_t b = 0; b < bt; ++b) {
        const T* prod = ts.tile + b * NR;
        const T* m = job.mask + b * P + j0;
        T* dh = job.dh + b * P + j0;
#pragma omp simd
        for (int64_t u = 0; u < cols; ++u) dh[u] = (Cell::kDirectHiddenGrad ? dh[u] : T(0)) + m[u] * prod[u];
      }
    }
    // No barrier here: the next step reads only this thread's columns of dh, and writes rows
    // of dgates that no other thread is reading.
  }
}

template <typename T>
struct BackwardCall {
  const RnnBackwardParams* p;
  const RnnDims* d;
  BackwardJob<T> job;
  BackwardSpace<T> ws;
  T hh_beta = T(0);  // 1 when the cell wrote a direct term into dh that the product adds to
};

template <class Cell, typename T>
BackwardCall<T> prepare_backward(const RnnBackwardParams& p, const RnnDims& d) {
  BackwardCall<T> call;
  call.p = &p;
  call.d = &d;
  call.ws = backward_space<T>(p.workspace.data, d, Cell::kSplitRecurrentGrad, recurrence_threads<T>(d));
  BackwardJob<T>& job = call.job;
  job.d = &d;
  job.batch_sizes = data_or_null<int64_t>(p.batch_sizes);
  job.reverse = p.reverse;
  job.h0 = p.h0.data_as<T>();
  job.c0 = Cell::kHasCellState ? p.c0.data_as<T>() : nullptr;
  job.weight_hh = p.weight_hh.data_as<T>();
  job.weight_hr = data_or_null<T>(p.weight_hr);
  job.y = p.y.data_as<T>();
  job.y_ld = row_stride(p.y);
  job.reserve = data_or_null<T>(p.reserve);
  job.R = reserve_blocks(p.cell, d.proj) * d.H;
  job.dy = p.dy.data_as<T>();
  job.dy_ld = row_stride(p.dy);
  job.dh = p.dh0.data_as<T>();
  job.dc = Cell::kHasCellState ? p.dc0.data_as<T>() : nullptr;
  job.dgates_ih = call.ws.dgates_ih;
  job.dgates_hh = call.ws.dgates_hh;
  job.h_prev = call.ws.h_prev;
  job.dh_total = call.ws.dh_total;
  job.mask = data_or_null<T>(p.recurrent_mask);
  call.hh_beta = Cell::kDirectHiddenGrad ? T(1) : T(0);
  // The running state gradients live in dh0 (and dc0), as the states do in the forward.
  auto start = [](T* running, const TensorView& given, int64_t n) {
    if (given.defined()) {
      std::memcpy(running, given.data, n * sizeof(T));
    } else {
      std::memset(running, 0, n * sizeof(T));
    }
  };
  start(job.dh, p.dh_n, d.B * d.P);
  if (job.dc) start(job.dc, p.dc_n, d.B * d.H);
  return call;
}

template <class Cell, typename T>
void run_backward_team(const BackwardCall<T>& call, int tid, int nt, SpinBarrier& barrier) {
  int64_t thread_bytes;
  thread_space<T>(nullptr, *call.d, nt, true, &thread_bytes);
  const ThreadSpace<T> ts = thread_space<T>(call.ws.threads + tid * thread_bytes, *call.d, nt, true, &thread_bytes);
  backward_thread<Cell, T>(call.job, ts, tid, nt, barrier);
}

// Everything left after the recurrence is a product over all rows at once. dx_beta 1 adds this
// call's input gradient to what an earlier call (the other direction) wrote.
template <typename T>
void finish_backward(const BackwardCall<T>& call, T dx_beta) {
  const RnnBackwardParams& p = *call.p;
  const RnnDims& d = *call.d;
  const int64_t GH = d.G * d.H;
  const BackwardSpace<T>& ws = call.ws;
  if (backward_hh_after(d, call.job.mask != nullptr)) {
    gemm_call<T>(false, false, d.B, d.P, GH, ws.dgates_hh, GH, call.job.weight_hh, d.P, call.hh_beta, call.job.dh, d.P,
                 ws.scratch);
  }
  gemm_call<T>(false, false, d.rows, d.I, GH, ws.dgates_ih, GH, p.weight_ih.data_as<T>(), d.I, dx_beta,
               p.dx.data_as<T>(), d.I, ws.scratch);
  gemm_call<T>(true, false, GH, d.I, d.rows, ws.dgates_ih, GH, p.x.data_as<T>(), d.I, T(0),
               p.dweight_ih.data_as<T>(), d.I, ws.scratch);
  gemm_call<T>(true, false, GH, d.P, d.rows, ws.dgates_hh, GH, ws.h_prev, d.P, T(0), p.dweight_hh.data_as<T>(), d.P,
               ws.scratch);
  if (d.proj) {  // dW_hr = dh_total^T m, m saved in the reserve's last block
    gemm_call<T>(true, false, d.P, d.H, d.rows, ws.dh_total, d.P, call.job.reserve + 5 * d.H, call.job.R, T(0),
                 p.dweight_hr.data_as<T>(), d.H, ws.scratch);
  }
  if (p.dbias_ih.defined()) column_sums(ws.dgates_ih, d.rows, GH, p.dbias_ih.data_as<T>());
  if (p.dbias_hh.defined()) {
    // One pre-activation gradient for both sides (every cell but GRU): the sums are equal.
    if (ws.dgates_hh == ws.dgates_ih && p.dbias_ih.defined()) {
      std::memcpy(p.dbias_hh.data, p.dbias_ih.data, GH * sizeof(T));
    } else {
      column_sums(ws.dgates_hh, d.rows, GH, p.dbias_hh.data_as<T>());
    }
  }
}

// Calls after the first share the first one's dx (the directions of one layer see the same x).
template <class Cell, typename T>
void backward(const RnnBackwardParams* params, const RnnDims* dims, int count) {
  BackwardCall<T> calls[kMaxCalls];
  const RnnDims* dim_ptrs[kMaxCalls];
  for (int k = 0; k < count; ++k) {
    calls[k] = prepare_backward<Cell, T>(params[k], dims[k]);
    dim_ptrs[k] = &dims[k];
  }
  run_calls<T>(calls, dim_ptrs, count, [](const BackwardCall<T>& call, int tid, int nt, SpinBarrier& barrier) {
    run_backward_team<Cell, T>(call, tid, nt, barrier);
  });
  for (int k = 0; k < count; ++k) finish_backward(calls[k], k == 0 ? T(0) : T(1));
}

// ---- Entry points (declared in rnn.cpp) ----------------------------------------------------------

void rnn_forward(const RnnForwardParams* params, const RnnDims* dims, int count) {
  if (params[0].x.dtype == DType::Float64) {
    cells::with_cell<double>(params[0].cell, [&](auto cell) { forward<decltype(cell), double>(params, dims, count); });
  } else {
    cells::with_cell<float>(params[0].cell, [&](auto cell) { forward<decltype(cell), float>(params, dims, count); });
  }
}

void rnn_backward(const RnnBackwardParams* params, const RnnDims* dims, int count) {
  if (params[0].x.dtype == DType::Float64) {
    cells::with_cell<double>(params[0].cell, [&](auto cell) { backward<decltype(cell), double>(params, dims, count); });
  } else {
    cells::with_cell<float>(params[0].cell, [&](auto cell) { backward<decltype(cell), float>(params, dims, count); });
  }
}

// The workspace each call needs, whatever team size 1..n OpenMP grants the recurrence.
RnnWorkspaceBytes rnn_workspace_bytes(CellKind cell, DType dtype, const RnnDims& d) {
  RnnWorkspaceBytes bytes;
  auto measure = [&](auto zero) {
    using T = decltype(zero);
    const int n = recurrence_threads<T>(d);
    for (int k = 1; k <= n; ++k) {
      const int64_t f = forward_space<T>(nullptr, d, k).bytes;
      const int64_t b = backward_space<T>(nullptr, d, cell == CellKind::Gru, k).bytes;
      bytes.forward = f > bytes.forward ? f : bytes.forward;
      bytes.backward = b > bytes.backward ? b : bytes.backward;
    }
  };
  if (dtype == DType::Float64) {
    measure(0.0);
  } else {
    measure(0.0f);
  }
  return bytes;
}
