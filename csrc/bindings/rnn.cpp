// RNN layer kernels: buffer sizes, forward, backward. A call's arguments come as a dict of
// arrays (or None, for absent optional ones; see view.h); one entry point runs a list of one
// or two calls (the directions of a layer) side by side. The GIL is released while they run.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "bindings/view.h"
#include "common/error.h"
#include "common/rnn_params.h"
#include "cpu/rnn.h"
#if defined(FASTRNN_WITH_CUDA)
#include "cuda/rnn.h"
#include "cuda/rnn_persistent.h"
#endif

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

// Reads the named entries of one call's dict; an entry left out counts as None. Names the
// kernel does not know are refused, so a misspelt argument cannot pass silently.
class CallArgs {
 public:
  CallArgs(const py::dict& call, std::initializer_list<const char*> known) : call_(call) {
    Py_ssize_t found = 0;
    for (const char* name : known) found += get(name) != nullptr;
    if (found == PyDict_Size(call.ptr())) return;
    for (auto item : call) {  // some entry is not a known name: say which
      const std::string name = py::str(item.first);
      bool ok = false;
      for (const char* k : known) ok = ok || name == k;
      FASTRNN_CHECK_KIND(ErrorKind::Type, ok, "unexpected argument '", name, "'");
    }
  }
  TensorView view(const char* name) const {
    PyObject* value = get(name);
    return value ? to_view(value, name) : TensorView{};
  }
  bool flag(const char* name) const {
    PyObject* value = get(name);
    return value && py::cast<bool>(py::handle(value));
  }

 private:
  PyObject* get(const char* name) const {  // borrowed; null when absent
    PyObject* value = PyDict_GetItemWithError(call_.ptr(), key(name));
    if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
    return value;
  }
  const py::dict& call_;
};

template <typename Params>
std::vector<Params> read_calls(const py::list& calls, const char* op, Params (*read)(const py::dict&)) {
  FASTRNN_CHECK(!calls.empty() && static_cast<int>(calls.size()) <= cpu::kMaxCalls, op, ": between 1 and ",
                cpu::kMaxCalls, " calls at once");
  std::vector<Params> params;
  for (auto call : calls) params.push_back(read(py::cast<py::dict>(call)));
  return params;
}

std::string device_name(const TensorView& v) {
  return v.device == DeviceType::CUDA ? "cuda:" + std::to_string(v.device_index) : "cpu";
}

// A call runs where x is. On the CPU every array must be there too; CUDA calls check their
// own arrays (batch_sizes stays on the CPU for them, as torch keeps it).
void require_cpu(const char* op, std::initializer_list<const TensorView*> views) {
  for (const TensorView* v : views) {
    FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CPU,
                  "Expected all tensors to be on the same device, but found at least two devices, cpu and ",
                  device_name(*v), "! (", op, ")");
  }
}

bool on_cuda(const TensorView& x) { return x.defined() && x.device == DeviceType::CUDA; }

#if defined(FASTRNN_WITH_CUDA)
// The caller's stream and math switches, from the first call's dict.
cuda::RnnLaunch read_launch(const py::list& calls) {
  cuda::RnnLaunch launch;
  const py::dict first = py::cast<py::dict>(calls[0]);
  if (first.contains("stream")) launch.stream = py::cast<uintptr_t>(first["stream"]);
  launch.allow_tf32 = first.contains("allow_tf32") && py::cast<bool>(first["allow_tf32"]);
  return launch;
}
#endif

[[noreturn, maybe_unused]] void no_cuda(const char* op) {
  throw Error(ErrorKind::Runtime, std::string(op) +
                                      ": this build of fastrnn has no CUDA kernels (install with FASTRNN_CUDA=ON)");
}

