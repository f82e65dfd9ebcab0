#pragma once
// Thread counts, per-call choices (weights in place or packed) and the workspace layouts of the
// RNN driver. Read only through rnn_impl.h, whose top says what the includer provides.

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
// weights afresh, from memory when they went cold since the last call, and the one-row panel
// product loads 3 values per 2 FMAs where rowdot's 8-unit tile loads 9 per 8. A call of one or
// two steps (a cell, a short chunk) reads each packed weight only once or twice, so packing does
// not pay there either up to a batch of 64 (see bench/NOTES.md, rnn: weights read in place).
inline bool weights_in_place(const RnnDims& d) {
  return kHasRowDot && (d.B <= 4 || (d.B <= 64 && d.rows <= 2 * d.B));
}
// W_ih the same way only for a call of few rows: the projection runs on blocks of up to 64 rows
// (block_steps), where the packed panel product's 12-row blocks beat rowdot once the call has
// rows enough to repay packing W_ih (see bench/NOTES.md, rnn: weights read in place).
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
// them in place (StridedA: 11 integer adds per k step for the row addresses). Below a full row
// panel there is nothing to gain (see bench/NOTES.md, rnn: shared row packing).
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

// The row buffers both devices carve (BackwardRows, common/rnn_plan.h), then the CPU's own.
template <typename T>
struct BackwardSpace : BackwardRows<T> {
  GemmScratch scratch;
  char* threads = nullptr;
  int64_t thread_bytes = 0;
  int64_t bytes = 0;
};

template <typename T>
BackwardSpace<T> backward_space(void* base, const RnnDims& d, bool split_dgates, int n) {
  Carver c(base);
  BackwardSpace<T> s;
  carve_backward_rows<T>(c, d, split_dgates, s);
  s.scratch.threads = omp_get_max_threads();
  s.scratch.bytes_per_thread = gemm_scratch_bytes<T>();
  s.scratch.data = c.take<char>(s.scratch.threads * s.scratch.bytes_per_thread);
  thread_space<T>(nullptr, d, n, true, &s.thread_bytes);
  s.threads = c.take<char>(n * s.thread_bytes);
  s.bytes = c.bytes();
  return s;
}
