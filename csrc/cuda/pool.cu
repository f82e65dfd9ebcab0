// 2-d max and average pooling on CUDA. Forward: one thread per output element. Backward: one
// thread per input element gathering from the windows that cover it (no atomics, no separate
// zeroing pass, deterministic): for max pool it sums the gradients of the outputs whose argmax
// it is, for average pool each covering window's gradient over its divisor. The window
// arithmetic is the CPU's (common/pool_params.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/checks.h"
#include "common/error.h"
#include "cuda/launch.h"
#include "cuda/pool.h"

namespace fastrnn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

// A = the accumulation type: float for float16/bfloat16/float32, double for float64.
template <typename S, typename A>
__global__ void __launch_bounds__(kThreads)
    max_forward_kernel(const S* input, S* output, int64_t* indices, Pool2dShape s, Pool2dParams p) {
  const int64_t total = s.planes * s.out_height * s.out_width;
  for (int64_t o = blockIdx.x * int64_t(kThreads) + threadIdx.x; o < total; o += int64_t(gridDim.x) * kThreads) {
    const int64_t ow = o % s.out_width, oh = (o / s.out_width) % s.out_height, plane = o / (s.out_width * s.out_height);
    const S* in = input + plane * s.height * s.width;
    const WindowRange rows = max_window(oh, p.kernel_h, p.pad_h, p.stride_h, p.dilation_h, s.height);
    const WindowRange cols = max_window(ow, p.kernel_w, p.pad_w, p.stride_w, p.dilation_w, s.width);
    A best = -A(INFINITY);
    int64_t at = rows.first * s.width + cols.first;
    for (int64_t ih = rows.first; ih < rows.last; ih += p.dilation_h) {
      for (int64_t iw = cols.first; iw < cols.last; iw += p.dilation_w) {
        const A v = A(in[ih * s.width + iw]);
        if (v > best || v != v) {  // torch's order: first maximum, a NaN always takes over
          best = v;
          at = ih * s.width + iw;
        }
      }
    }
    output[o] = S(best);
    if (indices != nullptr) indices[o] = at;
  }
}

// The outputs [first, last) along one dimension whose windows can cover input index i.
struct Span {
  int64_t first, last;
};
__device__ __forceinline__ Span covering(int64_t i, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                                         int64_t out_size) {
  const int64_t reach = i + pad - (kernel - 1) * dilation;
  const int64_t first = reach <= 0 ? 0 : (reach + stride - 1) / stride;
  int64_t last = (i + pad) / stride + 1;
  last = last < out_size ? last : out_size;
  return {first, last};
}

template <typename S, typename A>
__global__ void __launch_bounds__(kThreads)
    max_backward_kernel(const S* grad_output, const int64_t* indices, S* grad_input, Pool2dShape s, Pool2dParams p) {
  const int64_t total = s.planes * s.height * s.width;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t iw = i % s.width, ih = (i / s.width) % s.height, plane = i / (s.width * s.height);
    const int64_t offset = plane * s.out_height * s.out_width, here = ih * s.width + iw;
    const Span rows = covering(ih, p.kernel_h, p.pad_h, p.stride_h, p.dilation_h, s.out_height);
    const Span cols = covering(iw, p.kernel_w, p.pad_w, p.stride_w, p.dilation_w, s.out_width);
    A sum = 0;
    for (int64_t oh = rows.first; oh < rows.last; ++oh) {
      for (int64_t ow = cols.first; ow < cols.last; ++ow) {
        const int64_t o = offset + oh * s.out_width + ow;
        if (indices[o] == here) sum += A(grad_output[o]);
      }
    }
    grad_input[i] = S(sum);
  }
}

template <typename S, typename A>
__global__ void __launch_bounds__(kThreads)
    avg_forward_kernel(const S* input, S* output, Pool2dShape s, Pool2dParams p) {
  const int64_t total = s.planes * s.out_height * s.out_width;
  for (int64_t o = blockIdx.x * int64_t(kThreads) + threadIdx.x; o < total; o += int64_t(gridDim.x) * kThreads) {
    const int64_t ow = o % s.out_width, oh = (o / s.out_width) % s.out_height, plane = o / (s.out_width * s.out_height);
    const S* in = input + plane * s.height * s.width;
    const AvgWindow rows = avg_window(oh, p.kernel_h, p.pad_h, p.stride_h, s.height);
    const AvgWindow cols = avg_window(ow, p.kernel_w, p.pad_w, p.stride_w, s.width);
    A sum = 0;
    for (int64_t ih = rows.first; ih < rows.last; ++ih) {
      for (int64_t iw = cols.first; iw < cols.last; ++iw) sum += A(in[ih * s.width + iw]);
    }
    const bool empty = rows.first >= rows.last || cols.first >= cols.last;
    output[o] = S(empty ? A(0) : sum / A(avg_divisor(p, rows, cols)));
  }
}

