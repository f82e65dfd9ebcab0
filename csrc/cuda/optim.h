#pragma once
// Fused optimizer steps on CUDA: one multi-tensor launch per group of up to 16 parameters,
// on the caller's stream, with no host synchronisation. The update rules are the CPU's
// (common/optim_rules.h); math in float32 for float16/bfloat16/float32 parameters, float64
// for float64.
#include <cstdint>

#include "common/optim_params.h"

namespace fastrnn::cuda {

struct StepLaunch {
  uintptr_t stream = 0;  // cudaStream_t of the caller (0: the legacy default stream)
  // When defined: a float32 scalar on the parameters' device holding the total gradient
  // norm; the gradients are then scaled by min(max_norm / (norm + 1e-6), 1) inside the step,
  // read on the device, so clipping needs no copy of the norm to the host.
  TensorView clip_norm;
  double max_norm = 0;
};

// tensors: parameters, gradients and state on one CUDA device; step counters on the CPU
// (torch's default for groups that are not capturable), incremented on the host before launch.
void optimizer_step(const OptimizerHyper& hyper, const OptimizerTensor* tensors, int count,
                    const StepLaunch& launch);

}  // namespace fastrnn::cuda
