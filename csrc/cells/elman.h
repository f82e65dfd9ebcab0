#pragma once
// Elman RNN cell, per hidden unit j (PyTorch's nn.RNN):
//   h = act(W_ih x + b_ih + W_hh h_prev + b_hh),  act = tanh or relu
// The forward saves nothing extra: backward reads act'(.) from h itself.
#include <stdint.h>

#include "cells/activations.h"

namespace fastrnn::cells {

enum class Activation { Tanh, Relu };

template <typename T, Activation kAct>
struct ElmanCell {
  static constexpr int kGates = 1;
  static constexpr int kReserveBlocks = 0;       // H-wide blocks saved per step for backward
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitRecurrentGrad = false;  // W_hh-side gate grads equal the W_ih side
  static constexpr bool kDirectHiddenGrad = false;    // dh_prev has no term outside W_hh^T dgates

  // xp: (H) input projection incl. bias_ih; gh: (H) W_hh h_prev; bias_hh: (H) or nullptr.
  FASTRNN_HOST_DEVICE static void forward(int64_t H, int64_t j, const T* xp, const T* gh,
                                          const T* bias_hh, T /*h_prev*/, T /*c_prev*/, T& h,
                                          T& /*c*/, T* /*reserve*/) {
    (void)H;
    const T a = xp[j] + gh[j] + (bias_hh ? bias_hh[j] : T(0));
    h = kAct == Activation::Tanh ? tanh_(a) : relu(a);
  }

  // dh: total dL/dh for this unit. Writes dL/da to dgates_ih[j]; returns the direct dL/dh_prev (0).
  FASTRNN_HOST_DEVICE static T backward(int64_t H, int64_t j, const T* /*reserve*/, T h,
                                        T /*h_prev*/, T /*c_prev*/, T dh, T& /*dc*/, T* dgates_ih,
                                        T* /*dgates_hh*/) {
    (void)H;
    // As torch's threshold_backward: the gradient stops where h <= 0 and passes where h is NaN.
    dgates_ih[j] = kAct == Activation::Tanh ? dh * (T(1) - h * h) : (h <= T(0) ? T(0) : dh);
    return T(0);
  }
};

}  // namespace fastrnn::cells
