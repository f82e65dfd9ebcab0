#pragma once
// Scalar activations shared by the CPU and CUDA kernels. Exact library functions, so float64
// results agree with PyTorch to rounding; NaN and Inf propagate as in torch.
#include <math.h>

#include "common/macros.h"

namespace fastrnn::cells {

FASTRNN_HOST_DEVICE float exponential(float x) { return ::expf(x); }
FASTRNN_HOST_DEVICE double exponential(double x) { return ::exp(x); }
FASTRNN_HOST_DEVICE float tanh_(float x) { return ::tanhf(x); }
FASTRNN_HOST_DEVICE double tanh_(double x) { return ::tanh(x); }

// 1 / (1 + e^-x): exact 0 and 1 at -inf and +inf, NaN stays NaN.
template <typename T>
FASTRNN_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + exponential(-x));
}

// Written so that NaN passes through (NaN < 0 is false), as torch.relu does.
template <typename T>
FASTRNN_HOST_DEVICE T relu(T x) {
  return x < T(0) ? T(0) : x;
}

}  // namespace fastrnn::cells
