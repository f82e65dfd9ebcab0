#pragma once
// The RNN backward driver (BPTT): per thread, the cell backward of its units and its columns of
// dh_prev per step, then the weight and input gradients as products over all rows. Read only
// through rnn_impl.h, whose top says what the includer provides.
#include "cpu/rnn_steps.h"

template <typename T>
struct BackwardJob : SequenceJob {
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
    if (kState) {  // c_prev: saved by the step before, or c0
      cp = (b < prev_bt ? job.reserve + (prev_row0 + b) * job.R + cells::LstmLayout::kCellState * H
                        : job.c0 + b * H) +
           j0;
    }
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
  copy_or_zero<T>(job.dh, p.dh_n, d.B * d.P);
  if (job.dc) copy_or_zero<T>(job.dc, p.dc_n, d.B * d.H);
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
    const T* m = call.job.reserve + cells::LstmLayout::kProjectionInput * d.H;
    gemm_call<T>(true, false, d.P, d.H, d.rows, ws.dh_total, d.P, m, call.job.R, T(0),
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
