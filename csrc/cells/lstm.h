#pragma once
// LSTM cell, per hidden unit, gate order i, f, g, o (PyTorch's nn.LSTM):
//   a = W_ih x + b_ih + W_hh h_prev + b_hh
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
//   c = f * c_prev + i * g,   h = o * tanh(c)
// (with proj_size, the driver projects this h by W_hr.) Reserve per step: the four activated
// gates and c, at the offsets of LstmLayout (cells/table.h). Calling convention: see elman.h.
#include <stdint.h>

#include "cells/activations.h"
#include "cells/table.h"

namespace fastrnn::cells {
namespace {

template <typename T>
struct LstmCell {
  using Layout = LstmLayout;
  static constexpr int kGates = Layout::kGates;
  static constexpr int kReserveBlocks = Layout::kReserveBlocks;
  static constexpr bool kReadsHiddenPrev = false;     // the element math reads h_prev
  static constexpr bool kBackwardReadsOutput = false;  // backward reads h instead of a reserve
  static constexpr bool kHasCellState = true;
  static constexpr bool kSplitRecurrentGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  FASTRNN_HOST_DEVICE static void forward(const T* xp, const T* gh, int64_t ts, const T* bias_ih, const T* bias_hh,
                                          int64_t stride, T /*h_prev*/, T c_prev, T& h, T& c, T* reserve) {
    const T i = sigmoid((xp[0 * ts] + bias_ih[0 * stride]) + (gh[0 * ts] + bias_hh[0 * stride]));
    const T f = sigmoid((xp[1 * ts] + bias_ih[1 * stride]) + (gh[1 * ts] + bias_hh[1 * stride]));
    const T g = tanh_((xp[2 * ts] + bias_ih[2 * stride]) + (gh[2 * ts] + bias_hh[2 * stride]));
    const T o = sigmoid((xp[3 * ts] + bias_ih[3 * stride]) + (gh[3 * ts] + bias_hh[3 * stride]));
    c = f * c_prev + i * g;
    h = o * tanh_(c);
    if (reserve) {
      reserve[Layout::kInputGate * stride] = i;
      reserve[Layout::kForgetGate * stride] = f;
      reserve[Layout::kCellGate * stride] = g;
      reserve[Layout::kOutputGate * stride] = o;
      reserve[Layout::kCellState * stride] = c;
    }
  }

  // dh: total dL/dh; dc: in dL/dc from the later step, out dL/dc_prev. Writes dL/da (4 gates).
  FASTRNN_HOST_DEVICE static T backward(const T* reserve, int64_t stride, T /*h*/, T /*h_prev*/, T c_prev, T dh,
                                        T& dc, T* dgates_ih, T* /*dgates_hh*/) {
    const T i = reserve[Layout::kInputGate * stride], f = reserve[Layout::kForgetGate * stride];
    const T g = reserve[Layout::kCellGate * stride], o = reserve[Layout::kOutputGate * stride];
    const T tc = tanh_(reserve[Layout::kCellState * stride]);
    const T dc_total = dc + dh * o * (T(1) - tc * tc);
    dgates_ih[0 * stride] = dc_total * g * i * (T(1) - i);
    dgates_ih[1 * stride] = dc_total * c_prev * f * (T(1) - f);
    dgates_ih[2 * stride] = dc_total * i * (T(1) - g * g);
    dgates_ih[3 * stride] = dh * tc * o * (T(1) - o);
    dc = dc_total * f;
    return T(0);
  }
};

}  // namespace
}  // namespace fastrnn::cells
