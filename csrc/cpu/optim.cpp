// Fused optimizer steps (torch.optim's update rules, element by element) and gradient-norm
// clipping. The updates are bound by memory traffic, so one portable build vectorised by the
// compiler is enough; each call is one pass over every tensor it is given.
#include "cpu/optim.h"

#include <omp.h>

#include <cmath>
#include <type_traits>

#include "common/error.h"
#include "common/parallel.h"

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

template <typename T>
T sign_of(T x) {
  return T((x > T(0)) - (x < T(0)));
}

// torch's lerp: start + w (end - start) for w < 0.5, end - (end - start)(1 - w) otherwise.
// Both are base + c (end - start), with base and c fixed per call, so a loop using it selects
// between two loaded values instead of branching between two formulas.
template <typename T>
struct Lerp {
  bool low;
  T c;
  explicit Lerp(double weight) : low(weight < 0.5), c(T(weight < 0.5 ? weight : -(1 - weight))) {}
  T operator()(T start, T end) const {
    const T base = low ? start : end;
    return base + c * (end - start);
  }
};

// The gradient as every rule starts from: scaled (clipping), negated (maximize), plus the
// L2 and L1 terms. A zero coefficient adds nothing, not 0 * param (which would turn an
// infinite parameter into NaN), as in torch.
// (Selects, not branches, so the loops that use it vectorise.)
template <typename T>
struct GradientPrep {
  T scale, weight_decay, l1_decay;
  bool use_weight_decay, use_l1;
  explicit GradientPrep(const OptimizerHyper& h, bool coupled_weight_decay = true)
      : scale(T(h.maximize ? -h.grad_scale : h.grad_scale)),
        weight_decay(T(coupled_weight_decay ? h.weight_decay : 0.0)),
        l1_decay(T(h.l1_decay)),
        use_weight_decay(weight_decay != T(0)),
        use_l1(l1_decay != T(0)) {}
  T operator()(T g, T p) const {
    g = g * scale;
    g = use_weight_decay ? g + weight_decay * p : g;
    return use_l1 ? g + l1_decay * sign_of(p) : g;
  }
};

// Calls fn with std::true_type or std::false_type: a run-time choice made a compile-time one,
// so the element loops carry no branches (optional state tensors become absent stores).
template <typename Fn>
void with_flag(bool flag, const Fn& fn) {
  if (flag) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

template <typename T>
double step_value(const TensorView& step) {
  return step.dtype == DType::Float64 ? *step.data_as<double>() : double(*step.data_as<float>());
}

template <typename T, bool kMomentum>
void sgd(const OptimizerHyper& h, const OptimizerTensor& t, int64_t begin, int64_t end) {
  T* p = t.param.data_as<T>();
  const T* g = t.grad.data_as<T>();
  T* buf = kMomentum ? t.state[0].data_as<T>() : nullptr;
  const GradientPrep<T> prep(h);
  const T lr = T(h.lr), momentum = T(h.momentum), keep = T(1 - h.dampening);
  const bool fresh = t.fresh_buffer, nesterov = h.nesterov;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    T d = prep(g[i], p[i]);
    if (kMomentum) {
      const T old = buf[i];  // loaded either way: a load inside one arm of ?: blocks vectorising
      const T b = fresh ? d : old * momentum + keep * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] + (-lr) * d;
  }
}

template <typename T, bool kAmsgrad>
void adam(const OptimizerHyper& h, const OptimizerTensor& t, int64_t begin, int64_t end) {
  T* p = t.param.data_as<T>();
  const T* g = t.grad.data_as<T>();
  T* m = t.state[0].data_as<T>();
  T* v = t.state[1].data_as<T>();
  T* vmax = kAmsgrad ? t.state[2].data_as<T>() : nullptr;
  const double step = step_value<T>(t.step);
  const double bias1 = 1 - std::pow(h.beta1, step), bias2 = 1 - std::pow(h.beta2, step);
  const T step_size = T(h.lr / bias1), bias2_sqrt = T(std::sqrt(bias2)), eps = T(h.eps);
  const Lerp<T> toward(1 - h.beta1);
  const T beta2 = T(h.beta2), w2 = T(1 - h.beta2);
  const GradientPrep<T> prep(h, !h.decoupled_weight_decay);
  const bool decay = h.decoupled_weight_decay && h.weight_decay != 0;
  const T shrink = T(1 - h.lr * h.weight_decay);
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T pi = decay ? p[i] * shrink : p[i];
    const T d = prep(g[i], p[i]);
    const T mi = toward(m[i], d);
    const T vi = v[i] * beta2 + w2 * d * d;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if (kAmsgrad) {
      const T old = vmax[i];
      second = (old > vi) | (old != old) ? old : vi;  // torch.maximum keeps NaN; | not ||: no branch
      vmax[i] = second;
    }
    const T denom = std::sqrt(second) / bias2_sqrt + eps;
    p[i] = pi + (-step_size) * mi / denom;
  }
}

