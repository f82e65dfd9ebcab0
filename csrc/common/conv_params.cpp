#include "common/conv_params.h"

#include <string>

#include "common/error.h"

namespace fastrnn {
namespace {

// Whether an input of `in` along one axis, padded `pad` before and `pad` or `pad + 1` after
// (torch's 'same' padding of an even kernel), gives `out` outputs.
bool output_fits(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  for (int64_t extra = 0; extra <= 1; ++extra)
    if (in + 2 * pad + extra >= span && out == (in + 2 * pad + extra - span) / stride + 1) return true;
  return false;
}

std::string shape_text(std::initializer_list<int64_t> shape) {
  std::string text = "(";
  int d = 0;
  for (int64_t size : shape) text += (d++ ? ", " : "") + std::to_string(size);
  return text + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

void check_conv_shape(const char* op, const ConvShape& s) {
  FASTRNN_CHECK(s.groups > 0, op, ": groups must be positive, got ", s.groups);
  FASTRNN_CHECK(s.in_channels >= s.groups && s.in_channels % s.groups == 0 && s.out_channels >= s.groups &&
                    s.out_channels % s.groups == 0,
                op, ": in_channels (", s.in_channels, ") and out_channels (", s.out_channels,
                ") must be positive multiples of groups (", s.groups, ")");
  FASTRNN_CHECK(s.kernel_h > 0 && s.kernel_w > 0, op, ": kernel size must be positive, got ", s.kernel_h, "x",
                s.kernel_w);
  FASTRNN_CHECK(s.stride_h > 0 && s.stride_w > 0 && s.dilation_h > 0 && s.dilation_w > 0, op,
                ": stride and dilation must be positive");
  FASTRNN_CHECK(s.pad_h >= 0 && s.pad_w >= 0, op, ": padding must be non-negative");
  FASTRNN_CHECK(s.batch >= 0 && s.height >= 0 && s.width >= 0, op, ": sizes must be non-negative");
  FASTRNN_CHECK(output_fits(s.height, s.out_height, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h) &&
                    output_fits(s.width, s.out_width, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w),
                op, ": output size ", s.out_height, "x", s.out_width, " does not match input size ", s.height, "x",
                s.width, " (kernel ", s.kernel_h, "x", s.kernel_w, ", stride ", s.stride_h, "x", s.stride_w,
                ", padding ", s.pad_h, "x", s.pad_w, ", dilation ", s.dilation_h, "x", s.dilation_w, ")");
}

ConvShape conv_shape(const char* op, const TensorView& x, const TensorView& weight, int64_t out_height,
                     int64_t out_width, const ConvGeometry& g) {
  FASTRNN_CHECK(x.ndim == 4 && weight.ndim == 4, op, ": input and weight must be 4-D, got ", x.shape_str(), " and ",
                weight.shape_str());
  ConvShape s;
  s.batch = x.sizes[0], s.in_channels = x.sizes[1], s.height = x.sizes[2], s.width = x.sizes[3];
  s.out_channels = weight.sizes[0], s.kernel_h = weight.sizes[2], s.kernel_w = weight.sizes[3];
  s.out_height = out_height, s.out_width = out_width;
  s.stride_h = g.stride_h, s.stride_w = g.stride_w, s.pad_h = g.pad_h, s.pad_w = g.pad_w;
  s.dilation_h = g.dilation_h, s.dilation_w = g.dilation_w, s.groups = g.groups;
  check_conv_shape(op, s);
  const auto expected = {s.out_channels, s.in_channels / s.groups, s.kernel_h, s.kernel_w};
  FASTRNN_CHECK(weight.sizes[1] == s.in_channels / s.groups, op, ": weight must have shape ", shape_text(expected),
                ", got ", weight.shape_str());
  return s;
}

void check_conv_view(const char* op, const char* name, const TensorView& v, const TensorView& x,
                     std::initializer_list<int64_t> shape, DType dtype, bool optional) {
  if (optional && !v.defined()) return;
  FASTRNN_CHECK(v.defined(), op, ": ", name, " is required");
  FASTRNN_CHECK(v.device == x.device && v.device_index == x.device_index, op, ": ", name,
                " must be on the same device as the input");
  FASTRNN_CHECK(v.dtype == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ", dtype_name(v.dtype));
  bool same = v.ndim == static_cast<int>(shape.size());
  int d = 0;
  for (int64_t size : shape) same = same && v.sizes[d++] == size;
  FASTRNN_CHECK(same, op, ": ", name, " must have shape ", shape_text(shape), ", got ", v.shape_str());
  FASTRNN_CHECK(v.is_contiguous(), op, ": ", name, " must be contiguous");
  FASTRNN_CHECK(v.data != nullptr || v.numel() == 0, op, ": ", name, " has no data");
}

}  // namespace fastrnn
