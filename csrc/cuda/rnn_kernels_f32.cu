// The CUDA RNN kernels for float tensors (one file per dtype, so they compile in parallel).
#include "cuda/rnn_impl.cuh"

namespace fastrnn::cuda {

template void forward_calls<float>(const RnnForwardParams*, const RnnDims*, int, const RnnLaunch&);
template void backward_calls<float>(const RnnBackwardParams*, const RnnDims*, int, const RnnLaunch&);
template const void* persistent_kernel<float>(CellKind, bool, bool);

}  // namespace fastrnn::cuda
