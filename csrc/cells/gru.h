#pragma once
// GRU cell, per hidden unit, gate order r, z, n (PyTorch's nn.GRU):
//   r = σ(x_r + h_r),  z = σ(x_z + h_z),  n = tanh(x_n + r * h_n),  h = n + z * (h_prev - n)
// where x_k = (W_ih x + b_ih)_k and h_k = (W_hh h_prev + b_hh)_k. The reset gate multiplies
// h_n, so the W_hh-side gradient of the n gate differs from the W_ih side.
// Reserve per step: r, z, n and h_n, at the offsets of GruLayout (cells/table.h). Calling
// convention: see elman.h.
#include <stdint.h>

#include "cells/activations.h"
#include "cells/table.h"

namespace fastrnn::cells {
namespace {

template <typename T>
struct GruCell {
  using Layout = GruLayout;
  static constexpr int kGates = Layout::kGates;
  static constexpr int kReserveBlocks = Layout::kReserveBlocks;
  static constexpr bool kReadsHiddenPrev = true;     // the element math reads h_prev
  static constexpr bool kBackwardReadsOutput = false;  // backward reads h instead of a reserve
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitRecurrentGrad = true;
  static constexpr bool kDirectHiddenGrad = true;  // dh_prev gets z * dh directly

  FASTRNN_HOST_DEVICE static void forward(const T* xp, const T* gh, int64_t ts, const T* bias_ih, const T* bias_hh,
                                          int64_t stride, T h_prev, T /*c_prev*/, T& h, T& /*c*/, T* reserve) {
    const T hn = gh[2 * ts] + bias_hh[2 * stride];
    const T r = sigmoid((xp[0 * ts] + bias_ih[0 * stride]) + (gh[0 * ts] + bias_hh[0 * stride]));
    const T z = sigmoid((xp[1 * ts] + bias_ih[1 * stride]) + (gh[1 * ts] + bias_hh[1 * stride]));
    const T n = tanh_((xp[2 * ts] + bias_ih[2 * stride]) + r * hn);
    h = n + z * (h_prev - n);
    if (reserve) {
      reserve[Layout::kResetGate * stride] = r;
      reserve[Layout::kUpdateGate * stride] = z;
      reserve[Layout::kNewGate * stride] = n;
      reserve[Layout::kHiddenNew * stride] = hn;
    }
  }

  // dh: total dL/dh. Writes dL/d(x_k) to dgates_ih and dL/d(h_k) to dgates_hh; returns z * dh.
  FASTRNN_HOST_DEVICE static T backward(const T* reserve, int64_t stride, T /*h*/, T h_prev, T /*c_prev*/, T dh,
                                        T& /*dc*/, T* dgates_ih, T* dgates_hh) {
    const T r = reserve[Layout::kResetGate * stride], z = reserve[Layout::kUpdateGate * stride];
    const T n = reserve[Layout::kNewGate * stride], hn = reserve[Layout::kHiddenNew * stride];
    const T dn = dh * (T(1) - z) * (T(1) - n * n);
    const T dz = dh * (h_prev - n) * z * (T(1) - z);
    const T dr = dn * hn * r * (T(1) - r);
    dgates_ih[0 * stride] = dr;
    dgates_ih[1 * stride] = dz;
    dgates_ih[2 * stride] = dn;
    dgates_hh[0 * stride] = dr;
    dgates_hh[1 * stride] = dz;
    dgates_hh[2 * stride] = dn * r;
    return dh * z;
  }
};

}  // namespace
}  // namespace fastrnn::cells
