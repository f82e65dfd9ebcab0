// The CPU GEMM, exposed for its own tests: C = alpha * op(A) op(B) + beta * C in place. The
// core's checked entry checks the arrays (common/gemm_params.h).
#include <omp.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/view.h"
#include "common/gemm_params.h"
#include "cpu/gemm/gemm.h"

namespace py = pybind11;

namespace fastrnn::bindings {

void register_gemm(py::module_& m) {
  m.def("gemm_scratch_bytes", [](const std::string& dtype) {
    const DType dt = dtype == "float64" ? DType::Float64 : DType::Float32;
    return gemm_scratch_bytes(cpu::gemm_scratch_bytes_per_thread(dt), omp_get_max_threads());
  });
  m.def(
      "gemm",
      [](bool trans_a, bool trans_b, double alpha, py::handle a, py::handle b, double beta, py::handle c,
         py::handle scratch) {
        GemmParams p;
        p.trans_a = trans_a, p.trans_b = trans_b, p.alpha = alpha, p.beta = beta;
        p.a = to_view(a, "a"), p.b = to_view(b, "b"), p.c = to_view(c, "c"), p.scratch = to_view(scratch, "scratch");
        py::gil_scoped_release release;
        cpu::gemm(p);
      },
      py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("a"), py::arg("b"), py::arg("beta"),
      py::arg("c"), py::arg("scratch"));
}

}  // namespace fastrnn::bindings
