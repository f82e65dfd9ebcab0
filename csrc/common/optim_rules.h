#pragma once
// torch.optim's update rules (2.x, the single-tensor implementations), element by element,
// shared by the CPU loops (csrc/cpu/optim.cpp) and the CUDA kernels (csrc/cuda/optim.cu).
//
// Each rule is built once per tensor on the host (from the group's hyper-parameters and the
// tensor's step count), then applied to one element's values in registers: p the parameter,
// g the gradient, s0..s2 the state (see common/optim_params.h for which is which); kStates
// says which state tensors the rule reads and writes (bit k for s_k). apply() does the loads
// and stores, converting from the storage type (fp16/bf16 on CUDA) to the math type.
// The element code has no branches on run-time options (selects, or compile-time flags
// where a state tensor is absent), so the CPU loops vectorise.
//
// In an unnamed namespace, as the cells are (see cells/activations.h).
#include <math.h>
#include <stdint.h>

#include <type_traits>

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
  SgdRule(const OptimizerHyper& h, double, bool fresh_buffer)
      : prep(h), lr(T(h.lr)), momentum(T(h.momentum)), keep(T(1 - h.dampening)), fresh(fresh_buffer),
        nesterov(h.nesterov) {}
  static constexpr int kStates = kMomentum ? 1 : 0;
  FASTRNN_HOST_DEVICE void operator()(T& p, T g, T& buf, T&, T&) const {
    T d = prep(g, p);
    if (kMomentum) {
      buf = fresh ? d : buf * momentum + keep * d;
      d = nesterov ? d + momentum * buf : buf;
    }
    p = p + (-lr) * d;
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
  AdamRule(const OptimizerHyper& h, double step, bool)
      : prep(h, !h.decoupled_weight_decay),
        toward(1 - h.beta1),
        beta2(T(h.beta2)),
        w2(T(1 - h.beta2)),
        step_size(T(h.lr / (1 - pow(h.beta1, step)))),
        bias2_sqrt(T(sqrt(1 - pow(h.beta2, step)))),
        eps(T(h.eps)),
        shrink(T(1 - h.lr * h.weight_decay)),
        decay(h.decoupled_weight_decay && h.weight_decay != 0) {}
  static constexpr int kStates = kAmsgrad ? 7 : 3;
  FASTRNN_HOST_DEVICE void operator()(T& p, T g, T& m, T& v, T& vmax) const {
    const T d = prep(g, p);
    m = toward(m, d);
    v = v * beta2 + w2 * d * d;
    T second = v;
    if (kAmsgrad) {
      vmax = (vmax > v) | (vmax != vmax) ? vmax : v;  // torch.maximum keeps NaN; | not ||: no branch
      second = vmax;
    }
    const T denom = root(second) / bias2_sqrt + eps;
    p = (decay ? p * shrink : p) + (-step_size) * m / denom;
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
  RmsPropRule(const OptimizerHyper& h, double, bool)
      : prep(h), toward(1 - h.alpha), alpha(T(h.alpha)), w(T(1 - h.alpha)), eps(T(h.eps)), lr(T(h.lr)),
        momentum(T(h.momentum)) {}
  static constexpr int kStates = 1 | (kMomentum ? 2 : 0) | (kCentered ? 4 : 0);
  FASTRNN_HOST_DEVICE void operator()(T& p, T g, T& square_avg, T& buf, T& grad_avg) const {
    const T d = prep(g, p);
    square_avg = square_avg * alpha + w * d * d;
    T avg;
    if (kCentered) {
      grad_avg = toward(grad_avg, d);
      avg = root(square_avg + T(-1) * grad_avg * grad_avg);
    } else {
      avg = root(square_avg);
    }
    avg = avg + eps;
    if (kMomentum) {
      buf = buf * momentum + d / avg;
      p = p + (-lr) * buf;
    } else {
      p = p + (-lr) * d / avg;
    }
  }
};

// Adagrad: sum += g^2, p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps).
template <typename T>
struct AdagradRule {
  GradientPrep<T> prep;
  T clr, eps;
  AdagradRule(const OptimizerHyper& h, double step, bool)
      : prep(h), clr(T(h.lr / (1 + (step - 1) * h.lr_decay))), eps(T(h.eps)) {}
  static constexpr int kStates = 1;
  FASTRNN_HOST_DEVICE void operator()(T& p, T g, T& sum, T&, T&) const {
    const T d = prep(g, p);
    sum = sum + d * d;
    p = p + (-clr) * d / (root(sum) + eps);
  }
};

// One element: loads p[i], g[i] and the state the rule uses as T, applies the rule, stores
// back in the storage type S.
template <typename T, typename Rule, typename S>
FASTRNN_HOST_DEVICE void apply(const Rule& rule, int64_t i, S* p, const S* g, S* s0, S* s1, S* s2) {
  T param = T(p[i]), a = T(0), b = T(0), c = T(0);
  if constexpr ((Rule::kStates & 1) != 0) a = T(s0[i]);
  if constexpr ((Rule::kStates & 2) != 0) b = T(s1[i]);
  if constexpr ((Rule::kStates & 4) != 0) c = T(s2[i]);
  rule(param, T(g[i]), a, b, c);
  p[i] = S(param);
  if constexpr ((Rule::kStates & 1) != 0) s0[i] = S(a);
  if constexpr ((Rule::kStates & 2) != 0) s1[i] = S(b);
  if constexpr ((Rule::kStates & 4) != 0) s2[i] = S(c);
}

// Calls fn(static_cast<Rule*>(nullptr)) with the rule type of h's kind and options: every
// rule is built as Rule(h, step, fresh_buffer), step the tensor's step count after this step.
template <typename T, typename Fn>
void with_rule_type(const OptimizerHyper& h, const Fn& fn) {
  switch (h.kind) {
    case OptimizerKind::Sgd:
      if (h.momentum != 0) return fn(static_cast<SgdRule<T, true>*>(nullptr));
      return fn(static_cast<SgdRule<T, false>*>(nullptr));
    case OptimizerKind::Adam:
      if (h.amsgrad) return fn(static_cast<AdamRule<T, true>*>(nullptr));
      return fn(static_cast<AdamRule<T, false>*>(nullptr));
    case OptimizerKind::RmsProp:
      if (h.momentum > 0) {
        if (h.centered) return fn(static_cast<RmsPropRule<T, true, true>*>(nullptr));
        return fn(static_cast<RmsPropRule<T, true, false>*>(nullptr));
      }
      if (h.centered) return fn(static_cast<RmsPropRule<T, false, true>*>(nullptr));
      return fn(static_cast<RmsPropRule<T, false, false>*>(nullptr));
    case OptimizerKind::Adagrad: return fn(static_cast<AdagradRule<T>*>(nullptr));
  }
}

// Calls fn(rule) with the rule for one tensor at this step.
template <typename T, typename Fn>
void with_rule(const OptimizerHyper& h, double step, bool fresh_buffer, const Fn& fn) {
  with_rule_type<T>(h, [&](auto* type) {
    using Rule = std::remove_pointer_t<decltype(type)>;
    fn(Rule(h, step, fresh_buffer));
  });
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
