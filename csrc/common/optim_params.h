#pragma once
// What a fused optimizer step receives: the hyper-parameters of one parameter group and its
// tensors. Shared by the CPU and CUDA back ends. The update rules are torch.optim's (2.x),
// element by element; see csrc/cpu/optim.cpp.
#include <cstdint>

#include "common/tensor_view.h"

namespace fastrnn {

enum class OptimizerKind : int { Sgd = 0, Adam = 1, RmsProp = 2, Adagrad = 3 };

struct OptimizerHyper {
  OptimizerKind kind = OptimizerKind::Sgd;
  double lr = 0;
  double weight_decay = 0;   // L2, added to the gradient (decoupled for AdamW, see below)
  double l1_decay = 0;       // L1: l1_decay * sign(param) added to the gradient
  double grad_scale = 1;     // gradient clipping folded into the step: grad * grad_scale
  bool maximize = false;
  double eps = 0;            // Adam, RMSprop, Adagrad
  double beta1 = 0, beta2 = 0;  // Adam
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // AdamW: param *= 1 - lr * weight_decay
  double momentum = 0;       // SGD, RMSprop
  double dampening = 0;      // SGD
  bool nesterov = false;     // SGD
  double alpha = 0;          // RMSprop
  bool centered = false;     // RMSprop
  double lr_decay = 0;       // Adagrad
};

// One parameter and its optimizer state (dense, contiguous, all of the parameter's dtype).
//   SGD:     state[0] momentum_buffer (when momentum != 0)
//   Adam:    state[0] exp_avg, state[1] exp_avg_sq, state[2] max_exp_avg_sq (amsgrad)
//   RMSprop: state[0] square_avg, state[1] momentum_buffer (momentum > 0), state[2] grad_avg (centered)
//   Adagrad: state[0] sum
// step: the float32 scalar torch keeps per parameter (not SGD); the kernel increments it.
struct OptimizerTensor {
  TensorView param, grad;
  TensorView state[3];
  TensorView step;
  bool fresh_buffer = false;  // SGD: momentum_buffer created for this step, to start as the gradient
};

}  // namespace fastrnn
