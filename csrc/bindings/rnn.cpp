// RNN layer kernels: buffer sizes, forward, backward. Arguments are arrays or None (see view.h);
// the GIL is released while a kernel runs.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/view.h"
#include "common/error.h"
#include "common/rnn_params.h"
#include "cpu/rnn.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  if (name == "float16") return DType::Float16;
  if (name == "bfloat16") return DType::BFloat16;
  return DType::Other;
}

// Every device a call's arrays live on must be the CPU, for now.
void require_cpu(const char* op, std::initializer_list<const TensorView*> views) {
  for (const TensorView* v : views) {
    FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CPU, op,
                  ": only CPU arrays are supported by this build; CUDA RNN kernels are not available yet");
  }
}

}  // namespace

void register_rnn(py::module_& m) {
  m.def(
      "rnn_buffer_sizes",
      [](int cell, const std::string& dtype, int64_t total_rows, int64_t batch, int64_t input_size,
         int64_t hidden_size, int64_t proj_size) {
        const RnnBufferSizes s = cpu::rnn_buffer_sizes(static_cast<CellKind>(cell), dtype_from_name(dtype),
                                                       total_rows, batch, input_size, hidden_size, proj_size);
        return py::make_tuple(s.reserve_elements, s.forward_workspace_bytes, s.backward_workspace_bytes);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("total_rows"), py::arg("batch"), py::arg("input_size"),
      py::arg("hidden_size"), py::arg("proj_size") = 0,
      "(reserve elements, forward workspace bytes, backward workspace bytes)");

  m.def(
      "rnn_forward",
      [](int cell, bool reverse, bool training, py::handle x, py::handle h0, py::handle c0, py::handle weight_ih,
         py::handle weight_hh, py::handle bias_ih, py::handle bias_hh, py::handle weight_hr, py::handle batch_sizes,
         py::handle y, py::handle h_n, py::handle c_n, py::handle reserve, py::handle workspace) {
        RnnForwardParams p;
        p.cell = static_cast<CellKind>(cell);
        p.reverse = reverse;
        p.training = training;
        p.x = to_view(x, "x");
        p.h0 = to_view(h0, "h0");
        p.c0 = to_view(c0, "c0");
        p.weight_ih = to_view(weight_ih, "weight_ih");
        p.weight_hh = to_view(weight_hh, "weight_hh");
        p.bias_ih = to_view(bias_ih, "bias_ih");
        p.bias_hh = to_view(bias_hh, "bias_hh");
        p.weight_hr = to_view(weight_hr, "weight_hr");
        p.batch_sizes = to_view(batch_sizes, "batch_sizes");
        p.y = to_view(y, "y");
        p.h_n = to_view(h_n, "h_n");
        p.c_n = to_view(c_n, "c_n");
        p.reserve = to_view(reserve, "reserve");
        p.workspace = to_view(workspace, "workspace");
        require_cpu("rnn_forward", {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.bias_ih, &p.bias_hh,
                                    &p.weight_hr, &p.batch_sizes, &p.y, &p.h_n, &p.c_n, &p.reserve, &p.workspace});
        py::gil_scoped_release release;
        cpu::rnn_forward(p);
      },
      py::arg("cell"), py::arg("reverse"), py::arg("training"), py::arg("x"), py::arg("h0"), py::arg("c0"),
      py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias_ih"), py::arg("bias_hh"), py::arg("weight_hr"),
      py::arg("batch_sizes"), py::arg("y"), py::arg("h_n"), py::arg("c_n"), py::arg("reserve"), py::arg("workspace"));

  m.def(
      "rnn_backward",
      [](int cell, bool reverse, py::handle x, py::handle h0, py::handle c0, py::handle weight_ih,
         py::handle weight_hh, py::handle weight_hr, py::handle batch_sizes, py::handle y, py::handle reserve,
         py::handle dy, py::handle dh_n, py::handle dc_n, py::handle dx, py::handle dh0, py::handle dc0,
         py::handle dweight_ih, py::handle dweight_hh, py::handle dbias_ih, py::handle dbias_hh,
         py::handle dweight_hr, py::handle workspace) {
        RnnBackwardParams p;
        p.cell = static_cast<CellKind>(cell);
        p.reverse = reverse;
        p.x = to_view(x, "x");
        p.h0 = to_view(h0, "h0");
        p.c0 = to_view(c0, "c0");
        p.weight_ih = to_view(weight_ih, "weight_ih");
        p.weight_hh = to_view(weight_hh, "weight_hh");
        p.weight_hr = to_view(weight_hr, "weight_hr");
        p.batch_sizes = to_view(batch_sizes, "batch_sizes");
        p.y = to_view(y, "y");
        p.reserve = to_view(reserve, "reserve");
        p.dy = to_view(dy, "dy");
        p.dh_n = to_view(dh_n, "dh_n");
        p.dc_n = to_view(dc_n, "dc_n");
        p.dx = to_view(dx, "dx");
        p.dh0 = to_view(dh0, "dh0");
        p.dc0 = to_view(dc0, "dc0");
        p.dweight_ih = to_view(dweight_ih, "dweight_ih");
        p.dweight_hh = to_view(dweight_hh, "dweight_hh");
        p.dbias_ih = to_view(dbias_ih, "dbias_ih");
        p.dbias_hh = to_view(dbias_hh, "dbias_hh");
        p.dweight_hr = to_view(dweight_hr, "dweight_hr");
        p.workspace = to_view(workspace, "workspace");
        require_cpu("rnn_backward",
                    {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.weight_hr, &p.batch_sizes, &p.y, &p.reserve,
                     &p.dy, &p.dh_n, &p.dc_n, &p.dx, &p.dh0, &p.dc0, &p.dweight_ih, &p.dweight_hh, &p.dbias_ih,
                     &p.dbias_hh, &p.dweight_hr, &p.workspace});
        py::gil_scoped_release release;
        cpu::rnn_backward(p);
      },
      py::arg("cell"), py::arg("reverse"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"),
      py::arg("weight_hh"), py::arg("weight_hr"), py::arg("batch_sizes"), py::arg("y"), py::arg("reserve"),
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
      py::arg("dweight_ih"), py::arg("dweight_hh"), py::arg("dbias_ih"), py::arg("dbias_hh"), py::arg("dweight_hr"),
      py::arg("workspace"));
}

}  // namespace fastrnn::bindings
