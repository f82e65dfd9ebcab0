// CUDA Conv2d and the fused conv + bias + ReLU + 2x2 max pool: tensors as DLPack capsules,
// geometry as (h, w) pairs, the caller's stream as an int. Registered in every build; without
// CUDA each function raises RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings/view.h"
#include "common/error.h"
#if defined(FASTRNN_WITH_CUDA)
#include "cuda/conv.h"
#endif

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

using Pair = std::array<int64_t, 2>;

struct Geometry {
  Pair stride, padding, dilation;
  int64_t groups;
  bool allow_tf32;
  uintptr_t stream;
};

#if defined(FASTRNN_WITH_CUDA)
// Sizes from x (N, C, H, W) and weight (K, C/groups, R, S); the core checks every view.
cuda::Conv2dParams make_params(py::handle x, py::handle weight, const Geometry& g) {
  cuda::Conv2dParams p;
  p.x = to_view(x, "input");
  p.weight = to_view(weight, "weight");
  FASTRNN_CHECK(p.x.ndim == 4 && p.weight.ndim == 4, "conv2d: input and weight must be 4-D, got ", p.x.shape_str(),
                " and ", p.weight.shape_str());
  p.N = p.x.sizes[0], p.C = p.x.sizes[1], p.H = p.x.sizes[2], p.W = p.x.sizes[3];
  p.K = p.weight.sizes[0], p.R = p.weight.sizes[2], p.S = p.weight.sizes[3];
  p.stride_h = int(g.stride[0]), p.stride_w = int(g.stride[1]);
  p.pad_h = int(g.padding[0]), p.pad_w = int(g.padding[1]);
  p.dilation_h = int(g.dilation[0]), p.dilation_w = int(g.dilation[1]);
  p.groups = int(g.groups);
  FASTRNN_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.dilation_h > 0 && p.dilation_w > 0, "conv2d: stride and dilation must be positive");
  p.P = (p.H + 2 * p.pad_h - p.dilation_h * (p.R - 1) - 1) / p.stride_h + 1;
  p.Q = (p.W + 2 * p.pad_w - p.dilation_w * (p.S - 1) - 1) / p.stride_w + 1;
  p.allow_tf32 = g.allow_tf32;
  p.stream = g.stream;
  return p;
}
#define FASTRNN_CONV_BODY(...) __VA_ARGS__
#else
#define FASTRNN_CONV_BODY(...) FASTRNN_CHECK(false, "fastrnn was built without CUDA: CUDA convolutions are unavailable")
#endif

Geometry geometry(Pair stride, Pair padding, Pair dilation, int64_t groups, bool allow_tf32, uintptr_t stream) {
  return Geometry{stride, padding, dilation, groups, allow_tf32, stream};
}

}  // namespace

void register_conv_cuda(py::module_& m) {
  m.def(
      "conv2d_cuda_forward",
      [](py::handle x, py::handle weight, py::handle bias, py::handle y, Pair stride, Pair padding, Pair dilation,
         int64_t groups, bool relu, bool allow_tf32, uintptr_t stream) {
        FASTRNN_CONV_BODY(cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, stream));
                          p.bias = to_view(bias, "bias"); p.y = to_view(y, "output"); p.relu = relu;
                          py::gil_scoped_release release; cuda::conv2d_forward(p));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("relu"), py::arg("allow_tf32"), py::arg("stream"),
      "y = conv2d(x, weight) + bias (then ReLU when relu), on the given CUDA stream.");
  m.def(
      "conv2d_cuda_backward_input",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dx, Pair stride, Pair padding, Pair dilation,
         int64_t groups, bool allow_tf32, uintptr_t stream) {
        FASTRNN_CONV_BODY(cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, stream));
                          p.dy = to_view(dy, "grad_output"); p.dx = to_view(dx, "grad_input");
                          py::gil_scoped_release release; cuda::conv2d_backward_input(p));
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dx"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("allow_tf32"), py::arg("stream"),
      "dx from dy and weight (x gives the sizes and device; its values are not read).");
  m.def(
      "conv2d_cuda_backward_weight_workspace_bytes",
      [](py::handle x, py::handle weight, Pair stride, Pair padding, Pair dilation, int64_t groups, bool allow_tf32) -> int64_t {
        FASTRNN_CONV_BODY(const cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, 0));
                          return cuda::conv2d_backward_weight_workspace_bytes(p));
        return 0;
      },
      py::arg("x"), py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
      py::arg("allow_tf32"),
      "Bytes of workspace the weight gradient needs (of conv2d and of the fused block alike).");
  m.def(
      "conv2d_cuda_backward_weight",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dweight, py::handle dbias, py::handle workspace,
         Pair stride, Pair padding, Pair dilation, int64_t groups, bool allow_tf32, uintptr_t stream) {
        FASTRNN_CONV_BODY(cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, stream));
                          p.dy = to_view(dy, "grad_output"); p.dweight = to_view(dweight, "grad_weight");
                          p.dbias = to_view(dbias, "grad_bias"); p.workspace = to_view(workspace, "workspace");
                          py::gil_scoped_release release; cuda::conv2d_backward_weight(p));
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dweight"), py::arg("dbias"), py::arg("workspace"),
      py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("allow_tf32"),
      py::arg("stream"), "dweight and/or dbias (None to skip) from dy and x.");
  m.def(
      "conv_relu_pool2d_cuda_forward",
      [](py::handle x, py::handle weight, py::handle bias, py::handle y, py::handle argmax, Pair stride, Pair padding,
         Pair dilation, int64_t groups, bool allow_tf32, uintptr_t stream) {
        FASTRNN_CONV_BODY(cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, stream));
                          p.bias = to_view(bias, "bias"); p.y = to_view(y, "output"); p.argmax = to_view(argmax, "argmax");
                          py::gil_scoped_release release; cuda::conv_relu_pool2d_forward(p));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("argmax"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("allow_tf32"), py::arg("stream"),
      "y = max_pool2d(relu(conv2d(x, weight) + bias), 2) and the uint8 argmax (2 * dp + dq) of each window.");
  m.def(
      "conv_relu_pool2d_cuda_backward",
      [](py::handle dy, py::handle y, py::handle argmax, py::handle x, py::handle weight, py::handle dx,
         py::handle dweight, py::handle dbias, py::handle workspace, Pair stride, Pair padding, Pair dilation,
         int64_t groups, bool allow_tf32, uintptr_t stream) {
        FASTRNN_CONV_BODY(cuda::Conv2dParams p = make_params(x, weight, geometry(stride, padding, dilation, groups, allow_tf32, stream));
                          p.dy = to_view(dy, "grad_output"); p.y = to_view(y, "output"); p.argmax = to_view(argmax, "argmax");
                          p.dx = to_view(dx, "grad_input"); p.dweight = to_view(dweight, "grad_weight");
                          p.dbias = to_view(dbias, "grad_bias"); p.workspace = to_view(workspace, "workspace");
                          py::gil_scoped_release release; cuda::conv_relu_pool2d_backward(p));
      },
      py::arg("dy"), py::arg("y"), py::arg("argmax"), py::arg("x"), py::arg("weight"), py::arg("dx"), py::arg("dweight"),
      py::arg("dbias"), py::arg("workspace"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("allow_tf32"), py::arg("stream"),
      "dx, dweight, dbias (None to skip) of the fused block from the pooled gradient, output and argmax.");
}

}  // namespace fastrnn::bindings
