// One dtype's convolution kernels, in a file of its own so the build compiles them in parallel.
#include "cuda/conv_ops.cuh"

namespace fastrnn::cuda::conv {
template struct ConvOps<float, MmaTf32>;
}  // namespace fastrnn::cuda::conv
