#pragma once
// 2-D convolution (NCHW, PyTorch's cross-correlation) forward and backward on the CPU, and the
// fused block conv -> ReLU -> 2x2 max-pool (stride 2, floor mode). All arrays contiguous.
// The caller allocates every output and the workspace (conv_workspace_bytes); the core never
// allocates.
#include <cstdint>

#include "common/tensor_view.h"

namespace fastrnn::cpu {

// x (batch, in_channels, height, width), weight (out_channels, in_channels / groups, kernel_h,
// kernel_w), y (batch, out_channels, out_height, out_width). pad_h/pad_w pad the top/left;
// the bottom/right padding is whatever out_height/out_width imply, the same or one more (so
// torch's asymmetric 'same' padding for even kernels is expressed by the output size alone).
// Every entry point refuses other sizes, and channels or kernels that are empty.
struct ConvShape {
  int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  int64_t out_channels = 0, out_height = 0, out_width = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

enum class ConvOp : int { Forward = 0, Backward = 1, PoolForward = 2, PoolBackward = 3 };

// Workspace for `threads` threads: per-thread im2col blocks, GEMM packing slots and
// gradient accumulators.
int64_t conv_workspace_bytes(const ConvShape& s, DType dtype, ConvOp op, int threads);

struct ConvWorkspace {
  char* data = nullptr;  // 64-byte aligned
  int64_t bytes = 0;
  int threads = 0;  // the `threads` the size was computed for
};

// y = conv(x, weight) + bias; bias (out_channels) may be null.
template <typename T>
void conv2d_forward(const ConvShape& s, const T* x, const T* weight, const T* bias, T* y, const ConvWorkspace& ws);

// dx, dweight, dbias (each may be null: not wanted) from dy (batch, out_channels, out_h, out_w).
template <typename T>
void conv2d_backward(const ConvShape& s, const T* dy, const T* x, const T* weight, T* dx, T* dweight, T* dbias,
                     const ConvWorkspace& ws);

// y (batch, out_channels, out_height / 2, out_width / 2) = maxpool2x2(relu(conv(x) + bias));
// indices: the position of each maximum in its conv output plane (oh * out_width + ow), as
// torch's max_pool2d(return_indices=True) gives them.
template <typename T>
void conv_relu_pool2d_forward(const ConvShape& s, const T* x, const T* weight, const T* bias, T* y,
                              int64_t* indices, const ConvWorkspace& ws);

// Gradients of conv_relu_pool2d_forward from dy and the forward's y and indices.
template <typename T>
void conv_relu_pool2d_backward(const ConvShape& s, const T* dy, const T* y, const int64_t* indices, const T* x,
                               const T* weight, T* dx, T* dweight, T* dbias, const ConvWorkspace& ws);

}  // namespace fastrnn::cpu
