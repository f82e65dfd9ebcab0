// Fused optimizer steps and gradient clipping. A step takes the group's hyper-parameters as a
// dict and one dict of arrays per parameter; the GIL is released while the kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "bindings/device.h"
#include "bindings/view.h"
#include "common/error.h"
#include "common/optim_params.h"
#include "cpu/optim.h"
#include "cuda/optim.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

// A hyper-parameter of the dict: a number or a flag of OptimizerHyper; one left out keeps the
// struct's default (0, false; grad_scale 1).
struct HyperField {
  const char* name;
  double OptimizerHyper::*number;
  bool OptimizerHyper::*flag;
};
using H = OptimizerHyper;
constexpr HyperField kHyperFields[] = {
    {"lr", &H::lr, nullptr},
    {"weight_decay", &H::weight_decay, nullptr},
    {"l1_decay", &H::l1_decay, nullptr},
    {"grad_scale", &H::grad_scale, nullptr},
    {"maximize", nullptr, &H::maximize},
    {"eps", &H::eps, nullptr},
    {"beta1", &H::beta1, nullptr},
    {"beta2", &H::beta2, nullptr},
    {"amsgrad", nullptr, &H::amsgrad},
    {"decoupled_weight_decay", nullptr, &H::decoupled_weight_decay},
    {"momentum", &H::momentum, nullptr},
    {"dampening", &H::dampening, nullptr},
    {"nesterov", nullptr, &H::nesterov},
    {"alpha", &H::alpha, nullptr},
    {"centered", nullptr, &H::centered},
    {"lr_decay", &H::lr_decay, nullptr},
};
// The other keys: the kind, and for CUDA parameters the caller's stream and clipping by a norm
// on the device.
constexpr const char* kOtherKeys[] = {"kind", "stream", "clip_norm", "max_norm"};

OptimizerHyper read_hyper(const py::dict& d) {
  refuse_unknown_keys(d, "optimizer_step: unexpected hyper-parameter", [](const std::string& key) {
    auto named = [&](const char* name) { return key == name; };
    return std::any_of(std::begin(kHyperFields), std::end(kHyperFields), [&](auto& f) { return named(f.name); }) ||
           std::any_of(std::begin(kOtherKeys), std::end(kOtherKeys), named);
  });
  OptimizerHyper h;
  h.kind = static_cast<OptimizerKind>(d.contains("kind") ? py::cast<int>(d["kind"]) : -1);  // the core checks it
  for (const HyperField& f : kHyperFields) {
    if (!d.contains(f.name)) continue;
    if (f.number) h.*f.number = py::cast<double>(d[f.name]);
    if (f.flag) h.*f.flag = py::cast<bool>(d[f.name]);
  }
  return h;
}

OptimizerTensor read_tensor(const py::dict& t) {
  OptimizerTensor o;
  o.param = to_view(t["param"], "param");
  o.grad = to_view(t["grad"], "grad");
  for (int k = 0; k < 3; ++k) {
    const std::string key = "state" + std::to_string(k);
    if (t.contains(key.c_str())) o.state[k] = to_view(t[key.c_str()], "state");
  }
  if (t.contains("step")) o.step = to_view(t["step"], "step");
  o.fresh_buffer = t.contains("fresh_buffer") && py::cast<bool>(t["fresh_buffer"]);
  return o;
}

// The CUDA step's launch: the caller's stream, and the optional clipping by a device norm.
cuda::StepLaunch read_launch(const py::dict& hyper) {
  cuda::StepLaunch launch;
  if (hyper.contains("stream")) launch.stream = py::cast<uintptr_t>(hyper["stream"]);
  if (hyper.contains("clip_norm")) {
    launch.clip_norm = to_view(hyper["clip_norm"], "clip_norm");
    launch.max_norm = py::cast<double>(hyper["max_norm"]);
  }
  return launch;
}

// fn(views) on the gradients of `grads`, the GIL released (CPU only: the core checks them).
template <typename Fn>
auto on_gradients(const py::list& grads, const Fn& fn) {
  std::vector<TensorView> views;
  for (auto g : grads) views.push_back(to_view(g, "grad"));
  py::gil_scoped_release release;
  return fn(views.data(), static_cast<int>(views.size()));
}

}  // namespace

void register_optim(py::module_& m) {
  m.def(
      "optimizer_step",
      [](const py::dict& hyper, const py::list& tensors) {
        const OptimizerHyper h = read_hyper(hyper);
        std::vector<OptimizerTensor> ts;
        for (auto item : tensors) ts.push_back(read_tensor(py::cast<py::dict>(item)));
        const TensorView first = ts.empty() ? TensorView{} : ts[0].param;
        const bool gpu = on_cuda(first);
        FASTRNN_CHECK(gpu || !hyper.contains("clip_norm"), "optimizer_step: clip_norm is for CUDA parameters");
        const cuda::StepLaunch launch = gpu ? read_launch(hyper) : cuda::StepLaunch{};
        const int count = static_cast<int>(ts.size());
        run_on_device(
            "optimizer_step", first, [&] { cpu::optimizer_step(h, ts.data(), count); },
            [&] { cuda::optimizer_step(h, ts.data(), count, launch); });
      },
      py::arg("hyper"), py::arg("tensors"),
      "One fused step of a parameter group: hyper-parameters (kind 0 SGD, 1 Adam, 2 RMSprop, 3 Adagrad) and per "
      "parameter a dict of param, grad, state0..state2, step, fresh_buffer. CUDA parameters take the step on "
      "hyper['stream'], with optional clipping by hyper['clip_norm'] (a device scalar) and hyper['max_norm'].");
  m.def(
      "gradient_norm",
      [](const py::list& grads, double norm_type) {
        return on_gradients(grads, [&](const TensorView* g, int n) { return cpu::gradient_norm(g, n, norm_type); });
      },
      py::arg("grads"), py::arg("norm_type"));
  m.def(
      "gradient_norms",
      [](const py::list& grads, double norm_type) {
        return on_gradients(grads, [&](const TensorView* g, int n) {
          std::vector<double> norms(n);
          for (int k = 0; k < n; ++k) norms[k] = cpu::gradient_norm(&g[k], 1, norm_type);
          return norms;
        });
      },
      py::arg("grads"), py::arg("norm_type"),
      "The norm of each gradient (float64 accumulation), as torch.nn.utils.clip_grad_norm_ stacks them.");
  m.def(
      "scale_gradients",
      [](const py::list& grads, double scale) {
        on_gradients(grads, [&](const TensorView* g, int n) { cpu::scale_gradients(g, n, scale); });
      },
      py::arg("grads"), py::arg("scale"));
}

}  // namespace fastrnn::bindings
