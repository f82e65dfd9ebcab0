#pragma once
// The checks the CPU and the CUDA convolutions share (NCHW, PyTorch's cross-correlation): one
// shape, one geometry, one check of each view; the CUDA entries add only their device checks
// (the device, 32-bit sizes, torch's exact output size).
#include <initializer_list>

#include "common/tensor_view.h"

namespace fastrnn {

// The geometry of a call besides its arrays' sizes: (h, w) pairs; the padding is the top/left's.
struct ConvGeometry {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

// x (batch, in_channels, height, width), weight (out_channels, in_channels / groups, kernel_h,
// kernel_w), y (batch, out_channels, out_height, out_width). pad_h/pad_w pad the top/left;
// the bottom/right padding is whatever out_height/out_width imply, the same or one more (so
// torch's asymmetric 'same' padding for even kernels is expressed by the output size alone).
struct ConvShape {
  int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  int64_t out_channels = 0, out_height = 0, out_width = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

// Refuses the shapes the kernels are not written for: channels that are not positive multiples
// of groups, an empty kernel, a stride or dilation below 1, negative padding or sizes, and an
// output size the input, kernel and geometry do not give. The Python layer sends torch the
// degenerate ones (no channels, an empty kernel), so here they are only refused.
void check_conv_shape(const char* op, const ConvShape& s);

// The shape of a call from the sizes of x (4-D) and weight (4-D, of the shape x and groups
// imply), the conv's output size and the geometry, checked (check_conv_shape). Only sizes are
// read: the views may be sizes alone (a workspace query).
ConvShape conv_shape(const char* op, const TensorView& x, const TensorView& weight, int64_t out_height,
                     int64_t out_width, const ConvGeometry& g);

// One view of a call: present (or absent when optional), on x's device, of `dtype`, of exactly
// `shape`, contiguous, with data unless empty.
void check_conv_view(const char* op, const char* name, const TensorView& v, const TensorView& x,
                     std::initializer_list<int64_t> shape, DType dtype, bool optional = false);

}  // namespace fastrnn
