// Conv2d and the fused conv + ReLU + 2x2 max-pool block on the CPU: workspace size, forward,
// backward. Arrays become views, the GIL is released, the core checks and runs the call
// (cpu/conv.h); geometry as (stride_h, stride_w), (pad_h, pad_w) top/left,
// (dilation_h, dilation_w), groups.
#include "cpu/conv.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <utility>

#include "bindings/view.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

using Pair = std::array<int64_t, 2>;

ConvGeometry geometry(const Pair& stride, const Pair& padding, const Pair& dilation, int64_t groups) {
  ConvGeometry g;
  g.stride_h = stride[0], g.stride_w = stride[1], g.pad_h = padding[0], g.pad_w = padding[1];
  g.dilation_h = dilation[0], g.dilation_w = dilation[1], g.groups = groups;
  return g;
}

// One array argument of a call: its Python name and where it goes in the core's arguments.
struct ViewField {
  const char* name;
  TensorView cpu::ConvArgs::* member;
};

template <size_t>
using Handle = py::handle;

// Registers `name` as core(ConvArgs) over the arrays `fields` (positional, in that order), then
// with `sized` the conv's output size (out_h, out_w), then the geometry.
template <bool Sized, size_t N, size_t... I>
void def_call(py::module_& m, const char* name, void (*core)(const cpu::ConvArgs&),
              const std::array<ViewField, N>& fields, std::index_sequence<I...>) {
  auto call = [core, fields](Handle<I>... arrays, int64_t out_h, int64_t out_w, Pair stride, Pair padding,
                             Pair dilation, int64_t groups) {
    cpu::ConvArgs a;
    ((a.*(fields[I].member) = to_view(arrays, fields[I].name)), ...);
    a.out_height = out_h, a.out_width = out_w;
    a.geometry = geometry(stride, padding, dilation, groups);
    py::gil_scoped_release release;
    core(a);
  };
  auto geometry_args = [&](auto... before) {
    return std::make_tuple(before..., py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  };
  if constexpr (Sized) {
    std::apply([&](auto... args) { m.def(name, call, args...); },
               geometry_args(py::arg(fields[I].name)..., py::arg("out_h"), py::arg("out_w")));
  } else {
    auto plain = [call](Handle<I>... arrays, Pair stride, Pair padding, Pair dilation, int64_t groups) {
      call(arrays..., 0, 0, stride, padding, dilation, groups);
    };
    std::apply([&](auto... args) { m.def(name, plain, args...); }, geometry_args(py::arg(fields[I].name)...));
  }
}

template <bool Sized, size_t N>
void def_call(py::module_& m, const char* name, void (*core)(const cpu::ConvArgs&),
              const std::array<ViewField, N>& fields) {
  def_call<Sized>(m, name, core, fields, std::make_index_sequence<N>());
}

using A = cpu::ConvArgs;

}  // namespace

void register_conv(py::module_& m) {
  m.def(
      "conv_workspace_bytes",
      [](int op, const std::string& dtype, std::array<int64_t, 4> x_shape, std::array<int64_t, 4> weight_shape,
         int64_t out_h, int64_t out_w, Pair stride, Pair padding, Pair dilation, int64_t groups) {
        TensorView x, w;
        x.ndim = w.ndim = 4;
        for (int d = 0; d < 4; ++d) x.sizes[d] = x_shape[d], w.sizes[d] = weight_shape[d];
        return cpu::conv_workspace_bytes(static_cast<cpu::ConvOp>(op),
                                         dtype == "float64" ? DType::Float64 : DType::Float32, x, w, out_h, out_w,
                                         geometry(stride, padding, dilation, groups));
      },
      py::arg("op"), py::arg("dtype"), py::arg("x_shape"), py::arg("weight_shape"), py::arg("out_h"), py::arg("out_w"),
      py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  // Each call's arrays, in the order Python passes them.
  // clang-format off
  const std::array<ViewField, 5> forward{{{"x", &A::x}, {"weight", &A::weight}, {"bias", &A::bias}, {"y", &A::y},
                                          {"workspace", &A::workspace}}};
  const std::array<ViewField, 7> backward{{{"dy", &A::dy}, {"x", &A::x}, {"weight", &A::weight}, {"dx", &A::dx},
                                           {"dweight", &A::dweight}, {"dbias", &A::dbias}, {"workspace", &A::workspace}}};
  const std::array<ViewField, 6> pool_forward{{{"x", &A::x}, {"weight", &A::weight}, {"bias", &A::bias}, {"y", &A::y},
                                               {"indices", &A::indices}, {"workspace", &A::workspace}}};
  const std::array<ViewField, 9> pool_backward{{{"dy", &A::dy}, {"y", &A::y}, {"indices", &A::indices}, {"x", &A::x},
                                                {"weight", &A::weight}, {"dx", &A::dx}, {"dweight", &A::dweight},
                                                {"dbias", &A::dbias}, {"workspace", &A::workspace}}};
  // clang-format on
  // y (N, C_out, out_h, out_w) = conv(x, weight) + bias
  def_call<false>(m, "conv2d_forward", cpu::conv2d_forward, forward);
  // dx, dweight, dbias (None: not wanted) from dy (N, C_out, out_h, out_w)
  def_call<false>(m, "conv2d_backward", cpu::conv2d_backward, backward);
  // y, indices (N, C_out, out_h / 2, out_w / 2) = maxpool2x2(relu(conv(x, weight) + bias)), and
  // their gradients; out_h, out_w: the conv's output size.
  def_call<true>(m, "conv_relu_pool2d_forward", cpu::conv_relu_pool2d_forward, pool_forward);
  def_call<true>(m, "conv_relu_pool2d_backward", cpu::conv_relu_pool2d_backward, pool_backward);
}

}  // namespace fastrnn::bindings
