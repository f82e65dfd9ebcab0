// fastrnn._C: the private compiled module. Each op family registers itself from its own file.
#include <pybind11/pybind11.h>

#include "common/error.h"

namespace py = pybind11;

namespace fastrnn::bindings {
void register_info(py::module_& m);
void register_gemm(py::module_& m);
void register_rnn(py::module_& m);
void register_optim(py::module_& m);
void register_conv(py::module_& m);
void register_conv_cuda(py::module_& m);
void register_pool(py::module_& m);
void register_cells(py::module_& m);
}  // namespace fastrnn::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's compiled kernels (private: use fastrnn.functional, fastrnn.numpy, fastrnn.nn)";
  // Core errors become the Python exception of their kind, with the core's message.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastrnn::Error& e) {
      switch (e.kind()) {
        case fastrnn::ErrorKind::Value: PyErr_SetString(PyExc_ValueError, e.what()); return;
        case fastrnn::ErrorKind::Type: PyErr_SetString(PyExc_TypeError, e.what()); return;
        case fastrnn::ErrorKind::NotImplemented: PyErr_SetString(PyExc_NotImplementedError, e.what()); return;
        case fastrnn::ErrorKind::Runtime: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
      }
    }
  });
  fastrnn::bindings::register_info(m);
  fastrnn::bindings::register_gemm(m);
  fastrnn::bindings::register_rnn(m);
  fastrnn::bindings::register_optim(m);
  fastrnn::bindings::register_conv(m);
  fastrnn::bindings::register_conv_cuda(m);
  fastrnn::bindings::register_pool(m);
  fastrnn::bindings::register_cells(m);
}
