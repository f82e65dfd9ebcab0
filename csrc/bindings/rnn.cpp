// RNN layer kernels: buffer sizes, forward, backward. A call's arguments come as a dict of
// arrays (or None, for absent optional ones; see view.h); one entry point runs a list of one
// or two calls (the directions of a layer) side by side. The GIL is released while they run.
// Each entry's arrays are declared once, in the tables below, which drive the dict reading and
// the positional entries' arguments alike; the core checks every array it is given.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bindings/device.h"
#include "bindings/view.h"
#include "common/error.h"
#include "common/rnn_params.h"
#include "cpu/rnn.h"
#include "cuda/rnn.h"
#include "cuda/rnn_persistent.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

using Forward = RnnForwardParams;
using Backward = RnnBackwardParams;

// One array argument of an entry: its Python name and the field of the call it fills. A cell's
// x and h (and their gradients) are (B, width): step_rows takes them as the (1, B, width) rows
// of the cell's single step.
template <typename Params>
struct ArrayField {
  const char* name;
  TensorView Params::*field;
  bool step_rows = false;
};

// A forward call's arrays, in the order of rnn_inference's arguments, then the reserve (which
// inference has none of).
constexpr ArrayField<Forward> kForwardArrays[] = {
    {"x", &Forward::x}, {"h0", &Forward::h0}, {"c0", &Forward::c0}, {"weight_ih", &Forward::weight_ih},
    {"weight_hh", &Forward::weight_hh}, {"bias_ih", &Forward::bias_ih}, {"bias_hh", &Forward::bias_hh},
    {"weight_hr", &Forward::weight_hr}, {"batch_sizes", &Forward::batch_sizes},
    {"recurrent_mask", &Forward::recurrent_mask}, {"y", &Forward::y}, {"h_n", &Forward::h_n}, {"c_n", &Forward::c_n},
    {"workspace", &Forward::workspace}, {"reserve", &Forward::reserve}};
constexpr size_t kInferenceArrays = std::size(kForwardArrays) - 1;

constexpr ArrayField<Backward> kBackwardArrays[] = {
    {"x", &Backward::x}, {"h0", &Backward::h0}, {"c0", &Backward::c0}, {"weight_ih", &Backward::weight_ih},
    {"weight_hh", &Backward::weight_hh}, {"weight_hr", &Backward::weight_hr},
    {"batch_sizes", &Backward::batch_sizes}, {"recurrent_mask", &Backward::recurrent_mask}, {"y", &Backward::y},
    {"reserve", &Backward::reserve}, {"dy", &Backward::dy}, {"dh_n", &Backward::dh_n}, {"dc_n", &Backward::dc_n},
    {"dx", &Backward::dx}, {"dh0", &Backward::dh0}, {"dc0", &Backward::dc0}, {"dweight_ih", &Backward::dweight_ih},
    {"dweight_hh", &Backward::dweight_hh}, {"dbias_ih", &Backward::dbias_ih}, {"dbias_hh", &Backward::dbias_hh},
    {"dweight_hr", &Backward::dweight_hr}, {"workspace", &Backward::workspace}};

// One step of a cell: h (and c) are both the step's output and its final state.
constexpr ArrayField<Forward> kCellForwardArrays[] = {
    {"x", &Forward::x, true}, {"h0", &Forward::h0}, {"c0", &Forward::c0}, {"weight_ih", &Forward::weight_ih},
    {"weight_hh", &Forward::weight_hh}, {"bias_ih", &Forward::bias_ih}, {"bias_hh", &Forward::bias_hh},
    {"h", &Forward::y, true}, {"c", &Forward::c_n}, {"workspace", &Forward::workspace},
    {"reserve", &Forward::reserve}};

// Its backward: dh is the gradient of h, dc that of c (LSTM; None counts as zeros).
constexpr ArrayField<Backward> kCellBackwardArrays[] = {
    {"x", &Backward::x, true}, {"h0", &Backward::h0}, {"c0", &Backward::c0}, {"weight_ih", &Backward::weight_ih},
    {"weight_hh", &Backward::weight_hh}, {"h", &Backward::y, true}, {"reserve", &Backward::reserve},
    {"dh", &Backward::dy, true}, {"dc", &Backward::dc_n}, {"dx", &Backward::dx, true}, {"dh0", &Backward::dh0},
    {"dc0", &Backward::dc0}, {"dweight_ih", &Backward::dweight_ih}, {"dweight_hh", &Backward::dweight_hh},
    {"dbias_ih", &Backward::dbias_ih}, {"dbias_hh", &Backward::dbias_hh}, {"workspace", &Backward::workspace}};

