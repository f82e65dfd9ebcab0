#pragma once
// GRU cell, per hidden unit j, gate order r, z, n (PyTorch's nn.GRU):
//   r = σ(x_r + h_r),  z = σ(x_z + h_z),  n = tanh(x_n + r * h_n),  h = n + z * (h_prev - n)
// where x_k = (W_ih x + b_ih)_k and h_k = (W_hh h_prev + b_hh)_k. The reset gate multiplies
// h_n, so the W_hh-side gradient of the n gate differs from the W_ih side.
// Reserve per step: r, z, n and h_n (4 blocks of H).
#include <stdint.h>

#include "cells/activations.h"

namespace fastrnn::cells {

template <typename T>
struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kReserveBlocks = 4;
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitRecurrentGrad = true;
  static constexpr bool kDirectHiddenGrad = true;  // dh_prev gets z * dh directly

  // xp: (3H) input projection incl. bias_ih; gh: (3H) W_hh h_prev; bias_hh: (3H) or nullptr;
  // reserve: (4H) row to fill, or nullptr in inference.
  FASTRNN_HOST_DEVICE static void forward(int64_t H, int64_t j, const T* xp, const T* gh,
                                          const T* bias_hh, T h_prev, T /*c_prev*/, T& h,
                                          T& /*c*/, T* reserve) {
    const T hr = gh[0 * H + j] + (bias_hh ? bias_hh[0 * H + j] : T(0));
    const T hz = gh[1 * H + j] + (bias_hh ? bias_hh[1 * H + j] : T(0));
    const T hn = gh[2 * H + j] + (bias_hh ? bias_hh[2 * H + j] : T(0));
    const T r = sigmoid(xp[0 * H + j] + hr);
    const T z = sigmoid(xp[1 * H + j] + hz);
    const T n = tanh_(xp[2 * H + j] + r * hn);
    h = n + z * (h_prev - n);
    if (reserve) {
      reserve[0 * H + j] = r;
      reserve[1 * H + j] = z;
      reserve[2 * H + j] = n;
      reserve[3 * H + j] = hn;
    }
  }

  // dh: total dL/dh. Writes dL/d(x_k) to dgates_ih and dL/d(h_k) to dgates_hh; returns z * dh.
  FASTRNN_HOST_DEVICE static T backward(int64_t H, int64_t j, const T* reserve, T /*h*/, T h_prev,
                                        T /*c_prev*/, T dh, T& /*dc*/, T* dgates_ih,
                                        T* dgates_hh) {
    const T r = reserve[0 * H + j], z = reserve[1 * H + j], n = reserve[2 * H + j],
            hn = reserve[3 * H + j];
    const T dn = dh * (T(1) - z) * (T(1) - n * n);
    const T dz = dh * (h_prev - n) * z * (T(1) - z);
    const T dr = dn * hn * r * (T(1) - r);
    dgates_ih[0 * H + j] = dr;
    dgates_ih[1 * H + j] = dz;
    dgates_ih[2 * H + j] = dn;
    dgates_hh[0 * H + j] = dr;
    dgates_hh[1 * H + j] = dz;
    dgates_hh[2 * H + j] = dn * r;
    return dh * z;
  }
};

}  // namespace fastrnn::cells
