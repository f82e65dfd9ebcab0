// Compiles the shared cell math (csrc/cells) for the device, so a change that breaks the CUDA
// build of those headers fails at build time. Nothing here is launched; the CUDA RNN kernels
// (rnn_impl.cuh) call the same functions.
#include "cells/elman.h"
#include "cells/gru.h"
#include "cells/lstm.h"

namespace fastrnn::cuda {
namespace {

template <class Cell, typename T>
__global__ void cell_compile_check(int64_t H, const T* xp, const T* gh, T* reserve, T* out) {
  const int64_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= H) return;
  T h, c = T(0), dc = T(0);
  Cell::forward(xp + j, gh + j, H, xp + j, gh + j, H, T(0), T(0), h, c, reserve + j);
  out[j] = Cell::backward(reserve + j, H, h, T(0), T(0), T(1), dc, out + j, out + j);
}

template __global__ void cell_compile_check<cells::LstmCell<float>, float>(int64_t, const float*, const float*, float*, float*);
template __global__ void cell_compile_check<cells::GruCell<float>, float>(int64_t, const float*, const float*, float*, float*);
template __global__ void cell_compile_check<cells::ElmanCell<float, cells::Activation::Tanh>, float>(
    int64_t, const float*, const float*, float*, float*);
template __global__ void cell_compile_check<cells::ElmanCell<double, cells::Activation::Relu>, double>(
    int64_t, const double*, const double*, double*, double*);

}  // namespace
}  // namespace fastrnn::cuda
