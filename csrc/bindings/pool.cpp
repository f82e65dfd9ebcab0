// 2-d max and average pooling, forward and backward. CPU arrays go to the CPU kernels, CUDA
// arrays to the CUDA kernels (when this build has them) on the caller's `stream`. The GIL is
// released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings/view.h"
#include "common/error.h"
#include "common/pool_params.h"
#include "cpu/pool.h"
#if defined(FASTRNN_WITH_CUDA)
#include "cuda/pool.h"
#endif

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

using Pair = std::array<int64_t, 2>;

Pool2dParams make_params(Pair kernel, Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
  Pool2dParams p;
  p.kernel_h = kernel[0], p.kernel_w = kernel[1];
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.ceil_mode = ceil_mode;
  return p;
}

// Runs cpu_fn() for CPU arrays, cuda_fn() for CUDA ones.
template <typename Cpu, typename Cuda>
void on_device(const char* op, const TensorView& first, const Cpu& cpu_fn, const Cuda& cuda_fn) {
  if (first.device == DeviceType::CUDA) {
#if defined(FASTRNN_WITH_CUDA)
    py::gil_scoped_release release;
    cuda_fn();
    return;
#else
    (void)cuda_fn;
    FASTRNN_CHECK(false, op, ": this build of fastrnn has no CUDA kernels (install with FASTRNN_CUDA=ON)");
#endif
  }
  py::gil_scoped_release release;
  cpu_fn();
}

}  // namespace

void register_pool(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](py::handle input, py::handle output, py::handle indices, Pair kernel, Pair stride, Pair padding,
         Pair dilation, bool ceil_mode, uintptr_t stream) {
        const Pool2dParams p = make_params(kernel, stride, padding, dilation, ceil_mode);
        const TensorView x = to_view(input, "input"), y = to_view(output, "output"), i = to_view(indices, "indices");
        (void)stream;
        on_device(
            "max_pool2d_forward", x, [&] { cpu::max_pool2d_forward(p, x, y, i); },
            [&] {
#if defined(FASTRNN_WITH_CUDA)
              cuda::max_pool2d_forward(p, x, y, i, stream);
#endif
            });
      },
      py::arg("input"), py::arg("output"), py::arg("indices"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), py::arg("stream") = 0,
      "output (.., OH, OW) = max over each window of input (N, C, H, W) or (C, H, W); indices (int64 like "
      "output, or None) = the argmax's flat position h * W + w in its plane.");
  m.def(
      "max_pool2d_backward",
      [](py::handle grad_output, py::handle indices, py::handle grad_input, Pair kernel, Pair stride, Pair padding,
         Pair dilation, bool ceil_mode, uintptr_t stream) {
        const Pool2dParams p = make_params(kernel, stride, padding, dilation, ceil_mode);
        const TensorView gy = to_view(grad_output, "grad_output"), i = to_view(indices, "indices"),
                         gx = to_view(grad_input, "grad_input");
        (void)stream;
        on_device(
            "max_pool2d_backward", gy, [&] { cpu::max_pool2d_backward(p, gy, i, gx); },
            [&] {
#if defined(FASTRNN_WITH_CUDA)
              cuda::max_pool2d_backward(p, gy, i, gx, stream);
#endif
            });
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("grad_input"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), py::arg("stream") = 0,
      "grad_input = grad_output added at the argmax positions `indices` (written whole).");
  m.def(
      "avg_pool2d_forward",
      [](py::handle input, py::handle output, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
         bool count_include_pad, int64_t divisor_override, uintptr_t stream) {
        Pool2dParams p = make_params(kernel, stride, padding, {1, 1}, ceil_mode);
        p.count_include_pad = count_include_pad;
        p.divisor_override = divisor_override;
        const TensorView x = to_view(input, "input"), y = to_view(output, "output");
        (void)stream;
        on_device(
            "avg_pool2d_forward", x, [&] { cpu::avg_pool2d_forward(p, x, y); },
            [&] {
#if defined(FASTRNN_WITH_CUDA)
              cuda::avg_pool2d_forward(p, x, y, stream);
#endif
            });
      },
      py::arg("input"), py::arg("output"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("stream") = 0,
      "output = mean over each window of input; divisor_override 0 means none.");
  m.def(
      "avg_pool2d_backward",
      [](py::handle grad_output, py::handle grad_input, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
         bool count_include_pad, int64_t divisor_override, uintptr_t stream) {
        Pool2dParams p = make_params(kernel, stride, padding, {1, 1}, ceil_mode);
        p.count_include_pad = count_include_pad;
        p.divisor_override = divisor_override;
        const TensorView gy = to_view(grad_output, "grad_output"), gx = to_view(grad_input, "grad_input");
        (void)stream;
        on_device(
            "avg_pool2d_backward", gy, [&] { cpu::avg_pool2d_backward(p, gy, gx); },
            [&] {
#if defined(FASTRNN_WITH_CUDA)
              cuda::avg_pool2d_backward(p, gy, gx, stream);
#endif
            });
      },
      py::arg("grad_output"), py::arg("grad_input"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("stream") = 0,
      "grad_input = each grad_output spread evenly over its window (written whole).");
}

}  // namespace fastrnn::bindings
