// The CUDA RNN kernels for __half tensors (one file per dtype, so they compile in parallel).
#include "cuda/rnn_impl.cuh"

namespace fastrnn::cuda {

template void forward_calls<__half>(const RnnForwardParams*, const RnnDims*, int, const RnnLaunch&);
template void backward_calls<__half>(const RnnBackwardParams*, const RnnDims*, int, const RnnLaunch&);
template const void* persistent_kernel<__half>(CellKind, bool, bool);

}  // namespace fastrnn::cuda
