#pragma once
// 2-d max and average pooling on the CPU, forward and backward, with torch's semantics; float32
// and float64, contiguous (N, C, H, W) or (C, H, W) arrays. The common windows (2x2 and 3x3 with
// stride 1 or 2, no dilation) run SIMD code for the active instruction set; all others portable loops.
#include "common/pool_params.h"
#include "common/tensor_view.h"

namespace fastrnn::cpu {

// input (.., H, W) -> output (.., OH, OW); indices (optional, like output): int64, the argmax's
// flat position h * W + w within its plane, or uint8, its window slot (common/pool_params.h).
// A NaN in a window wins (the last one, for indices).
void max_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output,
                        const TensorView& indices);
// grad_input (.., H, W) = grad_output scattered to the argmax positions (int64 indices or uint8
// window slots, as the forward wrote them), summed where windows overlap.
void max_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& indices,
                         const TensorView& grad_input);

void avg_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output);
void avg_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& grad_input);

}  // namespace fastrnn::cpu
