// The CUDA RNN kernels for __nv_bfloat16 tensors (one file per dtype, so they compile in parallel).
#include "cuda/rnn_impl.cuh"

namespace fastrnn::cuda {

template void forward_calls<__nv_bfloat16>(const RnnForwardParams*, const RnnDims*, int, const RnnLaunch&);
template void backward_calls<__nv_bfloat16>(const RnnBackwardParams*, const RnnDims*, int, const RnnLaunch&);
template const void* persistent_kernel<__nv_bfloat16>(CellKind, bool, bool);

}  // namespace fastrnn::cuda
