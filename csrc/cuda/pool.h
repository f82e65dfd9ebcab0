#pragma once
// 2-d max and average pooling on CUDA, forward and backward, torch's semantics (see
// cpu/pool.h); float16, bfloat16, float32 and float64 with float (float64: double)
// accumulation. Launched on the caller's stream, without host synchronisation.
#include <cstdint>

#include "common/pool_params.h"
#include "common/tensor_view.h"

namespace fastrnn::cuda {

// stream: the caller's cudaStream_t (0: the legacy default stream).
void max_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output,
                        const TensorView& indices, uintptr_t stream);
void max_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& indices,
                         const TensorView& grad_input, uintptr_t stream);
void avg_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output, uintptr_t stream);
void avg_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& grad_input,
                         uintptr_t stream);

}  // namespace fastrnn::cuda