// A call dict's other entries: the direction, and for CUDA calls the caller's stream and math
// switch (read from the first call).
constexpr const char* kCallFlags[] = {"reverse", "stream", "allow_tf32"};

template <typename Params, size_t N>
std::string names_of(const ArrayField<Params> (&fields)[N]) {
  std::string names;
  for (const auto& f : fields) names += (names.empty() ? "" : ", ") + std::string(f.name);
  return names;
}

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  if (name == "float16") return DType::Float16;
  if (name == "bfloat16") return DType::BFloat16;
  return DType::Other;
}

// The Python str of a C string literal, made once and interned (so its hash is cached too): a
// call's dict is read by a dozen and a half names, and making each name afresh at every call
// cost microseconds. Only touched with the GIL held.
PyObject* key(const char* name) {
  static std::unordered_map<const char*, PyObject*> cache;
  const auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  PyObject* s = PyUnicode_InternFromString(name);
  if (s == nullptr) throw py::error_already_set();
  return cache.emplace(name, s).first->second;
}

PyObject* lookup(const py::dict& call, const char* name) {  // borrowed; null when absent
  PyObject* value = PyDict_GetItemWithError(call.ptr(), key(name));
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return value;
}

// A cell's (B, width) array as the (1, B, width) rows of its single step.
TensorView one_step(TensorView v, const char* op, const char* name) {
  FASTRNN_CHECK(v.defined() && v.ndim == 2, op, ": expected ", name, " of 2 dimensions");
  v.ndim = 3;
  v.sizes[2] = v.sizes[1], v.strides[2] = v.strides[1];
  v.sizes[1] = v.sizes[0], v.strides[1] = v.strides[0];
  v.sizes[0] = 1, v.strides[0] = v.sizes[1] * v.strides[1];
  return v;
}

// One array into its field of the call; `value` null or None: absent.
template <typename Params>
void assign(Params& p, const ArrayField<Params>& f, PyObject* value, const char* op) {
  const TensorView v = value ? to_view(value, f.name) : TensorView{};
  p.*f.field = f.step_rows ? one_step(v, op, f.name) : v;
}

// One call's dict: the arrays of `fields` and the flags; an entry left out counts as None.
// Names the kernel does not know are refused, so a misspelt argument cannot pass silently.
template <typename Params, size_t N>
Params read_call(const py::dict& call, const ArrayField<Params> (&fields)[N], const char* op) {
  PyObject* values[N];
  Py_ssize_t found = 0;
  for (size_t k = 0; k < N; ++k) found += (values[k] = lookup(call, fields[k].name)) != nullptr;
  for (const char* flag : kCallFlags) found += lookup(call, flag) != nullptr;
  if (found != PyDict_Size(call.ptr())) {  // some entry is not a known name: say which
    refuse_unknown_keys(call, "unexpected argument", [&](const std::string& entry) {
      auto named = [&](const char* name) { return entry == name; };
      return std::any_of(std::begin(fields), std::end(fields), [&](auto& f) { return named(f.name); }) ||
             std::any_of(std::begin(kCallFlags), std::end(kCallFlags), named);
    });
  }
  Params p;
  PyObject* reverse = lookup(call, "reverse");
  p.reverse = reverse && py::cast<bool>(py::handle(reverse));
  for (size_t k = 0; k < N; ++k) assign(p, fields[k], values[k], op);
  return p;
}

// The caller's stream and math switches, from the first call's dict.
cuda::RnnLaunch read_launch(const py::list& calls) {
  cuda::RnnLaunch launch;
  const py::dict first = py::cast<py::dict>(calls[0]);
  if (first.contains("stream")) launch.stream = py::cast<uintptr_t>(first["stream"]);
  launch.allow_tf32 = first.contains("allow_tf32") && py::cast<bool>(first["allow_tf32"]);
  return launch;
}

// Reads the list of call dicts and runs them where the first call's x is (the core checks the
// count and every array, devices included).
template <typename Params, size_t N, typename Complete, typename Cpu, typename Cuda>
void run_calls(const char* op, const py::list& calls, const ArrayField<Params> (&fields)[N], const Complete& complete,
               const Cpu& cpu_fn, const Cuda& cuda_fn) {
  std::vector<Params> params;
  for (auto call : calls) {
    params.push_back(read_call(py::cast<py::dict>(call), fields, op));
    complete(params.back());
  }
  const int count = static_cast<int>(params.size());
  const TensorView first = count > 0 ? params[0].x : TensorView{};
  const cuda::RnnLaunch launch = on_cuda(first) ? read_launch(calls) : cuda::RnnLaunch{};
  run_on_device(op, first, [&] { cpu_fn(params.data(), count); }, [&] { cuda_fn(params.data(), count, launch); });
}

