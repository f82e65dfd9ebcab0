#pragma once
// Elman RNN cell, per hidden unit (PyTorch's nn.RNN):
//   h = act(W_ih x + b_ih + W_hh h_prev + b_hh),  act = tanh or relu
// The forward saves nothing extra: backward reads act'(.) from h itself.
//
// Calling convention shared by the cells: pointers point at this unit's first gate. Gate k of
// the projections xp (W_ih x) and gh (W_hh h_prev) sits k * tile_stride further on; of the
// biases and of the reserve, k * stride further on. Absent biases are passed as zeros. See
// activations.h for why the cells live in an unnamed namespace.
#include <stdint.h>

#include "cells/activations.h"
#include "cells/table.h"

namespace fastrnn::cells {
namespace {

enum class Activation { Tanh, Relu };

template <typename T, Activation kAct>
struct ElmanCell {
  using Layout = ElmanLayout;
  static constexpr int kGates = Layout::kGates;                  // see cells/table.h
  static constexpr int kReserveBlocks = Layout::kReserveBlocks;  // H-wide blocks saved per step for backward
  static constexpr bool kReadsHiddenPrev = false;     // the element math reads h_prev
  static constexpr bool kBackwardReadsOutput = true;  // backward reads h instead of a reserve
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitRecurrentGrad = false;  // W_hh-side gate grads equal the W_ih side
  static constexpr bool kDirectHiddenGrad = false;    // dh_prev has no term outside W_hh^T dgates

  FASTRNN_HOST_DEVICE static void forward(const T* xp, const T* gh, int64_t /*tile_stride*/, const T* bias_ih,
                                          const T* bias_hh, int64_t /*stride*/, T /*h_prev*/, T /*c_prev*/, T& h,
                                          T& /*c*/, T* /*reserve*/) {
    const T a = (xp[0] + bias_ih[0]) + (gh[0] + bias_hh[0]);
    h = kAct == Activation::Tanh ? tanh_(a) : relu(a);
  }

  // dh: total dL/dh. Writes dL/da to dgates_ih[0]; returns the direct dL/dh_prev (none).
  FASTRNN_HOST_DEVICE static T backward(const T* /*reserve*/, int64_t /*stride*/, T h, T /*h_prev*/,
                                        T /*c_prev*/, T dh, T& /*dc*/, T* dgates_ih, T* /*dgates_hh*/) {
    // As torch's threshold_backward: the gradient stops where h <= 0 and passes where h is NaN.
    dgates_ih[0] = kAct == Activation::Tanh ? dh * (T(1) - h * h) : (h <= T(0) ? T(0) : dh);
    return T(0);
  }
};

}  // namespace
}  // namespace fastrnn::cells
