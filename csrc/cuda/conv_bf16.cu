// One dtype's convolution kernels, in a file of its own so the build compiles them in parallel.
#include "cuda/conv_ops.cuh"

namespace fastrnn::cuda::conv {
template struct ConvOps<__nv_bfloat16, Mma16<__nv_bfloat16>>;
}  // namespace fastrnn::cuda::conv
