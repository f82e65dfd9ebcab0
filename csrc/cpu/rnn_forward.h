#pragma once
// The RNN forward driver: per thread, the weight-stationary recurrence of its unit chunks. Read
// only through rnn_impl.h, whose top says what the includer provides.
#include "cpu/rnn_steps.h"

template <typename T>
struct ForwardJob : SequenceJob {
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
          T* saved = job.reserve + (row0 + b) * job.R + cells::LstmLayout::kProjectionInput * H;
          std::memcpy(saved + j0, job.m + b * H + j0, cols * sizeof(T));
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
  copy_or_zero<T>(call.ws.bias_ih, p.bias_ih, GH);
  copy_or_zero<T>(call.ws.bias_hh, p.bias_hh, GH);
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
