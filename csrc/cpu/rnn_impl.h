// The RNN sequence driver: one time loop for every cell, forward and BPTT backward, in four
// parts: rnn_workspace.h (thread counts, per-call choices, workspace layouts), rnn_steps.h
// (helpers, teams of threads), rnn_forward.h and rnn_backward.h; this file adds the entry
// points declared in rnn_variants.h.
//
// What the includer provides: rnn_<name>.cpp includes this file once per instruction set inside
// namespace fastrnn::cpu::isa_<name>, after microkernel_<name>.h and gemm_impl.h (Tile<T>,
// pack_b_columns, pack_b_block, pack_rows, panel_gemm(_packed), rowdot, few_rows_gemm,
// parallel_gemm), so the element math (csrc/cells) vectorises for that set and the products call
// its micro-kernel directly; before opening the namespace it includes omp.h, cstring,
// cells/dispatch.h, common/barrier.h, common/parallel.h, common/rnn_plan.h, cpu/gemm/gemm.h and
// cpu/rnn_variants.h. The four parts are read the same way, each including the part it builds on.
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

#include "cpu/rnn_forward.h"
#include "cpu/rnn_backward.h"

// ---- Entry points (declared in rnn_variants.h) -------------------------------------------------

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
