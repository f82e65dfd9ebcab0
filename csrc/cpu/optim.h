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

// The update loop of optim_loop.h per instruction set (optim_avx2.cpp, optim_avx512.cpp).
#define FASTRNN_OPTIMIZER_UPDATE(isa)                                                                            \
  namespace isa {                                                                                                \
  template <typename T>                                                                                          \
  void optimizer_update(const OptimizerHyper& h, double step, bool fresh_buffer, int64_t begin, int64_t end, T* p, \
                        const T* g, T* s0, T* s1, T* s2);                                                        \
  }
FASTRNN_OPTIMIZER_UPDATE(isa_avx2)
FASTRNN_OPTIMIZER_UPDATE(isa_avx512)
#undef FASTRNN_OPTIMIZER_UPDATE

}  // namespace fastrnn::cpu
