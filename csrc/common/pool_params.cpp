#include "common/pool_params.h"

#include "common/error.h"

namespace fastrnn {

Pool2dShape check_pool2d(const char* op, const Pool2dParams& p, const TensorView& full, const TensorView& pooled,
                         const TensorView& indices, bool half_types, bool window_slots) {
  FASTRNN_CHECK(p.kernel_h > 0 && p.kernel_w > 0, op, ": kernel size should be greater than zero, but got kH: ",
                p.kernel_h, " kW: ", p.kernel_w);
  FASTRNN_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride should be greater than zero, but got dH: ",
                p.stride_h, " dW: ", p.stride_w);
  FASTRNN_CHECK(p.dilation_h > 0 && p.dilation_w > 0, op,
                ": dilation should be greater than zero, but got dilationH: ", p.dilation_h,
                " dilationW: ", p.dilation_w);
  // A window never lies wholly in the padding: every output has an input element.
  FASTRNN_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && 2 * p.pad_h <= (p.kernel_h - 1) * p.dilation_h + 1 &&
                    2 * p.pad_w <= (p.kernel_w - 1) * p.dilation_w + 1,
                op, ": pad should be at most half of effective kernel size");
  FASTRNN_CHECK(full.defined() && pooled.defined(), op, ": input and output are required");
  FASTRNN_CHECK(full.ndim == 3 || full.ndim == 4, op, ": expected a 3D or 4D input, got ", full.shape_str());
  const DType dtype = full.dtype;
  const bool floating = dtype == DType::Float32 || dtype == DType::Float64 ||
                        (half_types && (dtype == DType::Float16 || dtype == DType::BFloat16));
  FASTRNN_CHECK(floating, op, ": dtype ", dtype_name(dtype), " is not supported");
  Pool2dShape s;
  const int nd = full.ndim;
  s.height = full.sizes[nd - 2];
  s.width = full.sizes[nd - 1];
  s.planes = full.sizes[nd - 3] * (nd == 4 ? full.sizes[0] : 1);
  FASTRNN_CHECK(s.height > 0 && s.width > 0 && full.sizes[nd - 3] > 0, op, ": empty input planes ",
                full.shape_str());
  s.out_height = pool_output_size(s.height, p.kernel_h, p.pad_h, p.stride_h, p.dilation_h, p.ceil_mode);
  s.out_width = pool_output_size(s.width, p.kernel_w, p.pad_w, p.stride_w, p.dilation_w, p.ceil_mode);
  FASTRNN_CHECK(s.out_height >= 1 && s.out_width >= 1, op, ": output size is too small for input ",
                full.shape_str());
  auto same_place = [&](const char* name, const TensorView& v, DType want) {
    FASTRNN_CHECK(v.device == full.device && v.device_index == full.device_index, op, ": ", name,
                  " is on another device than the input");
    FASTRNN_CHECK(v.dtype == want, op, ": expected ", name, " of dtype ", dtype_name(want), ", got ",
                  dtype_name(v.dtype));
    FASTRNN_CHECK(v.is_contiguous() && (v.data != nullptr || v.numel() == 0), op, ": expected ", name,
                  " to be contiguous");
    bool shape = v.ndim == nd && v.sizes[nd - 2] == s.out_height && v.sizes[nd - 1] == s.out_width;
    for (int d = 0; shape && d < nd - 2; ++d) shape = v.sizes[d] == full.sizes[d];
    FASTRNN_CHECK(shape, op, ": expected ", name, " of the pooled size (", s.out_height, ", ", s.out_width,
                  ") over the input's planes ", full.shape_str(), ", got ", v.shape_str());
  };
  FASTRNN_CHECK(full.is_contiguous() && (full.data != nullptr || full.numel() == 0), op,
                ": expected the input to be contiguous");
  same_place("output", pooled, dtype);
  if (indices.defined()) {
    const bool slots = window_slots && indices.dtype == DType::UInt8;
    FASTRNN_CHECK(!slots || p.kernel_h * p.kernel_w <= kMaxWindowSlots, op,
                  ": uint8 indices (window slots) need a window of at most ", kMaxWindowSlots, " elements, got ",
                  p.kernel_h, "x", p.kernel_w);
    same_place("indices", indices, slots ? DType::UInt8 : DType::Int64);
  }
  return s;
}

}  // namespace fastrnn