template <typename T, size_t>
using Each = T;  // one T for each index of a pack

template <size_t I, size_t FirstOptional>
auto array_arg(const char* name) {
  if constexpr (I < FirstOptional) {
    return py::arg(name);
  } else {
    return py::arg(name) = py::none();
  }
}

template <size_t Optional, typename... Lead, typename Params, typename Run, size_t... I, typename... LeadArgs>
void def_positional_arrays(py::module_& m, const char* name, const ArrayField<Params>* fields, Run run,
                           const char* doc, std::index_sequence<I...>, LeadArgs... lead_args) {
  constexpr size_t first_optional = sizeof...(I) - Optional;
  m.def(
      name,
      [name, fields, run](Lead... lead, Each<py::handle, I>... arrays) {
        Params p;
        (assign(p, fields[I], arrays.ptr(), name), ...);
        run(p, lead...);
      },
      lead_args..., array_arg<I, first_optional>(fields[I].name)..., doc);
}

// Defines `name`(lead..., arrays...), a CPU entry that takes its arrays positionally (a dict's
// build and reading cost a batch-1 call a good part of its time): leading scalars of types Lead
// (lead_args name them), then the first Count arrays of `fields`, by position or name, None for
// an absent one, the last Optional of them defaulting to None. run(p, lead...) runs the call.
template <size_t Count, size_t Optional, typename... Lead, typename Params, typename Run, typename... LeadArgs>
void def_positional(py::module_& m, const char* name, const ArrayField<Params>* fields, Run run, const char* doc,
                    LeadArgs... lead_args) {
  def_positional_arrays<Optional, Lead...>(m, name, fields, run, doc, std::make_index_sequence<Count>(), lead_args...);
}

void register_calls(py::module_& m) {
  static const std::string forward_doc = "Runs 1 or 2 forward calls (dicts of arrays: reverse, " +
                                         names_of(kForwardArrays) + "; CUDA calls also stream, allow_tf32).";
  m.def(
      "rnn_forward",
      [](int cell, bool training, const py::list& calls) {
        run_calls(
            "rnn_forward", calls, kForwardArrays,
            [&](Forward& p) { p.cell = static_cast<CellKind>(cell), p.training = training; },
            [](const Forward* p, int n) { cpu::rnn_forward(p, n); },
            [](const Forward* p, int n, const cuda::RnnLaunch& launch) { cuda::rnn_forward(p, n, launch); });
      },
      py::arg("cell"), py::arg("training"), py::arg("calls"), forward_doc.c_str());
  static const std::string backward_doc =
      "Runs 1 or 2 backward calls (dicts of arrays: reverse, " + names_of(kBackwardArrays) + ").";
  m.def(
      "rnn_backward",
      [](int cell, const py::list& calls) {
        run_calls(
            "rnn_backward", calls, kBackwardArrays, [&](Backward& p) { p.cell = static_cast<CellKind>(cell); },
            [](const Backward* p, int n) { cpu::rnn_backward(p, n); },
            [](const Backward* p, int n, const cuda::RnnLaunch& launch) { cuda::rnn_backward(p, n, launch); });
      },
      py::arg("cell"), py::arg("calls"), backward_doc.c_str());
}

void register_positional(py::module_& m) {
  def_positional<kInferenceArrays, 0, int, bool>(
      m, "rnn_inference", kForwardArrays,
      [](Forward& p, int cell, bool reverse) {
        p.cell = static_cast<CellKind>(cell), p.reverse = reverse;
        py::gil_scoped_release release;
        cpu::rnn_forward(&p, 1);
      },
      "One direction's inference forward on the CPU, the arguments of an rnn_forward call in order (None for an "
      "absent one).",
      py::arg("cell"), py::arg("reverse"));
  def_positional<std::size(kCellForwardArrays), 1, int>(
      m, "rnn_cell_forward", kCellForwardArrays,
      [](Forward& p, int cell) {
        p.cell = static_cast<CellKind>(cell), p.training = p.reserve.defined();
        py::gil_scoped_release release;
        cpu::rnn_forward(&p, 1);
      },
      "One step of a cell on the CPU: h (and c) from x (B, I), h0 (and c0), the weights and biases (or None); the "
      "workspace as rnn_buffer_sizes gives it for one step of batch B. With a reserve (B, reserve width) it is a "
      "training step, whose saved gates rnn_cell_backward reads.",
      py::arg("cell"));
  def_positional<std::size(kCellBackwardArrays), 0, int>(
      m, "rnn_cell_backward", kCellBackwardArrays,
      [](Backward& p, int cell) {
        p.cell = static_cast<CellKind>(cell);
        py::gil_scoped_release release;
        cpu::rnn_backward(&p, 1);
      },
      "The backward of a training rnn_cell_forward: dx, dh0 (dc0), the weight gradients and (or None) the bias "
      "gradients; the workspace as rnn_buffer_sizes gives the backward's for one step of batch B.",
      py::arg("cell"));
}

