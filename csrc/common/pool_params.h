#pragma once
// What a 2-d pooling kernel receives, and the window arithmetic shared by the CPU and CUDA
// back ends, with torch's rules: output size (ceil_mode's last window must start inside the
// input or the left padding), clipped windows, the average's divisor.
#include <cstdint>

#include "common/macros.h"
#include "common/tensor_view.h"

namespace fastrnn {

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;  // max pool only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg pool only
  int64_t divisor_override = 0;   // avg pool only; 0: none
};

// Planes P = N*C (or C unbatched), each (H, W) in, (OH, OW) out, contiguous.
struct Pool2dShape {
  int64_t planes = 0, height = 0, width = 0, out_height = 0, out_width = 0;
};

// torch's output size along one dimension (may be < 1 for bad arguments: the caller checks).
FASTRNN_HOST_DEVICE int64_t pool_output_size(int64_t input, int64_t kernel, int64_t pad, int64_t stride,
                                             int64_t dilation, bool ceil_mode) {
  const int64_t span = input + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // Division rounding towards negative infinity.
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= input + pad) --out;
  return out;
}

// The first input index of output `o`'s window that lies inside [0, size), stepping by
// dilation from the (possibly negative) window start; `last` is one past the last such index.
struct WindowRange {
  int64_t first, last;
};
FASTRNN_HOST_DEVICE WindowRange max_window(int64_t o, int64_t kernel, int64_t pad, int64_t stride,
                                           int64_t dilation, int64_t size) {
  int64_t start = o * stride - pad;
  int64_t end = start + (kernel - 1) * dilation + 1;
  end = end < size ? end : size;
  if (start < 0) start += ((-start + dilation - 1) / dilation) * dilation;
  return {start, end};
}

// Average pool: the clipped window [first, last) along one dimension and its unclipped size
// (the window clipped only to the padded input, which count_include_pad divides by).
struct AvgWindow {
  int64_t first, last, padded;
};
FASTRNN_HOST_DEVICE AvgWindow avg_window(int64_t o, int64_t kernel, int64_t pad, int64_t stride, int64_t size) {
  const int64_t start = o * stride - pad;
  int64_t end = start + kernel;
  end = end < size + pad ? end : size + pad;
  const int64_t padded = end - start;
  return {start > 0 ? start : 0, end < size ? end : size, padded};
}

FASTRNN_HOST_DEVICE int64_t avg_divisor(const Pool2dParams& p, const AvgWindow& h, const AvgWindow& w) {
  if (p.divisor_override != 0) return p.divisor_override;
  return p.count_include_pad ? h.padded * w.padded : (h.last - h.first) * (w.last - w.first);
}

// Checks the parameters and views and returns the shape. `full`: the input-sized view (input,
// or grad_input in backward), (N, C, H, W) or (C, H, W); `pooled`: the output-sized one (output
// or grad_output); `indices` (optional): int64 of the pooled shape, or with window_slots also
// uint8 window slots (see below). All contiguous, on one device, of one floating dtype: float32 or
// float64, and float16 or bfloat16 too when half_types.
Pool2dShape check_pool2d(const char* op, const Pool2dParams& p, const TensorView& full, const TensorView& pooled,
                         const TensorView& indices, bool half_types, bool window_slots = false);

// A max pool's argmax as a window slot: kh * kernel_w + kw, its place in the (unclipped, dilated)
// window, one byte (windows of at most kMaxWindowSlots elements). Training keeps these instead of
// int64 flat positions when the caller does not ask for indices: 1/8 of the bytes to write and read.
constexpr int64_t kMaxWindowSlots = 256;

}  // namespace fastrnn
