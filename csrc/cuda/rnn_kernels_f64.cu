// The CUDA RNN kernels for double tensors (one file per dtype, so they compile in parallel).
#include "cuda/rnn_impl.cuh"

namespace fastrnn::cuda {

template void forward_calls<double>(const RnnForwardParams*, const RnnDims*, int, const RnnLaunch&);
template void backward_calls<double>(const RnnBackwardParams*, const RnnDims*, int, const RnnLaunch&);
template const void* persistent_kernel<double>(CellKind, bool, bool);

}  // namespace fastrnn::cuda
