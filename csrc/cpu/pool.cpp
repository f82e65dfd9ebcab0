// The CPU pooling entry points: argument checks, then the SIMD kernels of the active
// instruction set for the windows they cover (pool_avx2.cpp), the portable loops otherwise.
#include "cpu/pool.h"

#include "common/checks.h"
#include "common/dispatch.h"
#include "common/error.h"
#include "cpu/pool_kernels.h"
#include "cpu/simd/dispatch.h"

namespace fastrnn::cpu {

// Each set's kernels take (shape, params, dtype, raw pointers); the arguments are checked.
#define FASTRNN_DECLARE_POOL_KERNELS                                                                             \
  void max_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output, \
                          int64_t* indices, uint8_t* slots);                                                      \
  void avg_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input,              \
                          void* output);                                                                          \
  void max_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,       \
                           const int64_t* indices, const uint8_t* slots, void* grad_input);                       \
  void avg_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,       \
                           void* grad_input);

// The portable loops of pool_kernels.h, for every window.
namespace isa_generic {
namespace {

void max_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output,
                        int64_t* indices, uint8_t* slots) {
  FASTRNN_DISPATCH_FLOATING(dtype, "max_pool2d_forward", [&] {
    const scalar_t* x = static_cast<const scalar_t*>(input);
    scalar_t* y = static_cast<scalar_t*>(output);
    if (slots != nullptr) return max_forward_generic<scalar_t>(s, p, x, y, slots);
    max_forward_generic<scalar_t>(s, p, x, y, indices);
  });
}

void max_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         const int64_t* indices, const uint8_t* slots, void* grad_input) {
  FASTRNN_DISPATCH_FLOATING(dtype, "max_pool2d_backward", [&] {
    const scalar_t* gy = static_cast<const scalar_t*>(grad_output);
    scalar_t* gx = static_cast<scalar_t*>(grad_input);
    if (slots != nullptr) return max_backward_generic<scalar_t>(s, p, gy, slots, gx);
    max_backward_generic<scalar_t>(s, p, gy, indices, gx);
  });
}

void avg_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output) {
  FASTRNN_DISPATCH_FLOATING(dtype, "avg_pool2d_forward", [&] {
    avg_forward_generic<scalar_t>(s, p, static_cast<const scalar_t*>(input), static_cast<scalar_t*>(output));
  });
}

void avg_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         void* grad_input) {
  FASTRNN_DISPATCH_FLOATING(dtype, "avg_pool2d_backward", [&] {
    avg_backward_generic<scalar_t>(s, p, static_cast<const scalar_t*>(grad_output),
                                   static_cast<scalar_t*>(grad_input));
  });
}

}  // namespace
}  // namespace isa_generic

#if defined(FASTRNN_X86)
// pool_avx2.cpp; AVX-512 runs the AVX2 kernels (the work streams through memory).
namespace isa_avx2 {
FASTRNN_DECLARE_POOL_KERNELS
}  // namespace isa_avx2
namespace isa_avx512 {
using isa_avx2::avg_pool2d_backward;
using isa_avx2::avg_pool2d_forward;
using isa_avx2::max_pool2d_backward;
using isa_avx2::max_pool2d_forward;
}  // namespace isa_avx512
#endif
#undef FASTRNN_DECLARE_POOL_KERNELS

namespace {

// The windows the SIMD kernels take (no dilation, planes small enough for int32 positions):
// forward K x K, K = 2 or 3, stride 1 or 2 in both dimensions; backward 2x2 stride 2, and for
// the average also 3x3 stride 2 on inputs at most 1024 wide (its gather's stack buffers).
enum class Pass { Forward, MaxBackward, AvgBackward };
bool simd_window(const Pool2dShape& s, const Pool2dParams& p, Pass pass) {
#if defined(FASTRNN_X86)
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

// The set whose kernels run this call: the active one where its SIMD code takes the window.
Isa isa_for(const Pool2dShape& s, const Pool2dParams& p, Pass pass) {
  return simd_window(s, p, pass) ? active_isa() : Isa::Generic;
}

void check_cpu(const char* op, std::initializer_list<const TensorView*> views) {
  for (const TensorView* v : views) {
    FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CPU, op, ": expected CPU arrays");
  }
}

// An average pool's checks: full is the (.., H, W) array (input, or grad_input backward),
// pooled the (.., OH, OW) one; the pass writes pooled forward, full backward.
Pool2dShape check_avg(const char* op, const Pool2dParams& p, const TensorView& full, const TensorView& pooled,
                      bool forward) {
  check_cpu(op, {&full, &pooled});
  const Pool2dShape s = check_pool2d(op, p, full, pooled, TensorView(), false);
  if (forward) {
    check_no_overlap(op, {{"output", &pooled}}, {{"input", &full}});
  } else {
    check_no_overlap(op, {{"grad_input", &full}}, {{"grad_output", &pooled}});
  }
  return s;
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
  FASTRNN_ISA_DISPATCH(isa_for(s, p, Pass::Forward), max_pool2d_forward, s, p, input.dtype, input.data, output.data,
                       idx, slot);
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
  FASTRNN_ISA_DISPATCH(isa_for(s, p, Pass::MaxBackward), max_pool2d_backward, s, p, grad_input.dtype,
                       grad_output.data, idx, slot, grad_input.data);
}

void avg_pool2d_forward(const Pool2dParams& p, const TensorView& input, const TensorView& output) {
  const Pool2dShape s = check_avg("avg_pool2d_forward", p, input, output, true);
  if (s.planes == 0) return;
  FASTRNN_ISA_DISPATCH(isa_for(s, p, Pass::Forward), avg_pool2d_forward, s, p, input.dtype, input.data, output.data);
}

void avg_pool2d_backward(const Pool2dParams& p, const TensorView& grad_output, const TensorView& grad_input) {
  const Pool2dShape s = check_avg("avg_pool2d_backward", p, grad_input, grad_output, false);
  if (s.planes == 0) return;
  FASTRNN_ISA_DISPATCH(isa_for(s, p, Pass::AvgBackward), avg_pool2d_backward, s, p, grad_input.dtype,
                       grad_output.data, grad_input.data);
}

}  // namespace fastrnn::cpu
