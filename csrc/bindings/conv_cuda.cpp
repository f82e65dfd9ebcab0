// CUDA Conv2d and the fused conv + bias + ReLU + 2x2 max pool: tensors as DLPack capsules,
// geometry as (h, w) pairs, the caller's stream as an int. Registered in every build; without
// CUDA each function raises RuntimeError (bindings/device.h). The core checks every view (cuda/conv.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <tuple>

#include "bindings/device.h"
#include "bindings/view.h"
#include "common/error.h"
#include "cuda/conv.h"

namespace fastrnn::bindings {
namespace py = pybind11;
namespace {

// The arguments every CUDA conv call ends with, after its arrays; sizes as (h, w).
using Size2 = std::array<int64_t, 2>;
struct Geometry {
  Size2 stride, padding, dilation;
  int64_t groups;
  bool allow_tf32;
  uintptr_t stream;
};

// Their Python names; `before` come first (the arrays, relu).
template <typename... Before>
auto geometry_args(Before... before) {
  return std::make_tuple(before..., py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
                         py::arg("allow_tf32"), py::arg("stream"));
}

template <typename F, typename Args>
void def(py::module_& m, const char* name, const F& fn, const Args& args, const char* doc) {
  std::apply([&](auto... a) { m.def(name, fn, a..., doc); }, args);
}

// Sizes from x (N, C, H, W) and weight (K, C/groups, R, S), the output's from the geometry;
// the core checks every view.
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
  FASTRNN_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.dilation_h > 0 && p.dilation_w > 0,
                "conv2d: stride and dilation must be positive");
  p.P = (p.H + 2 * p.pad_h - p.dilation_h * (p.R - 1) - 1) / p.stride_h + 1;
  p.Q = (p.W + 2 * p.pad_w - p.dilation_w * (p.S - 1) - 1) / p.stride_w + 1;
  p.allow_tf32 = g.allow_tf32;
  p.stream = g.stream;
  return p;
}

// Runs fill(params) and then core(params) with the GIL released.
template <typename Core, typename Fill>
void run(Core core, py::handle x, py::handle weight, const Geometry& g, const Fill& fill) {
  cuda::Conv2dParams p = make_params(x, weight, g);
  fill(p);
  py::gil_scoped_release release;
  core(p);
}
// The CUDA core named only inside cuda_only's lambda: a build without CUDA raises no_cuda().
#define FASTRNN_CONV_RUN(core, ...) \
  cuda_only("conv2d (CUDA)", [&] { run(core, x, weight, g, [&](cuda::Conv2dParams& p) { __VA_ARGS__; }); })

}  // namespace

void register_conv_cuda(py::module_& m) {
  def(
      m, "conv2d_cuda_forward",
      [](py::handle x, py::handle weight, py::handle bias, py::handle y, Size2 stride, Size2 padding, Size2 dilation,
         int64_t groups, bool relu, bool allow_tf32, uintptr_t stream) {
        const Geometry g{stride, padding, dilation, groups, allow_tf32, stream};
        FASTRNN_CONV_RUN(cuda::conv2d_forward, p.bias = to_view(bias, "bias"); p.y = to_view(y, "output");
                         p.relu = relu);
      },
      std::make_tuple(py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("stride"),
                      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("relu"),
                      py::arg("allow_tf32"), py::arg("stream")),
      "y = conv2d(x, weight) + bias (then ReLU when relu), on the given CUDA stream.");
  def(
      m, "conv2d_cuda_backward_input",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dx, Size2 stride, Size2 padding, Size2 dilation,
         int64_t groups, bool allow_tf32, uintptr_t stream) {
        const Geometry g{stride, padding, dilation, groups, allow_tf32, stream};
        FASTRNN_CONV_RUN(cuda::conv2d_backward_input, p.dy = to_view(dy, "grad_output");
                         p.dx = to_view(dx, "grad_input"));
      },
      geometry_args(py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dx")),
      "dx from dy and weight (x gives the sizes and device; its values are not read).");
  m.def(
      "conv2d_cuda_backward_weight_workspace_bytes",
      [](py::handle x, py::handle weight, Size2 stride, Size2 padding, Size2 dilation, int64_t groups,
         bool allow_tf32) -> int64_t {
        int64_t bytes = 0;
        const Geometry g{stride, padding, dilation, groups, allow_tf32, 0};
        FASTRNN_CONV_RUN([&](const auto& params) { bytes = cuda::conv2d_backward_weight_workspace_bytes(params); },
                         (void)p);
        return bytes;
      },
      py::arg("x"), py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
      py::arg("allow_tf32"), "Bytes of workspace the weight gradient needs (of conv2d and of the fused block alike).");
  def(
      m, "conv2d_cuda_backward_weight",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dweight, py::handle dbias, py::handle workspace,
         Size2 stride, Size2 padding, Size2 dilation, int64_t groups, bool allow_tf32, uintptr_t stream) {
        const Geometry g{stride, padding, dilation, groups, allow_tf32, stream};
        FASTRNN_CONV_RUN(cuda::conv2d_backward_weight, p.dy = to_view(dy, "grad_output");
                         p.dweight = to_view(dweight, "grad_weight"); p.dbias = to_view(dbias, "grad_bias");
                         p.workspace = to_view(workspace, "workspace"));
      },
      geometry_args(py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dweight"), py::arg("dbias"),
                    py::arg("workspace")),
      "dweight and/or dbias (None to skip) from dy and x.");
  def(
      m, "conv_relu_pool2d_cuda_forward",
      [](py::handle x, py::handle weight, py::handle bias, py::handle y, py::handle argmax, Size2 stride, Size2 padding,
         Size2 dilation, int64_t groups, bool allow_tf32, uintptr_t stream) {
        const Geometry g{stride, padding, dilation, groups, allow_tf32, stream};
        FASTRNN_CONV_RUN(cuda::conv_relu_pool2d_forward, p.bias = to_view(bias, "bias"); p.y = to_view(y, "output");
                         p.argmax = to_view(argmax, "argmax"));
      },
      geometry_args(py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("argmax")),
      "y = max_pool2d(relu(conv2d(x, weight) + bias), 2) and the uint8 argmax (2 * dp + dq) of each window.");
  def(
      m, "conv_relu_pool2d_cuda_backward",
      [](py::handle dy, py::handle y, py::handle argmax, py::handle x, py::handle weight, py::handle dx,
         py::handle dweight, py::handle dbias, py::handle workspace, Size2 stride, Size2 padding, Size2 dilation,
         int64_t groups, bool allow_tf32, uintptr_t stream) {
        const Geometry g{stride, padding, dilation, groups, allow_tf32, stream};
        FASTRNN_CONV_RUN(cuda::conv_relu_pool2d_backward, p.dy = to_view(dy, "grad_output"); p.y = to_view(y, "output");
                         p.argmax = to_view(argmax, "argmax"); p.dx = to_view(dx, "grad_input");
                         p.dweight = to_view(dweight, "grad_weight"); p.dbias = to_view(dbias, "grad_bias");
                         p.workspace = to_view(workspace, "workspace"));
      },
      geometry_args(py::arg("dy"), py::arg("y"), py::arg("argmax"), py::arg("x"), py::arg("weight"), py::arg("dx"),
                    py::arg("dweight"), py::arg("dbias"), py::arg("workspace")),
      "dx, dweight, dbias (None to skip) of the fused block from the pooled gradient, output and argmax.");
}

}  // namespace fastrnn::bindings
