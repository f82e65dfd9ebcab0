#pragma once
// torch.optim's update rules (2.x, the single-tensor implementations), element by element,
// shared by the CPU loops (csrc/cpu/optim.cpp) and the CUDA kernels (csrc/cuda/optim.cu).
//
// Each rule is built once per tensor on the host (from the group's hyper-parameters and the
// tensor's step count), then applied to element i of its arrays: p the parameter, g the
// gradient, s0..s2 the state tensors (see common/optim_params.h for which is which).
// The element code has no branches on run-time options (selects, or compile-time flags
// where a state tensor is absent), so the CPU loops vectorise.
//
// In an unnamed namespace, as the cells are (see cells/activations.h).
#include <math.h>
#include <stdint.h>

#include "common/macros.h"
#include "common/optim_params.h"

namespace fastrnn::optim {
namespace {

FASTRNN_HOST_DEVICE float root(float x) { return sqrtf(x); }
FASTRNN_HOST_DEVICE double root(double x) { return sqrt(x); }

template <typename T>
FASTRNN_HOST_DEVICE T sign_of(T x) {
  return T((x > T(0)) - (x < T(0)));
}

// torch's lerp: start + w (end - start) for w < 0.5, end - (end - start)(1 - w) otherwise.
// Both are base + c (end - start), with base and c fixed per tensor: a select between two
// loaded values, not a branch between two formulas.
template <typename T>
struct Lerp {
  bool low;
  T c;
  explicit Lerp(double weight) : low(weight < 0.5), c(T(weight < 0.5 ? weight : -(1 - weight))) {}
  FASTRNN_HOST_DEVICE T operator()(T start, T end) const {
    const T base = low ? start : end;
    return base + c * (end - start);
  }
};

// The gradient every rule starts from: scaled (clipping folded into the step), negated
// (maximize), plus the L2 and L1 terms. A zero coefficient adds nothing, not 0 * param (which
// would turn an infinite parameter into NaN), as in torch.
template <typename T>
struct GradientPrep {
  T scale, weight_decay, l1_decay;
  bool use_weight_decay, use_l1;
  explicit GradientPrep(const OptimizerHyper& h, bool coupled_weight_decay = true)
      : scale(T(h.maximize ? -h.grad_scale : h.grad_scale)),
        weight_decay(T(coupled_weight_decay ? h.weight_decay : 0.0)),
        l1_decay(T(h.l1_decay)),
        use_weight_decay(coupled_weight_decay && h.weight_decay != 0),
        use_l1(h.l1_decay != 0) {}
  FASTRNN_HOST_DEVICE T operator()(T g, T p) const {
    g = g * scale;
    g = use_weight_decay ? g + weight_decay * p : g;
    return use_l1 ? g + l1_decay * sign_of(p) : g;
  }
};

// SGD: buf = momentum buf + (1 - dampening) g (the gradient itself at the first step),
// g = g + momentum buf (Nesterov) or buf, p -= lr g.
template <typename T, bool kMomentum>
struct SgdRule {
  GradientPrep<T> prep;
  T lr, momentum, keep;
  bool fresh, nesterov;
  SgdRule(const OptimizerHyper& h, bool fresh_buffer)
      : prep(h), lr(T(h.lr)), momentum(T(h.momentum)), keep(T(1 - h.dampening)), fresh(fresh_buffer),
        nesterov(h.nesterov) {}
  FASTRNN_HOST_DEVICE void operator()(int64_t i, T* p, const T* g, T* buf, T*, T*) const {
    T d = prep(g[i], p[i]);
    if (kMomentum) {
      const T old = buf[i];  // loaded either way: a load inside one arm of ?: blocks vectorising
      const T b = fresh ? d : old * momentum + keep * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] + (-lr) * d;
  }
};

// Adam / AdamW: m = lerp(m, g, 1 - beta1), v = beta2 v + (1 - beta2) g^2 (max over steps with
// amsgrad), p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps); AdamW first
// shrinks p by 1 - lr * weight_decay.
template <typename T, bool kAmsgrad>
struct AdamRule {
  GradientPrep<T> prep;
  Lerp<T> toward;
  T beta2, w2, step_size, bias2_sqrt, eps, shrink;
  bool decay;
  AdamRule(const OptimizerHyper& h, double step)
      : prep(h, !h.decoupled_weight_decay),
        toward(1 - h.beta1),
        beta2(T(h.beta2)),
        w2(T(1 - h.beta2)),
        step_size(T(h.lr / (1 - pow(h.beta1, step)))),
        bias2_sqrt(T(sqrt(1 - pow(h.beta2, step)))),
        eps(T(h.eps)),
        shrink(T(1 - h.lr * h.weight_decay)),
        decay(h.decoupled_weight_decay && h.weight_decay != 0) {}
  FASTRNN_HOST_DEVICE void operator()(int64_t i, T* p, const T* g, T* m, T* v, T* vmax) const {
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
    const T denom = root(second) / bias2_sqrt + eps;
    p[i] = pi + (-step_size) * mi / denom;
  }
};

// RMSprop: sq = alpha sq + (1 - alpha) g^2; avg = sqrt(sq - ga^2) (centered, ga = lerp(ga, g,
// 1 - alpha)) or sqrt(sq), plus eps; buf = momentum buf + g / avg, p -= lr buf, or
// p -= lr g / avg without momentum.
template <typename T, bool kMomentum, bool kCentered>
struct RmsPropRule {
  GradientPrep<T> prep;
  Lerp<T> toward;
  T alpha, w, eps, lr, momentum;
  explicit RmsPropRule(const OptimizerHyper& h)
      : prep(h), toward(1 - h.alpha), alpha(T(h.alpha)), w(T(1 - h.alpha)), eps(T(h.eps)), lr(T(h.lr)),
        momentum(T(h.momentum)) {}
  FASTRNN_HOST_DEVICE void operator()(int64_t i, T* p, const T* g, T* square_avg, T* buf, T* grad_avg) const {
    const T d = prep(g[i], p[i]);
    const T sq = square_avg[i] * alpha + w * d * d;
    square_avg[i] = sq;
    T avg;
    if (kCentered) {
      const T ga = toward(grad_avg[i], d);
      grad_avg[i] = ga;
      avg = root(sq + T(-1) * ga * ga);
    } else {
      avg = root(sq);
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
};

// Adagrad: sum += g^2, p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps).
template <typename T>
struct AdagradRule {
  GradientPrep<T> prep;
  T clr, eps;
  AdagradRule(const OptimizerHyper& h, double step)
      : prep(h), clr(T(h.lr / (1 + (step - 1) * h.lr_decay))), eps(T(h.eps)) {}
  FASTRNN_HOST_DEVICE void operator()(int64_t i, T* p, const T* g, T* sum, T*, T*) const {
    const T d = prep(g[i], p[i]);
    const T s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] + (-clr) * d / (root(s) + eps);
  }
};

// Calls fn(rule) with the rule of h's kind and options for a tensor at this step.
template <typename T, typename Fn>
void with_rule(const OptimizerHyper& h, double step, bool fresh_buffer, const Fn& fn) {
  switch (h.kind) {
    case OptimizerKind::Sgd:
      if (h.momentum != 0) return fn(SgdRule<T, true>(h, fresh_buffer));
      return fn(SgdRule<T, false>(h, fresh_buffer));
    case OptimizerKind::Adam:
      if (h.amsgrad) return fn(AdamRule<T, true>(h, step));
      return fn(AdamRule<T, false>(h, step));
    case OptimizerKind::RmsProp:
      if (h.momentum > 0) {
        if (h.centered) return fn(RmsPropRule<T, true, true>(h));
        return fn(RmsPropRule<T, true, false>(h));
      }
      if (h.centered) return fn(RmsPropRule<T, false, true>(h));
      return fn(RmsPropRule<T, false, false>(h));
    case OptimizerKind::Adagrad: return fn(AdagradRule<T>(h, step));
  }
}

// Which state tensors a rule reads, given its options.
inline bool uses_state(const OptimizerHyper& h, int k) {
  switch (h.kind) {
    case OptimizerKind::Sgd: return k == 0 && h.momentum != 0;
    case OptimizerKind::Adam: return k < 2 || (k == 2 && h.amsgrad);
    case OptimizerKind::RmsProp: return k == 0 || (k == 1 && h.momentum > 0) || (k == 2 && h.centered);
    case OptimizerKind::Adagrad: return k == 0;
  }
  return false;
}

}  // namespace
}  // namespace fastrnn::optim
