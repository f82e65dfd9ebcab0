// Entry points of the CUDA convolutions: check the views against the params, make the device
// current, and pick the dtype's kernels (instantiated in conv_<dtype>.cu).
#include <limits>

#include "common/conv_params.h"
#include "cuda/conv_ops.cuh"

namespace fastrnn::cuda {
namespace conv {

Shape make_shape(const Conv2dParams& p) {
  Shape s{};
  s.N = int(p.N), s.C = int(p.C), s.H = int(p.H), s.W = int(p.W), s.K = int(p.K), s.R = int(p.R), s.S = int(p.S);
  s.P = int(p.P), s.Q = int(p.Q);
  s.sh = p.stride_h, s.sw = p.stride_w, s.ph = p.pad_h, s.pw = p.pad_w, s.dh = p.dilation_h, s.dw = p.dilation_w;
  s.groups = p.groups;
  s.Cg = int(p.C / p.groups);
  s.Kg = int(p.K / p.groups);
  s.RS = s.R * s.S, s.PQ = s.P * s.Q, s.HW = s.H * s.W, s.CgRS = s.Cg * s.RS;
  auto divisor = [](int64_t d) { return FastDiv(d > 0 ? d : 1); };
  s.div_S = divisor(s.S), s.div_RS = divisor(s.RS), s.div_Q = divisor(s.Q), s.div_PQ = divisor(s.PQ);
  s.div_W = divisor(s.W), s.div_HW = divisor(s.HW), s.div_sh = divisor(s.sh), s.div_sw = divisor(s.sw);
  return s;
}

}  // namespace conv

namespace {

using conv::ConvOps;
using conv::Mma16;
using conv::MmaTf32;
using conv::Simt;

// Runs fn with the ConvOps of the params' dtype (and TF32 choice for float32).
template <class Fn>
void dispatch(const Conv2dParams& p, const char* op, Fn fn) {
  switch (p.x.dtype) {
    case DType::Float16: return fn(ConvOps<__half, Mma16<__half>>{});
    case DType::BFloat16: return fn(ConvOps<__nv_bfloat16, Mma16<__nv_bfloat16>>{});
    case DType::Float32:
      if (p.allow_tf32) return fn(ConvOps<float, MmaTf32>{});
      return fn(ConvOps<float, Simt<float>>{});
    case DType::Float64: return fn(ConvOps<double, Simt<double>>{});
    default:
      FASTRNN_CHECK(false, op, ": CUDA convolutions take float16, bfloat16, float32 or float64, got ",
                    dtype_name(p.x.dtype));
  }
}

// A view of the call (common/conv_params.h), on the CUDA device of the input, in 32-bit sizes.
void check_view(const char* op, const char* name, const TensorView& v, const Conv2dParams& p,
                std::initializer_list<int64_t> shape, DType dtype) {
  check_conv_view(op, name, v, p.x, shape, dtype);
  FASTRNN_CHECK(v.numel() < (int64_t(1) << 31), op, ": ", name, " has more than 2^31 - 1 elements");
}

int64_t pooled(int64_t size) { return size / 2; }

// The checks every entry point shares: the input on a CUDA device, the conv's arithmetic
// (common/conv_params.h), the output size exactly torch's, sizes in 32 bits.
void check_params(const char* op, const Conv2dParams& p) {
  FASTRNN_CHECK(p.x.defined() && p.x.device == DeviceType::CUDA, op, ": the input must be a CUDA tensor");
  ConvGeometry g;
  g.stride_h = p.stride_h, g.stride_w = p.stride_w, g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  g.dilation_h = p.dilation_h, g.dilation_w = p.dilation_w, g.groups = p.groups;
  conv_shape(op, p.x, p.weight, p.P, p.Q, g);
  const int64_t P = (p.H + 2 * p.pad_h - p.dilation_h * (p.R - 1) - 1) / p.stride_h + 1;
  const int64_t Q = (p.W + 2 * p.pad_w - p.dilation_w * (p.S - 1) - 1) / p.stride_w + 1;
  FASTRNN_CHECK(P == p.P && Q == p.Q && P > 0 && Q > 0, op, ": output size (", p.P, ", ", p.Q,
                ") does not match the input, kernel, stride, padding and dilation (", P, ", ", Q, ")");
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  FASTRNN_CHECK(p.N * p.C * p.H * p.W <= kMax && p.N * p.K * p.P * p.Q <= kMax && p.K * p.C * p.R * p.S <= kMax &&
                    p.H + 2 * p.pad_h <= kMax / 4 && p.W + 2 * p.pad_w <= kMax / 4,
                op, ": tensors of 2^31 or more elements are not supported");
  check_view(op, "input", p.x, p, {p.N, p.C, p.H, p.W}, p.x.dtype);
  check_view(op, "weight", p.weight, p, {p.K, p.C / p.groups, p.R, p.S}, p.x.dtype);
}

}  // namespace

void conv2d_forward(const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  check_params(op, p);
  if (p.bias.defined()) check_view(op, "bias", p.bias, p, {p.K}, p.x.dtype);
  check_view(op, "output", p.y, p, {p.N, p.K, p.P, p.Q}, p.x.dtype);
  DeviceScope scope(p.x.device_index);
  dispatch(p, op, [&](auto ops) { ops.forward_plain(p); });
}

void conv2d_backward_input(const Conv2dParams& p) {
  const char* op = "conv2d_backward_input";
  check_params(op, p);
  check_view(op, "grad_output", p.dy, p, {p.N, p.K, p.P, p.Q}, p.x.dtype);
  check_view(op, "grad_input", p.dx, p, {p.N, p.C, p.H, p.W}, p.x.dtype);
  DeviceScope scope(p.x.device_index);
  dispatch(p, op, [&](auto ops) { ops.backward_input_plain(p); });
}

int64_t conv2d_backward_weight_workspace_bytes(const Conv2dParams& p) {
  check_params("conv2d_backward_weight", p);
  int64_t bytes = 0;
  dispatch(p, "conv2d_backward_weight", [&](auto ops) { bytes = ops.workspace_bytes(p); });
  return bytes;
}

void conv2d_backward_weight(const Conv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  check_params(op, p);
  check_view(op, "grad_output", p.dy, p, {p.N, p.K, p.P, p.Q}, p.x.dtype);
  if (p.dweight.defined()) check_view(op, "grad_weight", p.dweight, p, {p.K, p.C / p.groups, p.R, p.S}, p.x.dtype);
  if (p.dbias.defined()) check_view(op, "grad_bias", p.dbias, p, {p.K}, p.x.dtype);
  DeviceScope scope(p.x.device_index);
  dispatch(p, op, [&](auto ops) { ops.backward_weight_plain(p); });
}

void conv_relu_pool2d_forward(const Conv2dParams& p) {
  const char* op = "conv_relu_pool2d_forward";
  check_params(op, p);
  if (p.bias.defined()) check_view(op, "bias", p.bias, p, {p.K}, p.x.dtype);
  check_view(op, "output", p.y, p, {p.N, p.K, pooled(p.P), pooled(p.Q)}, p.x.dtype);
  check_view(op, "argmax", p.argmax, p, {p.N, p.K, pooled(p.P), pooled(p.Q)}, DType::UInt8);
  DeviceScope scope(p.x.device_index);
  dispatch(p, op, [&](auto ops) { ops.forward_pooled(p); });
}

void conv_relu_pool2d_backward(const Conv2dParams& p) {
  const char* op = "conv_relu_pool2d_backward";
  check_params(op, p);
  const std::initializer_list<int64_t> out = {p.N, p.K, pooled(p.P), pooled(p.Q)};
  check_view(op, "grad_output", p.dy, p, out, p.x.dtype);
  check_view(op, "output", p.y, p, out, p.x.dtype);
  check_view(op, "argmax", p.argmax, p, out, DType::UInt8);
  if (p.dx.defined()) check_view(op, "grad_input", p.dx, p, {p.N, p.C, p.H, p.W}, p.x.dtype);
  if (p.dweight.defined()) check_view(op, "grad_weight", p.dweight, p, {p.K, p.C / p.groups, p.R, p.S}, p.x.dtype);
  if (p.dbias.defined()) check_view(op, "grad_bias", p.dbias, p, {p.K}, p.x.dtype);
  DeviceScope scope(p.x.device_index);
  dispatch(p, op, [&](auto ops) { ops.pooled_backward(p); });
}

}  // namespace fastrnn::cuda
