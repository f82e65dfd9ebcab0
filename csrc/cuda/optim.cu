// Fused optimizer steps on CUDA: a multi-tensor launch over chunks of up to 16 tensors.
// Each block owns one chunk of one tensor; each thread keeps kPerThread elements of every
// array in registers (all loads issued before the math), so an Adam step streams its five
// arrays at close to copy bandwidth.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/error.h"
#include "common/optim_rules.h"
#include "cuda/launch.h"
#include "cuda/optim.h"

namespace fastrnn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int64_t kChunk = int64_t(kThreads) * kPerThread * 8;  // elements per block
constexpr int kMaxTensors = 16;  // keeps the launch's argument struct under 4 KB

// Everything one launch needs, passed by value as the kernel's argument.
template <typename Rule, typename S>
struct Batch {
  int count = 0;
  int first_block[kMaxTensors + 1] = {};  // blocks [first_block[k], first_block[k+1]) work on tensor k
  int64_t numel[kMaxTensors] = {};
  S* param[kMaxTensors] = {};
  const S* grad[kMaxTensors] = {};
  S* state[3][kMaxTensors] = {};
  // The rules have no default constructor; slots are filled for the first `count` tensors.
  union Slot {
    Rule rule;
    char unset;
    Slot() : unset(0) {}
  } rules[kMaxTensors];
};

template <typename T, typename Rule, typename S>
__global__ void __launch_bounds__(kThreads)
    step_kernel(const __grid_constant__ Batch<Rule, S> batch, const float* clip_norm, float max_norm) {
  int k = 0;
  while (k + 1 < batch.count && int(blockIdx.x) >= batch.first_block[k + 1]) ++k;
  Rule rule = batch.rules[k].rule;
  if (clip_norm != nullptr) {
    // torch's clip coefficient, clamped at 1 with NaN kept.
    const float coefficient = max_norm / (*clip_norm + 1e-6f);
    rule.prep.scale = rule.prep.scale * T(coefficient < 1.0f || coefficient != coefficient ? coefficient : 1.0f);
  }
  const int64_t begin = int64_t(blockIdx.x - batch.first_block[k]) * kChunk;
  const int64_t end = begin + kChunk < batch.numel[k] ? begin + kChunk : batch.numel[k];
  S* p = batch.param[k];
  const S* g = batch.grad[k];
  S* s0 = batch.state[0][k];
  S* s1 = batch.state[1][k];
  S* s2 = batch.state[2][k];
  constexpr int states = Rule::kStates;
  for (int64_t base = begin + threadIdx.x; base < end; base += int64_t(kThreads) * kPerThread) {
    T pv[kPerThread], gv[kPerThread], a[kPerThread], b[kPerThread], c[kPerThread];
#pragma unroll
    for (int u = 0; u < kPerThread; ++u) {
      const int64_t i = base + int64_t(u) * kThreads;
      pv[u] = gv[u] = a[u] = b[u] = c[u] = T(0);
      if (i < end) {
        pv[u] = T(p[i]);
        gv[u] = T(g[i]);
        if constexpr ((states & 1) != 0) a[u] = T(s0[i]);
        if constexpr ((states & 2) != 0) b[u] = T(s1[i]);
        if constexpr ((states & 4) != 0) c[u] = T(s2[i]);
      }
    }
#pragma unroll
    for (int u = 0; u < kPerThread; ++u) {
      const int64_t i = base + int64_t(u) * kThreads;
      if (i < end) {
        rule(pv[u], gv[u], a[u], b[u], c[u]);
        p[i] = S(pv[u]);
        if constexpr ((states & 1) != 0) s0[i] = S(a[u]);
        if constexpr ((states & 2) != 0) s1[i] = S(b[u]);
        if constexpr ((states & 4) != 0) s2[i] = S(c[u]);
      }
    }
  }
}

double step_value(const TensorView& step) {
  return step.dtype == DType::Float64 ? *step.data_as<double>() : double(*step.data_as<float>());
}

