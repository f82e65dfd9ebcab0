#pragma once
// CPU forward and backward (BPTT) of one RNN layer in one direction. See common/rnn_params.h
// for the arguments; the caller allocates every output, the reserve and the workspace.
#include "common/rnn_params.h"
#include "common/rnn_plan.h"

namespace fastrnn::cpu {

using fastrnn::kMaxCalls;  // calls one entry point runs together (common/rnn_plan.h)

// Sizes of the buffers the caller allocates. `total_rows` is the number of (t, b) rows the
// sequence really has: T*B, or the sum of batch_sizes for packed input; proj_size is 0
// unless an LSTM projects its output.
RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size);

// `count` (1 or 2) independent calls, run side by side on teams of threads: the two
// directions of a layer. Two calls share x and batch_sizes, write the two halves of the rows
// of one y (and, backward, read the halves of one dy and add into one dx).
void rnn_forward(const RnnForwardParams* params, int count);
void rnn_backward(const RnnBackwardParams* params, int count);

}  // namespace fastrnn::cpu
