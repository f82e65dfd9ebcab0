// The CPU GEMM, exposed for its own tests: C = alpha * op(A) op(B) + beta * C in place.
#include <omp.h>
#include <pybind11/pybind11.h>

#include "bindings/view.h"
#include "common/dispatch.h"
#include "common/error.h"
#include "cpu/gemm/gemm.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

void check_matrix(const TensorView& v, DType dtype, const char* name) {
  FASTRNN_CHECK(v.defined() && v.ndim == 2 && v.device == DeviceType::CPU && v.dtype == dtype, "gemm: ", name,
                " must be a 2-D CPU matrix of dtype ", dtype_name(dtype));
  FASTRNN_CHECK(v.strides[1] == 1 || v.sizes[1] <= 1 || v.numel() == 0, "gemm: ", name, " must have unit column stride");
}

}  // namespace

void register_gemm(py::module_& m) {
  m.def("gemm_scratch_bytes", [](const std::string& dtype) {
    // One slot per thread, plus room to align the caller's buffer.
    return cpu::gemm_scratch_bytes_per_thread(dtype == "float64" ? DType::Float64 : DType::Float32) *
               omp_get_max_threads() +
           64;
  });
  m.def(
      "gemm",
      [](bool trans_a, bool trans_b, double alpha, py::handle a, py::handle b, double beta, py::handle c,
         py::handle scratch) {
        const TensorView A = to_view(a, "a"), B = to_view(b, "b"), C = to_view(c, "c"), S = to_view(scratch, "scratch");
        check_matrix(C, C.dtype, "c");
        check_matrix(A, C.dtype, "a");
        check_matrix(B, C.dtype, "b");
        const int64_t M = C.sizes[0], N = C.sizes[1];
        const int64_t K = trans_a ? A.sizes[0] : A.sizes[1];
        FASTRNN_CHECK((trans_a ? A.sizes[1] : A.sizes[0]) == M && (trans_b ? B.sizes[1] : B.sizes[0]) == K &&
                          (trans_b ? B.sizes[0] : B.sizes[1]) == N,
                      "gemm: shapes do not match");
        const int64_t per_thread = cpu::gemm_scratch_bytes_per_thread(C.dtype);
        FASTRNN_CHECK(S.defined() && S.device == DeviceType::CPU && S.is_contiguous() && S.nbytes() >= per_thread + 64,
                      "gemm: scratch must hold at least ", per_thread + 64, " bytes");
        // The packed panels want 64-byte alignment; NumPy gives 16.
        const auto raw = reinterpret_cast<uintptr_t>(S.data);
        char* aligned = reinterpret_cast<char*>((raw + 63) / 64 * 64);
        const int64_t usable = S.nbytes() - (aligned - static_cast<char*>(S.data));
        py::gil_scoped_release release;
        FASTRNN_DISPATCH_FLOATING(C.dtype, "gemm", [&] {
          cpu::GemmArgs<scalar_t> g;
          g.trans_a = trans_a, g.trans_b = trans_b;
          g.M = M, g.N = N, g.K = K;
          g.alpha = static_cast<scalar_t>(alpha), g.beta = static_cast<scalar_t>(beta);
          g.A = A.data_as<scalar_t>(), g.lda = A.strides[0];
          g.B = B.data_as<scalar_t>(), g.ldb = B.strides[0];
          g.C = C.data_as<scalar_t>(), g.ldc = C.strides[0];
          cpu::GemmScratch s;
          s.data = aligned;
          s.bytes_per_thread = per_thread;
          s.threads = static_cast<int>(usable / per_thread);
          cpu::gemm(g, s);
        });
      },
      py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("a"), py::arg("b"), py::arg("beta"),
      py::arg("c"), py::arg("scratch"));
}

}  // namespace fastrnn::bindings