template <typename T, typename S>
void run(const OptimizerHyper& h, const OptimizerTensor* tensors, int count, const StepLaunch& launch) {
  const float* clip_norm = launch.clip_norm.defined() ? launch.clip_norm.data_as<float>() : nullptr;
  const auto stream = reinterpret_cast<cudaStream_t>(launch.stream);
  optim::with_rule_type<T>(h, [&](auto* type) {
    using Rule = std::remove_pointer_t<decltype(type)>;
    static_assert(sizeof(Batch<Rule, S>) <= 4096, "kernel arguments are limited to 4 KB");
    for (int first = 0; first < count; first += kMaxTensors) {
      Batch<Rule, S> batch;
      batch.count = count - first < kMaxTensors ? count - first : kMaxTensors;
      int blocks = 0;
      for (int j = 0; j < batch.count; ++j) {
        const OptimizerTensor& t = tensors[first + j];
        const double step = h.kind == OptimizerKind::Sgd ? 0.0 : step_value(t.step);
        batch.rules[j].rule = Rule(h, step, t.fresh_buffer);
        batch.numel[j] = t.param.numel();
        batch.param[j] = t.param.data_as<S>();
        batch.grad[j] = t.grad.data_as<S>();
        for (int s = 0; s < 3; ++s) batch.state[s][j] = optim::uses_state(h, s) ? t.state[s].data_as<S>() : nullptr;
        batch.first_block[j] = blocks;
        const int64_t chunks = (batch.numel[j] + kChunk - 1) / kChunk;
        FASTRNN_CHECK(chunks < (int64_t(1) << 30) - blocks, "optimizer_step: tensor too large for one launch");
        blocks += int(chunks);
      }
      batch.first_block[batch.count] = blocks;
      if (blocks == 0) continue;
      step_kernel<T, Rule, S><<<blocks, kThreads, 0, stream>>>(batch, clip_norm, float(launch.max_norm));
      check_launch("optimizer_step");
    }
  });
}

}  // namespace

void optimizer_step(const OptimizerHyper& h, const OptimizerTensor* tensors, int count, const StepLaunch& launch) {
  check_optimizer_hyper("optimizer_step", h);
  if (count == 0) return;
  const TensorView& first = tensors[0].param;
  const DType dtype = first.dtype;
  FASTRNN_CHECK(dtype == DType::Float16 || dtype == DType::BFloat16 || dtype == DType::Float32 ||
                    dtype == DType::Float64,
                "optimizer_step: fused CUDA steps take float16, bfloat16, float32 or float64 parameters, got ",
                dtype_name(dtype));
  for (int k = 0; k < count; ++k) {
    check_optimizer_tensor("optimizer_step", h, tensors[k], first, DeviceType::CUDA,
                           "a contiguous CUDA tensor of its parameter's dtype and device");
  }
  if (launch.clip_norm.defined()) {
    const TensorView& n = launch.clip_norm;
    FASTRNN_CHECK(n.numel() == 1 && n.dtype == DType::Float32 && n.device == DeviceType::CUDA &&
                      n.device_index == first.device_index,
                  "optimizer_step: the clipping norm must be a float32 scalar on the parameters' device");
  }
  // Step counts first, on the host where torch keeps them: the rules are built from them.
  if (h.kind != OptimizerKind::Sgd) {
    for (int k = 0; k < count; ++k) {
      const TensorView& step = tensors[k].step;
      if (step.dtype == DType::Float64) {
        *step.data_as<double>() += 1;
      } else {
        *step.data_as<float>() += 1;
      }
    }
  }
  DeviceScope scope(first.device_index);
  switch (dtype) {
    case DType::Float16: return run<float, __half>(h, tensors, count, launch);
    case DType::BFloat16: return run<float, __nv_bfloat16>(h, tensors, count, launch);
    case DType::Float64: return run<double, double>(h, tensors, count, launch);
    default: return run<float, float>(h, tensors, count, launch);
  }
}

}  // namespace fastrnn::cuda
