#include "common/optim_params.h"

#include "common/error.h"
#include "common/optim_rules.h"

namespace fastrnn {

void check_optimizer_tensor(const char* op, const OptimizerHyper& h, const OptimizerTensor& t,
                            const TensorView& first, DeviceType device, const char* like) {
  auto same = [&](const char* name, const TensorView& v) {
    const bool same_device = v.device == device && (device != DeviceType::CUDA || v.device_index == first.device_index);
    FASTRNN_CHECK(v.defined() && same_device && v.dtype == first.dtype && v.is_contiguous(), op, ": ", name,
                  " must be ", like);
    // Elements are paired by position: one of another shape would pair them in flat order.
    FASTRNN_CHECK(v.same_shape(t.param), op, ": ", name, " has shape ", v.shape_str(), " but its parameter has shape ",
                  t.param.shape_str());
  };
  same("param", t.param);
  same("grad", t.grad);
  for (int k = 0; k < 3; ++k) {
    if (optim::uses_state(h, k)) same("state", t.state[k]);
  }
  if (h.kind != OptimizerKind::Sgd) {
    FASTRNN_CHECK(t.step.defined() && t.step.numel() == 1 && t.step.device == DeviceType::CPU &&
                      (t.step.dtype == DType::Float32 || t.step.dtype == DType::Float64),
                  op, ": step must be a float scalar on the CPU");
  }
}

}  // namespace fastrnn
