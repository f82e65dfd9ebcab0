#pragma once
// Conv2d on CUDA (NCHW, torch's weight layout (K, C/groups, R, S)): forward with bias and
// optional ReLU fused into the epilogue, the input and weight gradients, and the fused block
// conv + bias + ReLU + 2x2/2 max pool (forward and backward). Implicit GEMM: fp16/bf16 on
// tensor cores (mma.sync m16n8k16, fp32 accumulation), fp32 on the FMA units (or TF32 tensor
// cores when allow_tf32), fp64 on the FMA units. Depthwise convolutions (one input channel per
// group) take direct kernels. Everything runs on `stream`; nothing here allocates.
#include <cstdint>

#include "common/tensor_view.h"

namespace fastrnn::cuda {

struct Conv2dParams {
  // Sizes: input (N, C, H, W), weight (K, C/groups, R, S), output (N, K, P, Q).
  int64_t N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, P = 0, Q = 0;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
  bool relu = false;        // forward: y = max(conv + bias, 0)
  bool allow_tf32 = false;  // float32 on TF32 tensor cores (torch.backends.cudnn.allow_tf32)

  TensorView x;       // (N, C, H, W)
  TensorView weight;  // (K, C/groups, R, S)
  TensorView bias;    // (K) or absent
  // Forward: the output (N, K, P, Q); fused block: the pooled output (N, K, P/2, Q/2).
  TensorView y;
  // Fused block: which element of each 2x2 window won the max, uint8 0..3 (row-major in the
  // window: 2 * dp + dq), same shape as the pooled output.
  TensorView argmax;

  TensorView dy;        // gradient of y (same shape as y)
  TensorView dx;        // gradient of x, or absent
  TensorView dweight;   // gradient of weight, or absent
  TensorView dbias;     // gradient of bias, or absent
  TensorView workspace;  // backward_weight: conv2d_backward_weight_workspace_bytes() bytes (uint8)

  uintptr_t stream = 0;  // cudaStream_t of the caller (0: the legacy default stream)
};

// y = conv(x, weight) + bias, then ReLU when p.relu.
void conv2d_forward(const Conv2dParams& p);
// dx from dy and weight (x is not read; its sizes come from the params).
void conv2d_backward_input(const Conv2dParams& p);
// dweight and/or dbias from dy and x, through p.workspace (split-K partial sums).
void conv2d_backward_weight(const Conv2dParams& p);
int64_t conv2d_backward_weight_workspace_bytes(const Conv2dParams& p);

// y = maxpool2x2(relu(conv(x, weight) + bias)) and argmax; the full-size conv output is never
// written. P and Q are the convolution's output sizes; y is (N, K, P/2, Q/2) (floor).
void conv_relu_pool2d_forward(const Conv2dParams& p);
// dx, dweight, dbias from dy (the pooled gradient), y (the pooled output) and argmax; the
// full-size gradient of the convolution output is formed on the fly inside the loads.
// Its weight gradient takes conv2d_backward_weight_workspace_bytes(p) of workspace.
void conv_relu_pool2d_backward(const Conv2dParams& p);

}  // namespace fastrnn::cuda
