#pragma once
// LSTM cell, per hidden unit j, gate order i, f, g, o (PyTorch's nn.LSTM):
//   a = W_ih x + b_ih + W_hh h_prev + b_hh   (4H, gate k of unit j at a[k*H + j])
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
//   c = f * c_prev + i * g,   h = o * tanh(c)
// Reserve per step: the four activated gates and c (5 blocks of H).
#include <stdint.h>

#include "cells/activations.h"

namespace fastrnn::cells {

template <typename T>
struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kReserveBlocks = 5;
  static constexpr int kReserveCellBlock = 4;  // where c sits in a reserve row
  static constexpr bool kHasCellState = true;
  static constexpr bool kSplitRecurrentGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  // xp: (4H) input projection incl. bias_ih; gh: (4H) W_hh h_prev; bias_hh: (4H) or nullptr;
  // reserve: (5H) row to fill, or nullptr in inference.
  FASTRNN_HOST_DEVICE static void forward(int64_t H, int64_t j, const T* xp, const T* gh,
                                          const T* bias_hh, T /*h_prev*/, T c_prev, T& h, T& c,
                                          T* reserve) {
    T a[4];
    for (int k = 0; k < 4; ++k) a[k] = xp[k * H + j] + gh[k * H + j] + (bias_hh ? bias_hh[k * H + j] : T(0));
    const T i = sigmoid(a[0]), f = sigmoid(a[1]), g = tanh_(a[2]), o = sigmoid(a[3]);
    c = f * c_prev + i * g;
    h = o * tanh_(c);
    if (reserve) {
      reserve[0 * H + j] = i;
      reserve[1 * H + j] = f;
      reserve[2 * H + j] = g;
      reserve[3 * H + j] = o;
      reserve[4 * H + j] = c;
    }
  }

  // dh: total dL/dh; dc: in dL/dc from the later step, out dL/dc_prev. Writes dL/da (4 gates).
  FASTRNN_HOST_DEVICE static T backward(int64_t H, int64_t j, const T* reserve, T /*h*/,
                                        T /*h_prev*/, T c_prev, T dh, T& dc, T* dgates_ih,
                                        T* /*dgates_hh*/) {
    const T i = reserve[0 * H + j], f = reserve[1 * H + j], g = reserve[2 * H + j],
            o = reserve[3 * H + j], tc = tanh_(reserve[4 * H + j]);
    const T dc_total = dc + dh * o * (T(1) - tc * tc);
    dgates_ih[0 * H + j] = dc_total * g * i * (T(1) - i);
    dgates_ih[1 * H + j] = dc_total * c_prev * f * (T(1) - f);
    dgates_ih[2 * H + j] = dc_total * i * (T(1) - g * g);
    dgates_ih[3 * H + j] = dh * tc * o * (T(1) - o);
    dc = dc_total * f;
    return T(0);
  }
};

}  // namespace fastrnn::cells