template <typename S, typename A>
__global__ void __launch_bounds__(kThreads)
    avg_backward_kernel(const S* grad_output, S* grad_input, Pool2dShape s, Pool2dParams p) {
  const int64_t total = s.planes * s.height * s.width;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t iw = i % s.width, ih = (i / s.width) % s.height, plane = i / (s.width * s.height);
    const S* go = grad_output + plane * s.out_height * s.out_width;
    const Span oh_span = covering(ih, p.kernel_h, p.pad_h, p.stride_h, 1, s.out_height);
    const Span ow_span = covering(iw, p.kernel_w, p.pad_w, p.stride_w, 1, s.out_width);
    A sum = 0;
    for (int64_t oh = oh_span.first; oh < oh_span.last; ++oh) {
      const AvgWindow rows = avg_window(oh, p.kernel_h, p.pad_h, p.stride_h, s.height);
      if (ih < rows.first || ih >= rows.last) continue;
      for (int64_t ow = ow_span.first; ow < ow_span.last; ++ow) {
        const AvgWindow cols = avg_window(ow, p.kernel_w, p.pad_w, p.stride_w, s.width);
        if (iw < cols.first || iw >= cols.last) continue;
        sum += A(go[oh * s.out_width + ow]) / A(avg_divisor(p, rows, cols));
      }
    }
    grad_input[i] = S(sum);
  }
}

int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Calls fn(S{}, A{}) with the storage and accumulation types of `dtype`.
template <typename Fn>
void with_types(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::Float16: return fn(__half(), float());
    case DType::BFloat16: return fn(__nv_bfloat16(), float());
    case DType::Float64: return fn(double(), double());
    default: return fn(float(), float());
  }
}

void require_cuda(const char* op, std::initializer_list<const TensorView*> views) {
  for (const TensorView* v : views) {
    FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CUDA, op, ": expected CUDA arrays");
  }
}

}  // namespace

void max_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output,
                        const TensorView& indices, uintptr_t stream) {
  const char* op = "max_pool2d_forward";
  require_cuda(op, {&input, &output, &indices});
  const Pool2dShape s = check_pool2d(op, p, input, output, indices, true);
  check_no_overlap(op, {{"output", &output}, {"indices", &indices}}, {{"input", &input}});
  const int64_t n = s.planes * s.out_height * s.out_width;
  if (n == 0) return;
  DeviceScope scope(input.device_index);
  int64_t* idx = indices.defined() ? indices.data_as<int64_t>() : nullptr;
  with_types(input.dtype, [&](auto storage, auto accumulate) {
    using S = decltype(storage);
    using A = decltype(accumulate);
    max_forward_kernel<S, A><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        input.data_as<S>(), output.data_as<S>(), idx, s, p);
  });
  check_launch(op);
}

void max_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& indices,
                         const TensorView& grad_input, uintptr_t stream) {
  const char* op = "max_pool2d_backward";
  require_cuda(op, {&grad_output, &indices, &grad_input});
  FASTRNN_CHECK(indices.defined(), op, ": indices are required");
  const Pool2dShape s = check_pool2d(op, p, grad_input, grad_output, indices, true);
  check_no_overlap(op, {{"grad_input", &grad_input}}, {{"grad_output", &grad_output}, {"indices", &indices}});
  const int64_t n = s.planes * s.height * s.width;
  if (n == 0) return;
  DeviceScope scope(grad_input.device_index);
  with_types(grad_input.dtype, [&](auto storage, auto accumulate) {
    using S = decltype(storage);
    using A = decltype(accumulate);
    max_backward_kernel<S, A><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        grad_output.data_as<S>(), indices.data_as<int64_t>(), grad_input.data_as<S>(), s, p);
  });
  check_launch(op);
}

void avg_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output, uintptr_t stream) {
  const char* op = "avg_pool2d_forward";
  require_cuda(op, {&input, &output});
  const Pool2dShape s = check_pool2d(op, p, input, output, TensorView(), true);
  check_no_overlap(op, {{"output", &output}}, {{"input", &input}});
  const int64_t n = s.planes * s.out_height * s.out_width;
  if (n == 0) return;
  DeviceScope scope(input.device_index);
  with_types(input.dtype, [&](auto storage, auto accumulate) {
    using S = decltype(storage);
    using A = decltype(accumulate);
    avg_forward_kernel<S, A><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        input.data_as<S>(), output.data_as<S>(), s, p);
  });
  check_launch(op);
}

void avg_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& grad_input,
                         uintptr_t stream) {
  const char* op = "avg_pool2d_backward";
  require_cuda(op, {&grad_output, &grad_input});
  const Pool2dShape s = check_pool2d(op, p, grad_input, grad_output, TensorView(), true);
  check_no_overlap(op, {{"grad_input", &grad_input}}, {{"grad_output", &grad_output}});
  const int64_t n = s.planes * s.height * s.width;
  if (n == 0) return;
  DeviceScope scope(grad_input.device_index);
  with_types(grad_input.dtype, [&](auto storage, auto accumulate) {
    using S = decltype(storage);
    using A = decltype(accumulate);
    avg_backward_kernel<S, A><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        grad_output.data_as<S>(), grad_input.data_as<S>(), s, p);
  });
  check_launch(op);
}

}  // namespace fastrnn::cuda