template <typename T, bool kMomentum, bool kCentered>
void rmsprop(const OptimizerHyper& h, const OptimizerTensor& t, int64_t begin, int64_t end) {
  T* p = t.param.data_as<T>();
  const T* g = t.grad.data_as<T>();
  T* square_avg = t.state[0].data_as<T>();
  T* buf = kMomentum ? t.state[1].data_as<T>() : nullptr;
  T* grad_avg = kCentered ? t.state[2].data_as<T>() : nullptr;
  const GradientPrep<T> prep(h);
  const T alpha = T(h.alpha), w = T(1 - h.alpha), eps = T(h.eps), lr = T(h.lr), momentum = T(h.momentum);
  const Lerp<T> toward(1 - h.alpha);
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T d = prep(g[i], p[i]);
    const T sq = square_avg[i] * alpha + w * d * d;
    square_avg[i] = sq;
    T avg;
    if (kCentered) {
      const T ga = toward(grad_avg[i], d);
      grad_avg[i] = ga;
      avg = std::sqrt(sq + T(-1) * ga * ga);
    } else {
      avg = std::sqrt(sq);
    }
    avg = avg + eps;
    if (kMomentum) {
      const T b = buf[i] * momentum + d / avg;
      buf[i] = b;
      p[i] = p[i] + (-lr) * b;
    } else {
      p[i] = p[i] + (-lr) * d / avg;
    }
  }
}

template <typename T>
void adagrad(const OptimizerHyper& h, const OptimizerTensor& t, int64_t begin, int64_t end) {
  T* p = t.param.data_as<T>();
  const T* g = t.grad.data_as<T>();
  T* sum = t.state[0].data_as<T>();
  const double step = step_value<T>(t.step);
  const T clr = T(h.lr / (1 + (step - 1) * h.lr_decay)), eps = T(h.eps);
  const GradientPrep<T> prep(h);
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T d = prep(g[i], p[i]);
    const T s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] + (-clr) * d / (std::sqrt(s) + eps);
  }
}

// Which state tensors a rule reads, given its options.
bool uses_state(const OptimizerHyper& h, int k) {
  switch (h.kind) {
    case OptimizerKind::Sgd: return k == 0 && h.momentum != 0;
    case OptimizerKind::Adam: return k < 2 || (k == 2 && h.amsgrad);
    case OptimizerKind::RmsProp: return k == 0 || (k == 1 && h.momentum > 0) || (k == 2 && h.centered);
    case OptimizerKind::Adagrad: return k == 0;
  }
  return false;
}

void check_tensor(const char* op, const OptimizerHyper& h, const OptimizerTensor& t, DType dtype) {
  FASTRNN_CHECK(t.param.defined(), op, ": every parameter needs its tensor");
  FASTRNN_CHECK(t.param.dtype == DType::Float32 || t.param.dtype == DType::Float64, op,
                ": fused steps take float32 or float64 parameters, got ", dtype_name(t.param.dtype));
  FASTRNN_CHECK(t.param.dtype == dtype, op, ": all parameters of one call must share a dtype");
  auto same = [&](const char* name, const TensorView& v) {
    FASTRNN_CHECK(v.defined() && v.device == DeviceType::CPU && v.dtype == dtype && v.numel() == t.param.numel() &&
                      v.is_contiguous(),
                  op, ": ", name, " must be a contiguous CPU tensor like its parameter");
  };
  same("param", t.param);
  same("grad", t.grad);
  for (int k = 0; k < 3; ++k) {
    if (uses_state(h, k)) same("state", t.state[k]);
  }
  if (h.kind != OptimizerKind::Sgd) {
    FASTRNN_CHECK(t.step.defined() && t.step.numel() == 1 && t.step.device == DeviceType::CPU &&
                      (t.step.dtype == DType::Float32 || t.step.dtype == DType::Float64),
                  op, ": step must be a float scalar on the CPU");
  }
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
  if (count == 0) return;
  const DType dtype = tensors[0].param.dtype;
  for (int k = 0; k < count; ++k) check_tensor(op, h, tensors[k], dtype);
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
  auto run = [&](auto zero) {
    using T = decltype(zero);
    auto each_share = [&](auto update) { for_each_share(count, views, update); };
    switch (h.kind) {
      case OptimizerKind::Sgd:
        return with_flag(h.momentum != 0, [&](auto momentum) {
          each_share([&](int k, int64_t b, int64_t e) { sgd<T, momentum>(h, tensors[k], b, e); });
        });
      case OptimizerKind::Adam:
        return with_flag(h.amsgrad, [&](auto amsgrad) {
          each_share([&](int k, int64_t b, int64_t e) { adam<T, amsgrad>(h, tensors[k], b, e); });
        });
      case OptimizerKind::RmsProp:
        return with_flag(h.momentum > 0, [&](auto momentum) {
          with_flag(h.centered, [&](auto centered) {
            each_share([&](int k, int64_t b, int64_t e) { rmsprop<T, momentum, centered>(h, tensors[k], b, e); });
          });
        });
      case OptimizerKind::Adagrad:
        return each_share([&](int k, int64_t b, int64_t e) { adagrad<T>(h, tensors[k], b, e); });
    }
  };
  if (dtype == DType::Float64) {
    run(0.0);
  } else {
    run(0.0f);
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
