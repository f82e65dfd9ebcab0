// The CPU pooling entry points: argument checks, then the SIMD kernels of the active
// instruction set for the windows they cover (pool_avx2.cpp), the portable loops otherwise.
#include "cpu/pool.h"

#include "common/checks.h"
#include "common/dispatch.h"
#include "common/error.h"
#include "common/isa.h"
#include "cpu/pool_kernels.h"

namespace fastrnn::cpu {

#if defined(FASTRNN_X86)
namespace isa_avx2 {
void max_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output,
                        int64_t* indices, uint8_t* slots);
void avg_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output);
void max_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         const int64_t* indices, const uint8_t* slots, void* grad_input);
void avg_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         void* grad_input);
}  // namespace isa_avx2
#endif

namespace {

// The windows the SIMD kernels take (no dilation, planes small enough for int32 positions):
// forward K x K, K = 2 or 3, stride 1 or 2 in both dimensions; backward 2x2 stride 2, and for
// the average also 3x3 stride 2 on inputs at most 1024 wide (its gather's stack buffers).
enum class Pass { Forward, MaxBackward, AvgBackward };
bool simd_window(const Pool2dShape& s, const Pool2dParams& p, Pass pass) {
#if defined(FASTRNN_X86)
  if (active_isa() == Isa::Generic) return false;
  if (p.dilation_h != 1 || p.dilation_w != 1 || s.height * s.width >= (int64_t(1) << 31)) return false;
  if (p.kernel_h != p.kernel_w || p.stride_h != p.stride_w || (p.kernel_h != 2 && p.kernel_h != 3)) return false;
  switch (pass) {
    case Pass::Forward:
      return p.stride_h == 1 || p.stride_h == 2;
    case Pass::MaxBackward:
      return p.stride_h == 2 && p.kernel_h == 2;
    case Pass::AvgBackward:
      return p.stride_h == 2 && (p.kernel_h == 2 || s.width <= 1024);
  }
  return false;
#else
  (void)s, (void)p, (void)pass;
  return false;
#endif
}

void check_cpu(const char* op, std::initializer_list<const TensorView*> views) {
  for (const TensorView* v : views) {
    FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CPU, op, ": expected CPU arrays");
  }
}

}  // namespace

void max_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output,
                        const TensorView& indices) {
  const char* op = "max_pool2d_forward";
  check_cpu(op, {&input, &output, &indices});
  const Pool2dShape s = check_pool2d(op, p, input, output, indices, false, true);
  check_no_overlap(op, {{"output", &output}, {"indices", &indices}}, {{"input", &input}});
  const bool slots = indices.defined() && indices.dtype == DType::UInt8;
  int64_t* idx = indices.defined() && !slots ? indices.data_as<int64_t>() : nullptr;
  uint8_t* slot = slots ? indices.data_as<uint8_t>() : nullptr;
  if (s.planes == 0) return;
#if defined(FASTRNN_X86)
  if (simd_window(s, p, Pass::Forward)) {
    return isa_avx2::max_pool2d_forward(s, p, input.dtype, input.data, output.data, idx, slot);
  }
#endif
  FASTRNN_DISPATCH_FLOATING(input.dtype, op, [&] {
    const scalar_t* x = input.data_as<scalar_t>();
    scalar_t* y = output.data_as<scalar_t>();
    if (slot != nullptr) return max_forward_generic<scalar_t>(s, p, x, y, slot);
    max_forward_generic<scalar_t>(s, p, x, y, idx);
  });
}

void max_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& indices,
                         const TensorView& grad_input) {
  const char* op = "max_pool2d_backward";
  check_cpu(op, {&grad_output, &indices, &grad_input});
  FASTRNN_CHECK(indices.defined(), op, ": indices are required");
  const Pool2dShape s = check_pool2d(op, p, grad_input, grad_output, indices, false, true);
  check_no_overlap(op, {{"grad_input", &grad_input}}, {{"grad_output", &grad_output}, {"indices", &indices}});
  const bool slots = indices.dtype == DType::UInt8;
  const int64_t* idx = slots ? nullptr : indices.data_as<int64_t>();
  const uint8_t* slot = slots ? indices.data_as<uint8_t>() : nullptr;
  if (s.planes == 0) return;
#if defined(FASTRNN_X86)
  if (simd_window(s, p, Pass::MaxBackward)) {
    return isa_avx2::max_pool2d_backward(s, p, grad_input.dtype, grad_output.data, idx, slot, grad_input.data);
  }
#endif
  FASTRNN_DISPATCH_FLOATING(grad_input.dtype, op, [&] {
    const scalar_t* gy = grad_output.data_as<scalar_t>();
    scalar_t* gx = grad_input.data_as<scalar_t>();
    if (slot != nullptr) return max_backward_generic<scalar_t>(s, p, gy, slot, gx);
    max_backward_generic<scalar_t>(s, p, gy, idx, gx);
  });
}

void avg_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output) {
  const char* op = "avg_pool2d_forward";
  check_cpu(op, {&input, &output});
  const Pool2dShape s = check_pool2d(op, p, input, output, TensorView(), false);
  check_no_overlap(op, {{"output", &output}}, {{"input", &input}});
  if (s.planes == 0) return;
#if defined(FASTRNN_X86)
  if (simd_window(s, p, Pass::Forward)) return isa_avx2::avg_pool2d_forward(s, p, input.dtype, input.data, output.data);
#endif
  FASTRNN_DISPATCH_FLOATING(input.dtype, op, [&] {
    avg_forward_generic<scalar_t>(s, p, input.data_as<scalar_t>(), output.data_as<scalar_t>());
  });
}

void avg_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& grad_input) {
  const char* op = "avg_pool2d_backward";
  check_cpu(op, {&grad_output, &grad_input});
  const Pool2dShape s = check_pool2d(op, p, grad_input, grad_output, TensorView(), false);
  check_no_overlap(op, {{"grad_input", &grad_input}}, {{"grad_output", &grad_output}});
  if (s.planes == 0) return;
#if defined(FASTRNN_X86)
  if (simd_window(s, p, Pass::AvgBackward)) {
    return isa_avx2::avg_pool2d_backward(s, p, grad_input.dtype, grad_output.data, grad_input.data);
  }
#endif
  FASTRNN_DISPATCH_FLOATING(grad_input.dtype, op, [&] {
    avg_backward_generic<scalar_t>(s, p, grad_output.data_as<scalar_t>(), grad_input.data_as<scalar_t>());
  });
}

}  // namespace fastrnn::cpu