RnnForwardParams read_forward(const py::dict& call) {
  const CallArgs a(call, {"reverse", "x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr",
                          "batch_sizes", "recurrent_mask", "y", "h_n", "c_n", "reserve", "workspace", "stream",
                          "allow_tf32"});
  RnnForwardParams p;
  p.reverse = a.flag("reverse");
  p.x = a.view("x");
  p.h0 = a.view("h0");
  p.c0 = a.view("c0");
  p.weight_ih = a.view("weight_ih");
  p.weight_hh = a.view("weight_hh");
  p.bias_ih = a.view("bias_ih");
  p.bias_hh = a.view("bias_hh");
  p.weight_hr = a.view("weight_hr");
  p.batch_sizes = a.view("batch_sizes");
  p.recurrent_mask = a.view("recurrent_mask");
  p.y = a.view("y");
  p.h_n = a.view("h_n");
  p.c_n = a.view("c_n");
  p.reserve = a.view("reserve");
  p.workspace = a.view("workspace");
  if (!on_cuda(p.x))
    require_cpu("rnn_forward", {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.bias_ih, &p.bias_hh, &p.weight_hr,
                                &p.batch_sizes, &p.recurrent_mask, &p.y, &p.h_n, &p.c_n, &p.reserve, &p.workspace});
  return p;
}

RnnBackwardParams read_backward(const py::dict& call) {
  const CallArgs a(call, {"reverse", "x", "h0", "c0", "weight_ih", "weight_hh", "weight_hr", "batch_sizes",
                          "recurrent_mask", "y", "reserve", "dy", "dh_n", "dc_n", "dx", "dh0", "dc0", "dweight_ih",
                          "dweight_hh", "dbias_ih", "dbias_hh", "dweight_hr", "workspace", "stream", "allow_tf32"});
  RnnBackwardParams p;
  p.reverse = a.flag("reverse");
  p.x = a.view("x");
  p.h0 = a.view("h0");
  p.c0 = a.view("c0");
  p.weight_ih = a.view("weight_ih");
  p.weight_hh = a.view("weight_hh");
  p.weight_hr = a.view("weight_hr");
  p.batch_sizes = a.view("batch_sizes");
  p.recurrent_mask = a.view("recurrent_mask");
  p.y = a.view("y");
  p.reserve = a.view("reserve");
  p.dy = a.view("dy");
  p.dh_n = a.view("dh_n");
  p.dc_n = a.view("dc_n");
  p.dx = a.view("dx");
  p.dh0 = a.view("dh0");
  p.dc0 = a.view("dc0");
  p.dweight_ih = a.view("dweight_ih");
  p.dweight_hh = a.view("dweight_hh");
  p.dbias_ih = a.view("dbias_ih");
  p.dbias_hh = a.view("dbias_hh");
  p.dweight_hr = a.view("dweight_hr");
  p.workspace = a.view("workspace");
  if (!on_cuda(p.x))
    require_cpu("rnn_backward", {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.weight_hr, &p.batch_sizes,
                                 &p.recurrent_mask, &p.y, &p.reserve, &p.dy, &p.dh_n, &p.dc_n, &p.dx, &p.dh0, &p.dc0,
                                 &p.dweight_ih, &p.dweight_hh, &p.dbias_ih, &p.dbias_hh, &p.dweight_hr, &p.workspace});
  return p;
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

// The initial states, weights and biases of a positional forward entry.
void read_states_and_weights(RnnForwardParams& p, py::handle h0, py::handle c0, py::handle weight_ih,
                             py::handle weight_hh, py::handle bias_ih, py::handle bias_hh) {
  p.h0 = to_view(h0, "h0");
  p.c0 = to_view(c0, "c0");
  p.weight_ih = to_view(weight_ih, "weight_ih");
  p.weight_hh = to_view(weight_hh, "weight_hh");
  p.bias_ih = to_view(bias_ih, "bias_ih");
  p.bias_hh = to_view(bias_hh, "bias_hh");
}

// One forward call on the CPU, every array there too, with the GIL released.
void run_cpu_forward(const char* op, const RnnForwardParams& p) {
  require_cpu(op, {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.bias_ih, &p.bias_hh, &p.weight_hr,
                   &p.batch_sizes, &p.recurrent_mask, &p.y, &p.h_n, &p.c_n, &p.reserve, &p.workspace});
  py::gil_scoped_release release;
  cpu::rnn_forward(&p, 1);
}

}  // namespace

