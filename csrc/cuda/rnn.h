#pragma once
// CUDA forward and backward (BPTT) of one RNN layer in one direction, with the arguments of the
// CPU kernels (common/rnn_params.h). Every array lives on one CUDA device, except batch_sizes,
// which stays on the CPU as in torch's PackedSequence (the host walks the steps). Work is queued
// on the caller's stream with no host synchronisation; the caller allocates every buffer.
//
// float16 and bfloat16 compute in float32, and their reserve is float32 (the cell state and the
// saved gates keep full precision); float32 and float64 keep their own dtype throughout.
#include <cstdint>

#include "common/rnn_params.h"

namespace fastrnn::cuda {

struct RnnLaunch {
  uintptr_t stream = 0;     // cudaStream_t of the caller (0: the legacy default stream)
  bool allow_tf32 = false;  // float32 products on TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)
};

// The dtype of the reserve for tensors of `dtype`.
DType rnn_reserve_dtype(DType dtype);

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size);

// `count` (1 or 2) calls, queued one after the other: two calls are the directions of a layer,
// as on the CPU (halves of one y; backward adds both input gradients into one dx).
void rnn_forward(const RnnForwardParams* params, int count, const RnnLaunch& launch);
void rnn_backward(const RnnBackwardParams* params, int count, const RnnLaunch& launch);

}  // namespace fastrnn::cuda
