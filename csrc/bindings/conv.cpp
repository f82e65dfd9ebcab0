// Conv2d and the fused conv + ReLU + 2x2 max-pool block: workspace size, forward, backward.
// Arrays arrive 4-D and contiguous (fastrnn._conv validates and reshapes); geometry as
// (stride_h, stride_w), (pad_h, pad_w) top/left, (dilation_h, dilation_w), groups. The GIL is
// released while a kernel runs.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "bindings/view.h"
#include "common/dispatch.h"
#include "common/error.h"
#include "cpu/conv.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

using Pair = std::array<int64_t, 2>;

cpu::ConvShape make_shape(const TensorView& x, const TensorView& weight, int64_t out_h, int64_t out_w,
                          const Pair& stride, const Pair& padding, const Pair& dilation, int64_t groups) {
  FASTRNN_CHECK(x.ndim == 4 && weight.ndim == 4, "conv2d: x and weight must be 4-D");
  cpu::ConvShape s;
  s.batch = x.sizes[0], s.in_channels = x.sizes[1], s.height = x.sizes[2], s.width = x.sizes[3];
  s.out_channels = weight.sizes[0], s.kernel_h = weight.sizes[2], s.kernel_w = weight.sizes[3];
  s.out_height = out_h, s.out_width = out_w;
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1], s.groups = groups;
  FASTRNN_CHECK(groups > 0 && weight.sizes[1] * groups == s.in_channels && s.out_channels % groups == 0,
                "conv2d: weight ", weight.shape_str(), " does not match input ", x.shape_str(), " with groups ",
                groups);
  return s;
}

void check_array(const TensorView& v, DType dtype, const char* name) {
  FASTRNN_CHECK(v.defined() && v.device == DeviceType::CPU && v.is_contiguous(), "conv2d: ", name,
                " must be a contiguous CPU array");
  FASTRNN_CHECK(v.dtype == dtype, "conv2d: ", name, " has dtype ", dtype_name(v.dtype), ", expected ",
                dtype_name(dtype));
}

void check_optional(const TensorView& v, DType dtype, const char* name) {
  if (v.defined()) check_array(v, dtype, name);
}

void check_sizes(const TensorView& v, std::initializer_list<int64_t> sizes, const char* name) {
  bool ok = v.ndim == static_cast<int>(sizes.size());
  int d = 0;
  for (int64_t n : sizes) ok = ok && v.sizes[d++] == n;
  FASTRNN_CHECK(ok, "conv2d: ", name, " has shape ", v.shape_str(), ", which does not match the convolution");
}

// The workspace handed in, 64-byte aligned, for as many threads as it has room for.
cpu::ConvWorkspace workspace(const TensorView& w, const cpu::ConvShape& s, DType dtype, cpu::ConvOp op) {
  FASTRNN_CHECK(w.defined() && w.device == DeviceType::CPU && w.is_contiguous(), "conv2d: bad workspace");
  const auto raw = reinterpret_cast<uintptr_t>(w.data);
  cpu::ConvWorkspace ws;
  ws.data = reinterpret_cast<char*>((raw + 63) / 64 * 64);
  ws.bytes = w.nbytes() - (ws.data - static_cast<char*>(w.data));
  int threads = omp_get_max_threads();
  while (threads > 1 && cpu::conv_workspace_bytes(s, dtype, op, threads) > ws.bytes) --threads;
  ws.threads = threads;
  return ws;
}

}  // namespace

