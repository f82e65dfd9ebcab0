// 2-d max and average pooling, forward and backward. CPU arrays go to the CPU kernels, CUDA
// arrays to the CUDA kernels (when this build has them) on the caller's `stream`. The GIL is
// released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>

#include "bindings/device.h"
#include "bindings/view.h"
#include "common/pool_params.h"
#include "cpu/pool.h"
#include "cuda/pool.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

Pool2dParams make_params(Pair kernel, Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
  Pool2dParams p;
  p.kernel_h = kernel[0], p.kernel_w = kernel[1];
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.ceil_mode = ceil_mode;
  return p;
}

// A max-pool entry: three arrays (named by a, b, c), the geometry and the caller's stream; the
// kernel of the first array's device runs it.
template <typename Cpu, typename Cuda>
void def_max_pool(py::module_& m, const char* op, py::arg a, py::arg b, py::arg c, Cpu cpu_kernel, Cuda cuda_kernel,
                  const char* doc) {
  const char* names[] = {a.name, b.name, c.name};
  m.def(
      op,
      [op, names, cpu_kernel, cuda_kernel](py::handle x, py::handle y, py::handle z, Pair kernel, Pair stride,
                                            Pair padding, Pair dilation, bool ceil_mode, uintptr_t stream) {
        const Pool2dParams p = make_params(kernel, stride, padding, dilation, ceil_mode);
        const TensorView vx = to_view(x, names[0]), vy = to_view(y, names[1]), vz = to_view(z, names[2]);
        run_on_device(op, vx, [&] { cpu_kernel(p, vx, vy, vz); }, [&] { cuda_kernel(p, vx, vy, vz, stream); });
      },
      a, b, c, py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("ceil_mode"), py::arg("stream") = 0, doc);
}

// An average-pool entry: two arrays, the geometry and the caller's stream.
template <typename Cpu, typename Cuda>
void def_avg_pool(py::module_& m, const char* op, py::arg a, py::arg b, Cpu cpu_kernel, Cuda cuda_kernel,
                  const char* doc) {
  const char* names[] = {a.name, b.name};
  m.def(
      op,
      [op, names, cpu_kernel, cuda_kernel](py::handle x, py::handle y, Pair kernel, Pair stride, Pair padding,
                                            bool ceil_mode, bool count_include_pad, int64_t divisor_override,
                                            uintptr_t stream) {
        Pool2dParams p = make_params(kernel, stride, padding, {1, 1}, ceil_mode);
        p.count_include_pad = count_include_pad;
        p.divisor_override = divisor_override;
        const TensorView vx = to_view(x, names[0]), vy = to_view(y, names[1]);
        run_on_device(op, vx, [&] { cpu_kernel(p, vx, vy); }, [&] { cuda_kernel(p, vx, vy, stream); });
      },
      a, b, py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
      py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("stream") = 0, doc);
}

}  // namespace

void register_pool(py::module_& m) {
  def_max_pool(
      m, "max_pool2d_forward", py::arg("input"), py::arg("output"), py::arg("indices"), cpu::max_pool2d_forward,
      [](auto&&... args) { cuda::max_pool2d_forward(args...); },
      "output (.., OH, OW) = max over each window of input (N, C, H, W) or (C, H, W); indices (int64 like "
      "output, or None) = the argmax's flat position h * W + w in its plane.");
  def_max_pool(
      m, "max_pool2d_backward", py::arg("grad_output"), py::arg("indices"), py::arg("grad_input"),
      cpu::max_pool2d_backward, [](auto&&... args) { cuda::max_pool2d_backward(args...); },
      "grad_input = grad_output added at the argmax positions `indices` (written whole).");
  def_avg_pool(
      m, "avg_pool2d_forward", py::arg("input"), py::arg("output"), cpu::avg_pool2d_forward,
      [](auto&&... args) { cuda::avg_pool2d_forward(args...); },
      "output = mean over each window of input; divisor_override 0 means none.");
  def_avg_pool(
      m, "avg_pool2d_backward", py::arg("grad_output"), py::arg("grad_input"), cpu::avg_pool2d_backward,
      [](auto&&... args) { cuda::avg_pool2d_backward(args...); },
      "grad_input = each grad_output spread evenly over its window (written whole).");
}

}  // namespace fastrnn::bindings
