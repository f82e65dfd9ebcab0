// Fused optimizer steps and gradient clipping. A step takes the group's hyper-parameters as a
// dict and one dict of arrays per parameter; the GIL is released while the kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/view.h"
#include "common/error.h"
#include "common/optim_params.h"
#include "cpu/optim.h"
#if defined(FASTRNN_WITH_CUDA)
#include "cuda/optim.h"
#endif

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

OptimizerHyper read_hyper(const py::dict& d) {
  static const char* known[] = {"kind", "lr", "weight_decay", "l1_decay", "grad_scale", "maximize", "eps", "beta1",
                                "beta2", "amsgrad", "decoupled_weight_decay", "momentum", "dampening", "nesterov",
                                "alpha", "centered", "lr_decay",
                                // CUDA only: the caller's stream, and clipping by a norm on the device
                                "stream", "clip_norm", "max_norm"};
  for (auto item : d) {
    const std::string key = py::str(item.first);
    bool found = false;
    for (const char* name : known) found = found || key == name;
    FASTRNN_CHECK_KIND(ErrorKind::Type, found, "optimizer_step: unexpected hyper-parameter '", key, "'");
  }
  auto number = [&](const char* name) { return d.contains(name) ? py::cast<double>(d[name]) : 0.0; };
  auto flag = [&](const char* name) { return d.contains(name) && py::cast<bool>(d[name]); };
  OptimizerHyper h;
  const int kind = d.contains("kind") ? py::cast<int>(d["kind"]) : -1;
  FASTRNN_CHECK_VALUE(kind >= 0 && kind <= 3, "optimizer_step: unknown optimizer kind ", kind);
  h.kind = static_cast<OptimizerKind>(kind);
  h.lr = number("lr");
  h.weight_decay = number("weight_decay");
  h.l1_decay = number("l1_decay");
  h.grad_scale = d.contains("grad_scale") ? number("grad_scale") : 1.0;
  h.maximize = flag("maximize");
  h.eps = number("eps");
  h.beta1 = number("beta1");
  h.beta2 = number("beta2");
  h.amsgrad = flag("amsgrad");
  h.decoupled_weight_decay = flag("decoupled_weight_decay");
  h.momentum = number("momentum");
  h.dampening = number("dampening");
  h.nesterov = flag("nesterov");
  h.alpha = number("alpha");
  h.centered = flag("centered");
  h.lr_decay = number("lr_decay");
  return h;
}

std::vector<TensorView> read_views(const py::list& arrays, const char* name) {
  std::vector<TensorView> views;
  for (auto a : arrays) views.push_back(to_view(a, name));
  return views;
}

// CUDA tensors go to the CUDA kernels, when this build has them.
void step_on_cuda(const py::dict& hyper, const OptimizerHyper& h, const std::vector<OptimizerTensor>& ts) {
#if defined(FASTRNN_WITH_CUDA)
  cuda::StepLaunch launch;
  if (hyper.contains("stream")) launch.stream = py::cast<uintptr_t>(hyper["stream"]);
  if (hyper.contains("clip_norm")) {
    launch.clip_norm = to_view(hyper["clip_norm"], "clip_norm");
    launch.max_norm = py::cast<double>(hyper["max_norm"]);
  }
  py::gil_scoped_release release;
  cuda::optimizer_step(h, ts.data(), static_cast<int>(ts.size()), launch);
#else
  (void)hyper, (void)h, (void)ts;
  FASTRNN_CHECK(false, "optimizer_step: this build of fastrnn has no CUDA kernels (install with FASTRNN_CUDA=ON)");
#endif
}

void require_cpu(const char* op, const std::vector<TensorView>& views) {
  for (const TensorView& v : views) {
    FASTRNN_CHECK(v.device == DeviceType::CPU, op, ": only CPU tensors are supported by this build");
  }
}

}  // namespace

void register_optim(py::module_& m) {
  m.def(
      "optimizer_step",
      [](const py::dict& hyper, const py::list& tensors) {
        const OptimizerHyper h = read_hyper(hyper);
        std::vector<OptimizerTensor> ts;
        for (auto item : tensors) {
          const py::dict t = py::cast<py::dict>(item);
          OptimizerTensor o;
          o.param = to_view(t["param"], "param");
          o.grad = to_view(t["grad"], "grad");
          for (int k = 0; k < 3; ++k) {
            const std::string key = "state" + std::to_string(k);
            if (t.contains(key.c_str())) o.state[k] = to_view(t[key.c_str()], "state");
          }
          if (t.contains("step")) o.step = to_view(t["step"], "step");
          o.fresh_buffer = t.contains("fresh_buffer") && py::cast<bool>(t["fresh_buffer"]);
          ts.push_back(o);
        }
        if (!ts.empty() && ts[0].param.device == DeviceType::CUDA) return step_on_cuda(hyper, h, ts);
        FASTRNN_CHECK(!hyper.contains("clip_norm"), "optimizer_step: clip_norm is for CUDA parameters");
        for (const OptimizerTensor& o : ts) {
          for (const TensorView* v : {&o.param, &o.grad, &o.state[0], &o.state[1], &o.state[2], &o.step}) {
            FASTRNN_CHECK(!v->defined() || v->device == DeviceType::CPU, "optimizer_step",
                          ": parameters, gradients, state and step of a CPU step must all be on the CPU");
          }
        }
        py::gil_scoped_release release;
        cpu::optimizer_step(h, ts.data(), static_cast<int>(ts.size()));
      },
      py::arg("hyper"), py::arg("tensors"),
      "One fused step of a parameter group: hyper-parameters (kind 0 SGD, 1 Adam, 2 RMSprop, 3 Adagrad) and per "
      "parameter a dict of param, grad, state0..state2, step, fresh_buffer. CUDA parameters take the step on "
      "hyper['stream'], with optional clipping by hyper['clip_norm'] (a device scalar) and hyper['max_norm'].");
  m.def(
      "gradient_norm",
      [](const py::list& grads, double norm_type) {
        const std::vector<TensorView> views = read_views(grads, "grad");
        require_cpu("gradient_norm", views);
        py::gil_scoped_release release;
        return cpu::gradient_norm(views.data(), static_cast<int>(views.size()), norm_type);
      },
      py::arg("grads"), py::arg("norm_type"));
  m.def(
      "gradient_norms",
      [](const py::list& grads, double norm_type) {
        const std::vector<TensorView> views = read_views(grads, "grad");
        require_cpu("gradient_norms", views);
        std::vector<double> norms(views.size());
        py::gil_scoped_release release;
        for (size_t k = 0; k < views.size(); ++k) norms[k] = cpu::gradient_norm(&views[k], 1, norm_type);
        return norms;
      },
      py::arg("grads"), py::arg("norm_type"),
      "The norm of each gradient (float64 accumulation), as torch.nn.utils.clip_grad_norm_ stacks them.");
  m.def(
      "scale_gradients",
      [](const py::list& grads, double scale) {
        const std::vector<TensorView> views = read_views(grads, "grad");
        require_cpu("scale_gradients", views);
        py::gil_scoped_release release;
        cpu::scale_gradients(views.data(), static_cast<int>(views.size()), scale);
      },
      py::arg("grads"), py::arg("scale"));
}

}  // namespace fastrnn::bindings
