#pragma once
// What a fused optimizer step receives: the hyper-parameters of one parameter group and its
// tensors. Shared by the CPU and CUDA back ends. The update rules are torch.optim's (2.x),
// element by element; see csrc/cpu/optim.cpp.
#include <cstdint>

#include "common/error.h"
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

// Every core entry's check of the group: a kind the kernels know (a caller's int cast to
// OptimizerKind may be none of them, and no rule would run).
inline void check_optimizer_hyper(const char* op, const OptimizerHyper& h) {
  const int kind = static_cast<int>(h.kind);
  FASTRNN_CHECK_VALUE(kind >= 0 && kind <= 3, op, ": unknown optimizer kind ", kind);
}

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

// Every core entry's check of one parameter's tensors against the call's first parameter:
// param, grad and the states the kind uses on `device` (CUDA: first's), of first's dtype,
// contiguous and of the parameter's shape ("<name> must be <like>" otherwise); the step, which
// every kind but SGD keeps, a float scalar on the CPU.
void check_optimizer_tensor(const char* op, const OptimizerHyper& h, const OptimizerTensor& t,
                            const TensorView& first, DeviceType device, const char* like);

}  // namespace fastrnn