void register_conv(py::module_& m) {
  m.def(
      "conv_workspace_bytes",
      [](int op, const std::string& dtype, std::array<int64_t, 4> x_shape, std::array<int64_t, 4> weight_shape,
         int64_t out_h, int64_t out_w, Pair stride, Pair padding, Pair dilation, int64_t groups) {
        TensorView x, w;
        x.ndim = w.ndim = 4;
        for (int d = 0; d < 4; ++d) x.sizes[d] = x_shape[d], w.sizes[d] = weight_shape[d];
        const cpu::ConvShape s = make_shape(x, w, out_h, out_w, stride, padding, dilation, groups);
        const DType dt = dtype == "float64" ? DType::Float64 : DType::Float32;
        return cpu::conv_workspace_bytes(s, dt, static_cast<cpu::ConvOp>(op), omp_get_max_threads()) + 64;
      },
      py::arg("op"), py::arg("dtype"), py::arg("x_shape"), py::arg("weight_shape"), py::arg("out_h"),
      py::arg("out_w"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));

  // y (N, C_out, out_h, out_w) = conv(x, weight) + bias
  m.def(
      "conv2d_forward",
      [](py::handle x_obj, py::handle weight_obj, py::handle bias_obj, py::handle y_obj, py::handle ws_obj,
         Pair stride, Pair padding, Pair dilation, int64_t groups) {
        const TensorView x = to_view(x_obj, "x"), w = to_view(weight_obj, "weight"), b = to_view(bias_obj, "bias"),
                         y = to_view(y_obj, "y"), work = to_view(ws_obj, "workspace");
        check_array(x, x.dtype, "x");
        check_array(w, x.dtype, "weight");
        check_optional(b, x.dtype, "bias");
        check_array(y, x.dtype, "y");
        FASTRNN_CHECK(y.ndim == 4, "conv2d: y must be 4-D");
        const cpu::ConvShape s = make_shape(x, w, y.sizes[2], y.sizes[3], stride, padding, dilation, groups);
        check_sizes(y, {s.batch, s.out_channels, s.out_height, s.out_width}, "y");
        if (b.defined()) check_sizes(b, {s.out_channels}, "bias");
        const cpu::ConvWorkspace ws = workspace(work, s, x.dtype, cpu::ConvOp::Forward);
        py::gil_scoped_release release;
        FASTRNN_DISPATCH_FLOATING(x.dtype, "conv2d_forward", [&] {
          cpu::conv2d_forward<scalar_t>(s, x.data_as<scalar_t>(), w.data_as<scalar_t>(),
                                        b.defined() ? b.data_as<scalar_t>() : nullptr, y.data_as<scalar_t>(), ws);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("workspace"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"));

  // dx, dweight, dbias (None: not wanted) from dy (N, C_out, out_h, out_w)
  m.def(
      "conv2d_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle dx_obj, py::handle dw_obj,
         py::handle db_obj, py::handle ws_obj, Pair stride, Pair padding, Pair dilation, int64_t groups) {
        const TensorView dy = to_view(dy_obj, "dy"), x = to_view(x_obj, "x"), w = to_view(weight_obj, "weight"),
                         dx = to_view(dx_obj, "dx"), dw = to_view(dw_obj, "dweight"), db = to_view(db_obj, "dbias"),
                         work = to_view(ws_obj, "workspace");
        check_array(x, x.dtype, "x");
        check_array(w, x.dtype, "weight");
        check_array(dy, x.dtype, "dy");
        FASTRNN_CHECK(dy.ndim == 4, "conv2d: dy must be 4-D");
        const cpu::ConvShape s = make_shape(x, w, dy.sizes[2], dy.sizes[3], stride, padding, dilation, groups);
        check_sizes(dy, {s.batch, s.out_channels, s.out_height, s.out_width}, "dy");
        check_optional(dx, x.dtype, "dx");
        check_optional(dw, x.dtype, "dweight");
        check_optional(db, x.dtype, "dbias");
        if (dx.defined()) check_sizes(dx, {s.batch, s.in_channels, s.height, s.width}, "dx");
        if (dw.defined()) check_sizes(dw, {s.out_channels, w.sizes[1], s.kernel_h, s.kernel_w}, "dweight");
        if (db.defined()) check_sizes(db, {s.out_channels}, "dbias");
        const cpu::ConvWorkspace ws = workspace(work, s, x.dtype, cpu::ConvOp::Backward);
        py::gil_scoped_release release;
        FASTRNN_DISPATCH_FLOATING(x.dtype, "conv2d_backward", [&] {
          auto ptr = [](const TensorView& v) { return v.defined() ? v.data_as<scalar_t>() : nullptr; };
          cpu::conv2d_backward<scalar_t>(s, dy.data_as<scalar_t>(), x.data_as<scalar_t>(), w.data_as<scalar_t>(),
                                         ptr(dx), ptr(dw), ptr(db), ws);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dx"), py::arg("dweight"), py::arg("dbias"),
      py::arg("workspace"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));

  // y, indices (N, C_out, out_h / 2, out_w / 2) = maxpool2x2(relu(conv(x, weight) + bias));
  // out_h, out_w: the conv's output size.
  m.def(
      "conv_relu_pool2d_forward",
      [](py::handle x_obj, py::handle weight_obj, py::handle bias_obj, py::handle y_obj, py::handle idx_obj,
         py::handle ws_obj, int64_t out_h, int64_t out_w, Pair stride, Pair padding, Pair dilation, int64_t groups) {
        const TensorView x = to_view(x_obj, "x"), w = to_view(weight_obj, "weight"), b = to_view(bias_obj, "bias"),
                         y = to_view(y_obj, "y"), idx = to_view(idx_obj, "indices"),
                         work = to_view(ws_obj, "workspace");
        check_array(x, x.dtype, "x");
        check_array(w, x.dtype, "weight");
        check_optional(b, x.dtype, "bias");
        check_array(y, x.dtype, "y");
        check_array(idx, DType::Int64, "indices");
        const cpu::ConvShape s = make_shape(x, w, out_h, out_w, stride, padding, dilation, groups);
        check_sizes(y, {s.batch, s.out_channels, out_h / 2, out_w / 2}, "y");
        check_sizes(idx, {s.batch, s.out_channels, out_h / 2, out_w / 2}, "indices");
        if (b.defined()) check_sizes(b, {s.out_channels}, "bias");
        const cpu::ConvWorkspace ws = workspace(work, s, x.dtype, cpu::ConvOp::PoolForward);
        py::gil_scoped_release release;
        FASTRNN_DISPATCH_FLOATING(x.dtype, "conv_relu_pool2d_forward", [&] {
          cpu::conv_relu_pool2d_forward<scalar_t>(s, x.data_as<scalar_t>(), w.data_as<scalar_t>(),
                                                  b.defined() ? b.data_as<scalar_t>() : nullptr,
                                                  y.data_as<scalar_t>(), idx.data_as<int64_t>(), ws);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("indices"), py::arg("workspace"),
      py::arg("out_h"), py::arg("out_w"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"));

  m.def(
      "conv_relu_pool2d_backward",
      [](py::handle dy_obj, py::handle y_obj, py::handle idx_obj, py::handle x_obj, py::handle weight_obj,
         py::handle dx_obj, py::handle dw_obj, py::handle db_obj, py::handle ws_obj, int64_t out_h, int64_t out_w,
         Pair stride, Pair padding, Pair dilation, int64_t groups) {
        const TensorView dy = to_view(dy_obj, "dy"), y = to_view(y_obj, "y"), idx = to_view(idx_obj, "indices"),
                         x = to_view(x_obj, "x"), w = to_view(weight_obj, "weight"), dx = to_view(dx_obj, "dx"),
                         dw = to_view(dw_obj, "dweight"), db = to_view(db_obj, "dbias"),
                         work = to_view(ws_obj, "workspace");
        check_array(x, x.dtype, "x");
        check_array(w, x.dtype, "weight");
        check_array(dy, x.dtype, "dy");
        check_array(y, x.dtype, "y");
        check_array(idx, DType::Int64, "indices");
        const cpu::ConvShape s = make_shape(x, w, out_h, out_w, stride, padding, dilation, groups);
        for (const TensorView* v : {&dy, &y, &idx})
          check_sizes(*v, {s.batch, s.out_channels, out_h / 2, out_w / 2}, "pooled gradient");
        check_optional(dx, x.dtype, "dx");
        check_optional(dw, x.dtype, "dweight");
        check_optional(db, x.dtype, "dbias");
        if (dx.defined()) check_sizes(dx, {s.batch, s.in_channels, s.height, s.width}, "dx");
        if (dw.defined()) check_sizes(dw, {s.out_channels, w.sizes[1], s.kernel_h, s.kernel_w}, "dweight");
        if (db.defined()) check_sizes(db, {s.out_channels}, "dbias");
        // The kernel trusts the indices: each must lie in its conv output plane.
        const int64_t* ip = idx.data_as<int64_t>();
        for (int64_t i = 0, n = idx.numel(); i < n; ++i)
          FASTRNN_CHECK(ip[i] >= 0 && ip[i] < out_h * out_w, "conv_relu_pool2d_backward: index out of range");
        const cpu::ConvWorkspace ws = workspace(work, s, x.dtype, cpu::ConvOp::PoolBackward);
        py::gil_scoped_release release;
        FASTRNN_DISPATCH_FLOATING(x.dtype, "conv_relu_pool2d_backward", [&] {
          auto ptr = [](const TensorView& v) { return v.defined() ? v.data_as<scalar_t>() : nullptr; };
          cpu::conv_relu_pool2d_backward<scalar_t>(s, dy.data_as<scalar_t>(), y.data_as<scalar_t>(), ip,
                                                   x.data_as<scalar_t>(), w.data_as<scalar_t>(), ptr(dx), ptr(dw),
                                                   ptr(db), ws);
        });
      },
      py::arg("dy"), py::arg("y"), py::arg("indices"), py::arg("x"), py::arg("weight"), py::arg("dx"),
      py::arg("dweight"), py::arg("dbias"), py::arg("workspace"), py::arg("out_h"), py::arg("out_w"),
      py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
}

}  // namespace fastrnn::bindings
