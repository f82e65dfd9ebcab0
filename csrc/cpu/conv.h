#pragma once
// 2-D convolution (NCHW, PyTorch's cross-correlation) forward and backward on the CPU, and the
// fused block conv -> ReLU -> 2x2 max-pool (stride 2, floor mode), float32 and float64. All
// arrays contiguous CPU arrays. The caller allocates every output and the workspace
// (conv_workspace_bytes); the core never allocates. Every entry checks its arguments
// (common/conv_params.h) and raises fastrnn::Error; it refuses shapes the kernels are not
// written for (check_conv_shape). The algorithms: cpu/conv/plan.h.
#include <cstdint>

#include "common/conv_params.h"
#include "common/tensor_view.h"

namespace fastrnn::cpu {

enum class ConvOp : int { Forward = 0, Backward = 1, PoolForward = 2, PoolBackward = 3 };

// One call's arrays and geometry.
struct ConvArgs {
  ConvGeometry geometry;
  // The fused block's conv output size (out_height, out_width): y is that halved. The plain
  // conv's comes from y (forward) or dy (backward).
  int64_t out_height = 0, out_width = 0;
  TensorView x;                   // (batch, in_channels, height, width)
  TensorView weight;              // (out_channels, in_channels / groups, kernel_h, kernel_w)
  TensorView bias;                // (out_channels) or absent
  TensorView y;                   // forward output (batch, out_channels, out_h, out_w); the fused block's pooled
                                  // output, and its backward's input, (batch, out_channels, out_h / 2, out_w / 2)
  TensorView indices;             // the fused block: int64, y's shape, each maximum's position in its conv
                                  // output plane (oh * out_width + ow), as torch's max_pool2d(return_indices=True)
  TensorView dy;                  // gradient of y (the plain conv's output or the fused block's pooled one)
  TensorView dx, dweight, dbias;  // gradients of x, weight, bias; absent: not wanted
  TensorView workspace;           // conv_workspace_bytes() bytes, any alignment
};

// Bytes of workspace for `op` on arrays of these sizes in dtype (float32 or float64): for all
// OpenMP threads and any alignment of the buffer. A smaller buffer runs on fewer threads.
int64_t conv_workspace_bytes(ConvOp op, DType dtype, const TensorView& x, const TensorView& weight, int64_t out_height,
                             int64_t out_width, const ConvGeometry& g);

// y = conv(x, weight) + bias.
void conv2d_forward(const ConvArgs& a);
// dx, dweight, dbias (those present) from dy.
void conv2d_backward(const ConvArgs& a);
// y = maxpool2x2(relu(conv(x, weight) + bias)) and its indices.
void conv_relu_pool2d_forward(const ConvArgs& a);
// dx, dweight, dbias (those present) of the fused block from dy and the forward's y and indices.
void conv_relu_pool2d_backward(const ConvArgs& a);

// The workspace as the kernels take it: 64-byte aligned, for `threads` threads.
struct ConvWorkspace {
  char* data = nullptr;
  int64_t bytes = 0;
  int threads = 0;
};

// Bytes of a 64-byte-aligned workspace for `threads` threads (the shape checked).
int64_t conv_workspace_bytes(const ConvShape& s, DType dtype, ConvOp op, int threads);

}  // namespace fastrnn::cpu
