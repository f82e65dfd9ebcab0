// Fused optimizer steps and gradient-norm clipping on the CPU. The update rules themselves are
// in common/optim_rules.h (shared with the CUDA kernels). The updates are bound by memory
// traffic, but not at SSE width: the update loop (optim_loop.h) is also built for AVX2 and
// AVX-512 (optim_avx2.cpp, optim_avx512.cpp; see bench/NOTES.md, optimizers);
// each call is one pass over every tensor it is given.
#include "cpu/optim.h"

#include <omp.h>

#include <cmath>

#include "common/error.h"
#include "common/optim_rules.h"
#include "common/parallel.h"
#include "cpu/simd/dispatch.h"

namespace fastrnn::cpu {
namespace {

constexpr int64_t kSerialBelow = 32768;  // elements: less than a parallel region is worth
constexpr int64_t kGrain = 16;           // thread boundaries fall on whole cache lines of floats

// Calls fn(k, begin, end) for this thread's share of the elements of all tensors, viewed as
// one concatenated array; views(k) is tensor k's view.
template <typename Views, typename Fn>
void for_each_share(int count, const Views& views, const Fn& fn, int max_threads = 1 << 30) {
  int64_t total = 0;
  for (int k = 0; k < count; ++k) total += views(k).numel();
  int threads = total < kSerialBelow || omp_in_parallel() ? 1 : omp_get_max_threads();
  threads = threads < max_threads ? threads : max_threads;
#pragma omp parallel num_threads(threads)
  {
    const Range units = split((total + kGrain - 1) / kGrain, omp_get_thread_num(), omp_get_num_threads());
    const int64_t lo = units.begin * kGrain, hi = units.end * kGrain < total ? units.end * kGrain : total;
    int64_t offset = 0;
    for (int k = 0; k < count && offset < hi; ++k) {
      const int64_t n = views(k).numel();
      const int64_t b = lo > offset ? lo - offset : 0, e = hi < offset + n ? hi - offset : n;
      if (b < e) fn(k, b, e);
      offset += n;
    }
  }
}

namespace isa_generic {
#include "cpu/optim_loop.h"
}  // namespace isa_generic

double step_value(const TensorView& step) {
  return step.dtype == DType::Float64 ? *step.data_as<double>() : double(*step.data_as<float>());
}

// Applies h's rule to elements [begin, end) of one tensor.
template <typename T>
void update_share(const OptimizerHyper& h, const OptimizerTensor& t, int64_t begin, int64_t end) {
  const double step = h.kind == OptimizerKind::Sgd ? 0.0 : step_value(t.step);
  T* p = t.param.data_as<T>();
  const T* g = t.grad.data_as<T>();
  T* s0 = optim::uses_state(h, 0) ? t.state[0].data_as<T>() : nullptr;
  T* s1 = optim::uses_state(h, 1) ? t.state[1].data_as<T>() : nullptr;
  T* s2 = optim::uses_state(h, 2) ? t.state[2].data_as<T>() : nullptr;
  FASTRNN_ISA_DISPATCH(active_isa(), optimizer_update<T>, h, step, t.fresh_buffer, begin, end, p, g, s0, s1, s2);
}

void check_tensor(const char* op, const OptimizerHyper& h, const OptimizerTensor& t, const TensorView& first) {
  FASTRNN_CHECK(t.param.defined(), op, ": every parameter needs its tensor");
  FASTRNN_CHECK(t.param.dtype == DType::Float32 || t.param.dtype == DType::Float64, op,
                ": fused steps take float32 or float64 parameters, got ", dtype_name(t.param.dtype));
  FASTRNN_CHECK(t.param.dtype == first.dtype, op, ": all parameters of one call must share a dtype");
  check_optimizer_tensor(op, h, t, first, DeviceType::CPU, "a contiguous CPU tensor like its parameter");
}

template <typename T>
double norm_of_share(const TensorView& g, int64_t begin, int64_t end, double p) {
  const T* x = g.data_as<T>();
  double acc = 0;
  if (std::isinf(p)) {
    for (int64_t i = begin; i < end; ++i) {
      const double a = std::fabs(double(x[i]));
      acc = a > acc || a != a ? a : acc;  // NaN wins, as in torch
    }
  } else if (p == 2) {
#pragma omp simd reduction(+ : acc)
    for (int64_t i = begin; i < end; ++i) acc += double(x[i]) * double(x[i]);
  } else if (p == 1) {
#pragma omp simd reduction(+ : acc)
    for (int64_t i = begin; i < end; ++i) acc += std::fabs(double(x[i]));
  } else {
    for (int64_t i = begin; i < end; ++i) acc += std::pow(std::fabs(double(x[i])), p);
  }
  return acc;
}

void check_gradients(const char* op, const TensorView* grads, int count) {
  for (int k = 0; k < count; ++k) {
    const TensorView& g = grads[k];
    FASTRNN_CHECK(g.defined() && g.device == DeviceType::CPU && g.is_contiguous() &&
                      (g.dtype == DType::Float32 || g.dtype == DType::Float64),
                  op, ": gradients must be contiguous float32 or float64 CPU tensors");
  }
}

}  // namespace

void optimizer_step(const OptimizerHyper& h, const OptimizerTensor* tensors, int count) {
  const char* op = "optimizer_step";
  check_optimizer_hyper(op, h);
  if (count == 0) return;
  const DType dtype = tensors[0].param.dtype;
  for (int k = 0; k < count; ++k) check_tensor(op, h, tensors[k], tensors[0].param);
  // Step counts first, one scalar per parameter: the threads then read them.
  if (h.kind != OptimizerKind::Sgd) {
    for (int k = 0; k < count; ++k) {
      const OptimizerTensor& t = tensors[k];
      if (t.step.dtype == DType::Float64) {
        *t.step.data_as<double>() += 1;
      } else {
        *t.step.data_as<float>() += 1;
      }
    }
  }
  auto views = [&](int k) -> const TensorView& { return tensors[k].param; };
  if (dtype == DType::Float64) {
    for_each_share(count, views, [&](int k, int64_t b, int64_t e) { update_share<double>(h, tensors[k], b, e); });
  } else {
    for_each_share(count, views, [&](int k, int64_t b, int64_t e) { update_share<float>(h, tensors[k], b, e); });
  }
}

double gradient_norm(const TensorView* grads, int count, double norm_type) {
  const char* op = "gradient_norm";
  FASTRNN_CHECK_VALUE(norm_type > 0, op, ": norm_type must be positive (or inf), got ", norm_type);
  check_gradients(op, grads, count);
  const bool is_max = std::isinf(norm_type);
  constexpr int kMaxThreads = 256;
  double partial[kMaxThreads] = {};  // one slot per thread
  auto views = [&](int k) -> const TensorView& { return grads[k]; };
  for_each_share(
      count, views,
      [&](int k, int64_t begin, int64_t end) {
        const double share = grads[k].dtype == DType::Float64 ? norm_of_share<double>(grads[k], begin, end, norm_type)
                                                              : norm_of_share<float>(grads[k], begin, end, norm_type);
        double& acc = partial[omp_get_thread_num()];
        acc = is_max ? (share > acc || share != share ? share : acc) : acc + share;
      },
      kMaxThreads);
  const int threads = kMaxThreads;
  double total = 0;
  for (int k = 0; k < threads; ++k) {
    total = is_max ? (partial[k] > total || partial[k] != partial[k] ? partial[k] : total) : total + partial[k];
  }
  if (is_max) return total;
  return norm_type == 2 ? std::sqrt(total) : norm_type == 1 ? total : std::pow(total, 1 / norm_type);
}

void scale_gradients(const TensorView* grads, int count, double scale) {
  check_gradients("scale_gradients", grads, count);
  auto views = [&](int k) -> const TensorView& { return grads[k]; };
  for_each_share(count, views, [&](int k, int64_t begin, int64_t end) {
    if (grads[k].dtype == DType::Float64) {
      double* x = grads[k].data_as<double>();
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) x[i] *= scale;
    } else {
      float* x = grads[k].data_as<float>();
      const float s = static_cast<float>(scale);
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) x[i] *= s;
    }
  });
}

}  // namespace fastrnn::cpu