void register_rnn(py::module_& m) {
  m.def(
      "rnn_buffer_sizes",
      [](int cell, const std::string& dtype, int64_t total_rows, int64_t batch, int64_t input_size,
         int64_t hidden_size, int64_t proj_size, const std::string& device) {
        const auto kind = static_cast<CellKind>(cell);
        RnnBufferSizes s;
        if (device == "cuda") {
#if defined(FASTRNN_WITH_CUDA)
          s = cuda::rnn_buffer_sizes(kind, dtype_from_name(dtype), total_rows, batch, input_size, hidden_size,
                                     proj_size);
#else
          no_cuda("rnn_buffer_sizes");
#endif
        } else {
          FASTRNN_CHECK_VALUE(device == "cpu", "rnn_buffer_sizes: device must be 'cpu' or 'cuda', got '", device, "'");
          s = cpu::rnn_buffer_sizes(kind, dtype_from_name(dtype), total_rows, batch, input_size, hidden_size, proj_size);
        }
        return py::make_tuple(s.reserve_elements, s.forward_workspace_bytes, s.backward_workspace_bytes);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("total_rows"), py::arg("batch"), py::arg("input_size"),
      py::arg("hidden_size"), py::arg("proj_size") = 0, py::arg("device") = "cpu",
      "(reserve elements, forward workspace bytes, backward workspace bytes) of one call on `device` ('cpu' or "
      "'cuda'); on CUDA the reserve of float16/bfloat16 tensors is float32");

  m.def(
      "rnn_forward",
      [](int cell, bool training, const py::list& calls) {
        std::vector<RnnForwardParams> params = read_calls<RnnForwardParams>(calls, "rnn_forward", read_forward);
        for (RnnForwardParams& p : params) {
          p.cell = static_cast<CellKind>(cell);
          p.training = training;
        }
        if (on_cuda(params[0].x)) {
#if defined(FASTRNN_WITH_CUDA)
          const cuda::RnnLaunch launch = read_launch(calls);
          py::gil_scoped_release release;
          return cuda::rnn_forward(params.data(), static_cast<int>(params.size()), launch);
#else
          no_cuda("rnn_forward");
#endif
        }
        py::gil_scoped_release release;
        cpu::rnn_forward(params.data(), static_cast<int>(params.size()));
      },
      py::arg("cell"), py::arg("training"), py::arg("calls"),
      "Runs 1 or 2 forward calls (dicts of arrays: reverse, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, "
      "weight_hr, batch_sizes, recurrent_mask, y, h_n, c_n, reserve, workspace; CUDA calls also stream, allow_tf32).");

  // One direction's inference call, positional (the dict form's build and reading cost a
  // batch-1 call several percent of its time).
  m.def(
      "rnn_inference",
      [](int cell, bool reverse, py::handle x, py::handle h0, py::handle c0, py::handle weight_ih, py::handle weight_hh,
         py::handle bias_ih, py::handle bias_hh, py::handle weight_hr, py::handle batch_sizes,
         py::handle recurrent_mask, py::handle y, py::handle h_n, py::handle c_n, py::handle workspace) {
        RnnForwardParams p;
        p.cell = static_cast<CellKind>(cell);
        p.reverse = reverse;
        p.x = to_view(x, "x");
        read_states_and_weights(p, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh);
        p.weight_hr = to_view(weight_hr, "weight_hr");
        p.batch_sizes = to_view(batch_sizes, "batch_sizes");
        p.recurrent_mask = to_view(recurrent_mask, "recurrent_mask");
        p.y = to_view(y, "y");
        p.h_n = to_view(h_n, "h_n");
        p.c_n = to_view(c_n, "c_n");
        p.workspace = to_view(workspace, "workspace");
        run_cpu_forward("rnn_inference", p);
      },
      py::arg("cell"), py::arg("reverse"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"),
      py::arg("weight_hh"), py::arg("bias_ih"), py::arg("bias_hh"), py::arg("weight_hr"), py::arg("batch_sizes"),
      py::arg("recurrent_mask"), py::arg("y"), py::arg("h_n"), py::arg("c_n"), py::arg("workspace"),
      "One direction's inference forward on the CPU, the arguments of an rnn_forward call in order (None for an "
      "absent one).");

  // One step of a cell, positional: a dict's build and reading cost a batch-1 cell call a good
  // part of its time. x (B, I) and h (B, P) are taken as the step's (1, B, I) input and
  // (1, B, P) output, and h, written once, is also the final state.
  m.def(
      "rnn_cell_forward",
      [](int cell, py::handle x, py::handle h0, py::handle c0, py::handle weight_ih, py::handle weight_hh,
         py::handle bias_ih, py::handle bias_hh, py::handle h, py::handle c, py::handle workspace,
         py::handle reserve) {
        RnnForwardParams p;
        p.cell = static_cast<CellKind>(cell);
        p.x = one_step(to_view(x, "x"), "rnn_cell_forward", "x");
        read_states_and_weights(p, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh);
        p.y = one_step(to_view(h, "h"), "rnn_cell_forward", "h");
        p.c_n = to_view(c, "c");
        p.workspace = to_view(workspace, "workspace");
        p.reserve = to_view(reserve, "reserve");
        p.training = p.reserve.defined();
        run_cpu_forward("rnn_cell_forward", p);
      },
      py::arg("cell"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih"), py::arg("bias_hh"), py::arg("h"), py::arg("c"), py::arg("workspace"),
      py::arg("reserve") = py::none(),
      "One step of a cell on the CPU: h (and c) from x (B, I), h0 (and c0), the weights and biases (or None); the "
      "workspace as rnn_buffer_sizes gives it for one step of batch B. With a reserve (B, reserve width) it is a "
      "training step, whose saved gates rnn_cell_backward reads.");

  // Its backward: dh (B, P) is the gradient of h (the step's output and final state), dc that of
  // c (LSTM; None counts as zeros).
  m.def(
      "rnn_cell_backward",
      [](int cell, py::handle x, py::handle h0, py::handle c0, py::handle weight_ih, py::handle weight_hh,
         py::handle h, py::handle reserve, py::handle dh, py::handle dc, py::handle dx, py::handle dh0,
         py::handle dc0, py::handle dweight_ih, py::handle dweight_hh, py::handle dbias_ih, py::handle dbias_hh,
         py::handle workspace) {
        const char* op = "rnn_cell_backward";
        RnnBackwardParams p;
        p.cell = static_cast<CellKind>(cell);
        p.x = one_step(to_view(x, "x"), op, "x");
        p.h0 = to_view(h0, "h0");
        p.c0 = to_view(c0, "c0");
        p.weight_ih = to_view(weight_ih, "weight_ih");
        p.weight_hh = to_view(weight_hh, "weight_hh");
        p.y = one_step(to_view(h, "h"), op, "h");
        p.reserve = to_view(reserve, "reserve");
        p.dy = one_step(to_view(dh, "dh"), op, "dh");
        p.dc_n = to_view(dc, "dc");
        p.dx = one_step(to_view(dx, "dx"), op, "dx");
        p.dh0 = to_view(dh0, "dh0");
        p.dc0 = to_view(dc0, "dc0");
        p.dweight_ih = to_view(dweight_ih, "dweight_ih");
        p.dweight_hh = to_view(dweight_hh, "dweight_hh");
        p.dbias_ih = to_view(dbias_ih, "dbias_ih");
        p.dbias_hh = to_view(dbias_hh, "dbias_hh");
        p.workspace = to_view(workspace, "workspace");
        require_cpu(op, {&p.x, &p.h0, &p.c0, &p.weight_ih, &p.weight_hh, &p.y, &p.reserve, &p.dy, &p.dc_n, &p.dx,
                         &p.dh0, &p.dc0, &p.dweight_ih, &p.dweight_hh, &p.dbias_ih, &p.dbias_hh, &p.workspace});
        py::gil_scoped_release release;
        cpu::rnn_backward(&p, 1);
      },
      py::arg("cell"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("h"), py::arg("reserve"), py::arg("dh"), py::arg("dc"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
      py::arg("dweight_ih"), py::arg("dweight_hh"), py::arg("dbias_ih"), py::arg("dbias_hh"), py::arg("workspace"),
      "The backward of a training rnn_cell_forward: dx, dh0 (dc0), the weight gradients and (or None) the bias "
      "gradients; the workspace as rnn_buffer_sizes gives the backward's for one step of batch B.");

  m.def(
      "rnn_backward",
      [](int cell, const py::list& calls) {
        std::vector<RnnBackwardParams> params = read_calls<RnnBackwardParams>(calls, "rnn_backward", read_backward);
        for (RnnBackwardParams& p : params) p.cell = static_cast<CellKind>(cell);
        if (on_cuda(params[0].x)) {
#if defined(FASTRNN_WITH_CUDA)
          const cuda::RnnLaunch launch = read_launch(calls);
          py::gil_scoped_release release;
          return cuda::rnn_backward(params.data(), static_cast<int>(params.size()), launch);
#else
          no_cuda("rnn_backward");
#endif
        }
        py::gil_scoped_release release;
        cpu::rnn_backward(params.data(), static_cast<int>(params.size()));
      },
      py::arg("cell"), py::arg("calls"),
      "Runs 1 or 2 backward calls (dicts of arrays: reverse, x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, "
      "recurrent_mask, y, reserve, dy, dh_n, dc_n, dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, "
      "dweight_hr, workspace).");

  // The persistent CUDA recurrence: which path a call takes, a switch for A/B runs, its floor.
  m.def(
      "cuda_rnn_persistent_plan",
      [](int cell, const std::string& dtype, int64_t steps, int64_t batch, int64_t hidden_size, bool training,
         bool backward, int device) {
#if defined(FASTRNN_WITH_CUDA)
        const cuda::PersistentPlan plan = [&] {
          py::gil_scoped_release release;
          return cuda::rnn_persistent_plan(static_cast<CellKind>(cell), dtype_from_name(dtype), steps, batch,
                                           hidden_size, training, backward, device);
        }();
        py::dict out;
        out["use"] = plan.use;
        out["reason"] = std::string(plan.reason);
        out["blocks"] = plan.blocks;
        out["units"] = plan.units;
        out["batch_chunk"] = plan.batch_chunk;
        out["smem_bytes"] = plan.smem_bytes;
        return out;
#else
        (void)cell, (void)dtype, (void)steps, (void)batch, (void)hidden_size, (void)training, (void)backward;
        (void)device;
        no_cuda("cuda_rnn_persistent_plan");
#endif
      },
      py::arg("cell"), py::arg("dtype"), py::arg("steps"), py::arg("batch"), py::arg("hidden_size"),
      py::arg("training") = false, py::arg("backward") = false, py::arg("device") = 0,
      "How rnn_forward (backward=True: rnn_backward) would run this call's recurrence on CUDA: dict(use, reason, "
      "blocks, units, batch_chunk, smem_bytes).");
  m.def(
      "set_cuda_rnn_persistent",
      [](int mode) {
#if defined(FASTRNN_WITH_CUDA)
        cuda::set_rnn_persistent(mode);
#else
        (void)mode;
#endif
      },
      py::arg("mode"),
      "1: use the persistent CUDA recurrence where it applies, 0: always step-wise, -1: as FASTRNN_CUDA_PERSISTENT "
      "says (the default).");
  m.def("cuda_rnn_persistent_enabled", [] {
#if defined(FASTRNN_WITH_CUDA)
    return cuda::rnn_persistent_enabled();
#else
    return false;
#endif
  });
  m.def(
      "cuda_rnn_persistent_plan_misses",
      [] {
#if defined(FASTRNN_WITH_CUDA)
        return cuda::persistent_plan_misses();
#else
        return uint64_t(0);
#endif
      },
      "How many persistent plans were computed (CUDA queries run) rather than found in the plan cache.");
  m.def(
      "cuda_grid_barrier_us",
      [](int device, int blocks, int steps, uintptr_t stream) {
#if defined(FASTRNN_WITH_CUDA)
        py::gil_scoped_release release;
        return cuda::grid_barrier_microseconds(device, blocks, steps, stream);
#else
        (void)device, (void)blocks, (void)steps, (void)stream;
        no_cuda("cuda_grid_barrier_us");
#endif
      },
      py::arg("device") = 0, py::arg("blocks") = 0, py::arg("steps") = 10000, py::arg("stream") = 0,
      "Microseconds per grid-wide barrier of a cooperative launch of `blocks` blocks (0: one per SM) that does "
      "nothing else: the floor of a persistent recurrence step. Synchronises `stream`.");
}

}  // namespace fastrnn::bindings
