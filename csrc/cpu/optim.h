#pragma once
// Fused optimizer steps and gradient-norm clipping on the CPU: one pass over memory for all
// the tensors of a call, split between the OpenMP threads by elements, not by tensor.
#include "common/optim_params.h"

namespace fastrnn::cpu {

void optimizer_step(const OptimizerHyper& hyper, const OptimizerTensor* tensors, int count);

// The norm of all gradients together, as torch.nn.utils.clip_grad_norm_ computes it: order
// norm_type > 0 (inf for the largest magnitude). Accumulated in float64.
double gradient_norm(const TensorView* grads, int count, double norm_type);

// grads *= scale, every tensor in one parallel pass.
void scale_gradients(const TensorView* grads, int count, double scale);

}  // namespace fastrnn::cpu