// The persistent CUDA recurrence: which path a call takes, a switch for A/B runs, its floor.
void register_persistent(py::module_& m) {
  m.def(
      "cuda_rnn_persistent_plan",
      [](int cell, const std::string& dtype, int64_t steps, int64_t batch, int64_t hidden_size, bool training,
         bool backward, int device) {
        const cuda::PersistentPlan plan = cuda_only("cuda_rnn_persistent_plan", [&] {
          py::gil_scoped_release release;
          return cuda::rnn_persistent_plan(static_cast<CellKind>(cell), dtype_from_name(dtype), steps, batch,
                                           hidden_size, training, backward, device);
        });
        py::dict out;
        out["use"] = plan.use;
        out["reason"] = std::string(plan.reason);
        out["blocks"] = plan.blocks;
        out["units"] = plan.units;
        out["batch_chunk"] = plan.batch_chunk;
        out["smem_bytes"] = plan.smem_bytes;
        return out;
      },
      py::arg("cell"), py::arg("dtype"), py::arg("steps"), py::arg("batch"), py::arg("hidden_size"),
      py::arg("training") = false, py::arg("backward") = false, py::arg("device") = 0,
      "How rnn_forward (backward=True: rnn_backward) would run this call's recurrence on CUDA: dict(use, reason, "
      "blocks, units, batch_chunk, smem_bytes).");
  m.def(
      "set_cuda_rnn_persistent", [](int mode) { when_cuda([&] { cuda::set_rnn_persistent(mode); }); },
      py::arg("mode"),
      "1: use the persistent CUDA recurrence where it applies, 0: always step-wise, -1: as FASTRNN_CUDA_PERSISTENT "
      "says (the default).");
  m.def("cuda_rnn_persistent_enabled", [] { return cuda_or(false, [] { return cuda::rnn_persistent_enabled(); }); });
  m.def(
      "cuda_rnn_persistent_plan_misses",
      [] { return cuda_or(uint64_t(0), [] { return cuda::persistent_plan_misses(); }); },
      "How many persistent plans were computed (CUDA queries run) rather than found in the plan cache.");
  m.def(
      "cuda_grid_barrier_us",
      [](int device, int blocks, int steps, uintptr_t stream) {
        return cuda_only("cuda_grid_barrier_us", [&] {
          py::gil_scoped_release release;
          return cuda::grid_barrier_microseconds(device, blocks, steps, stream);
        });
      },
      py::arg("device") = 0, py::arg("blocks") = 0, py::arg("steps") = 10000, py::arg("stream") = 0,
      "Microseconds per grid-wide barrier of a cooperative launch of `blocks` blocks (0: one per SM) that does "
      "nothing else: the floor of a persistent recurrence step. Synchronises `stream`.");
}

}  // namespace

void register_rnn(py::module_& m) {
  m.def(
      "rnn_buffer_sizes",
      [](int cell, const std::string& dtype, int64_t total_rows, int64_t batch, int64_t input_size,
         int64_t hidden_size, int64_t proj_size, const std::string& device) {
        const auto kind = static_cast<CellKind>(cell);
        const DType dt = dtype_from_name(dtype);
        RnnBufferSizes s;
        if (device == "cuda") {
          s = cuda_only("rnn_buffer_sizes", [&] {
            return cuda::rnn_buffer_sizes(kind, dt, total_rows, batch, input_size, hidden_size, proj_size);
          });
        } else {
          FASTRNN_CHECK_VALUE(device == "cpu", "rnn_buffer_sizes: device must be 'cpu' or 'cuda', got '", device, "'");
          s = cpu::rnn_buffer_sizes(kind, dt, total_rows, batch, input_size, hidden_size, proj_size);
        }
        return py::make_tuple(s.reserve_elements, s.forward_workspace_bytes, s.backward_workspace_bytes);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("total_rows"), py::arg("batch"), py::arg("input_size"),
      py::arg("hidden_size"), py::arg("proj_size") = 0, py::arg("device") = "cpu",
      "(reserve elements, forward workspace bytes, backward workspace bytes) of one call on `device` ('cpu' or "
      "'cuda'); on CUDA the reserve of float16/bfloat16 tensors is float32");
  register_calls(m);
  register_positional(m);
  register_persistent(m);
}

}  // namespace fastrnn::bindings
