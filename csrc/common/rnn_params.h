#pragma once
// What an RNN kernel receives: one layer, one direction, the whole sequence. Shared by the
// CPU and CUDA back ends. Weights are in PyTorch's layout, gates stacked along rows.
#include <cstdint>

#include "cells/table.h"
#include "common/tensor_view.h"

namespace fastrnn {

// CellKind, gate_count (G) and reserve_blocks come from the cell table (cells/table.h).

// Shapes: T steps, B batch, I input features, H hidden units, G = gate_count(cell), P the
// width of h: H, or proj_size for an LSTM with a projection (h = W_hr (o * tanh(c))).
// batch_sizes (optional): int64 (T), non-increasing; at step t only the first batch_sizes[t]
// sequences are active (sequences sorted by length, longest first, as in a PackedSequence).
// Inactive steps cost nothing, their outputs are 0, and a sequence's state stops at its end.
struct RnnForwardParams {
  CellKind cell = CellKind::Lstm;
  bool reverse = false;    // run t = T-1 .. 0; outputs stay at their time positions
  bool training = false;   // fill `reserve` for the backward pass
  TensorView x;            // (T, B, I)
  TensorView h0;           // (B, P)
  TensorView c0;           // (B, H), LSTM only
  TensorView weight_ih;    // (G*H, I)
  TensorView weight_hh;    // (G*H, P)
  TensorView bias_ih;      // (G*H), optional
  TensorView bias_hh;      // (G*H), optional
  TensorView weight_hr;    // (P, H), LSTM with proj_size only
  TensorView batch_sizes;  // (T) int64, optional
  // (B, P), optional: variational dropout on the recurrence. The product reads m * h_prev
  // (h0 included) at every step: gates = W_ih x + W_hh (m * h_prev) + b. Already scaled
  // (0 or 1/(1-p)); other uses of h_prev (GRU's blend) stay unmasked. Row b is batch row b.
  TensorView recurrent_mask;
  TensorView y;            // out (T, B, P)
  TensorView h_n;          // out (B, P); a one-step unpacked CPU call may leave it out (y is h_n)
  TensorView c_n;          // out (B, H), LSTM only
  TensorView reserve;      // out (T*B, reserve_blocks*H) when training
  TensorView workspace;    // scratch bytes, see rnn_buffer_sizes
};

struct RnnBackwardParams {
  CellKind cell = CellKind::Lstm;
  bool reverse = false;
  TensorView x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes;  // as given to the forward
  TensorView recurrent_mask;  // (B, P), optional, as given to the forward
  TensorView y, reserve;   // the training forward's outputs
  TensorView dy;           // (T, B, P)
  TensorView dh_n;         // (B, P); a CPU call may leave it out (zeros)
  TensorView dc_n;         // (B, H), LSTM only; a CPU call may leave it out (zeros)
  TensorView dx;           // out (T, B, I)
  TensorView dh0;          // out (B, P)
  TensorView dc0;          // out (B, H), LSTM only
  TensorView dweight_ih;   // out (G*H, I)
  TensorView dweight_hh;   // out (G*H, P)
  TensorView dbias_ih;     // out (G*H), when the forward had biases
  TensorView dbias_hh;     // out (G*H), when the forward had biases
  TensorView dweight_hr;   // out (P, H), with a projection
  TensorView workspace;
};

struct RnnBufferSizes {
  int64_t reserve_elements;          // of the reserve, in the compute dtype
  int64_t forward_workspace_bytes;
  int64_t backward_workspace_bytes;
};

}  // namespace fastrnn
