"""torch.optim's SGD, Adam, AdamW, RMSprop and Adagrad with fused steps.

Each class subclasses its torch.optim counterpart: the constructor (arguments, defaults,
validation and its errors), parameter groups, ``state``/``state_dict`` (torch's format, so
state dicts load both ways), ``zero_grad`` and hooks are torch's own. ``step`` runs one fused
kernel call per parameter group and dtype: one pass over memory for all its parameters, with
torch's update rule element by element, the step counters incremented inside it.

Two additions, accepted by every class:

* ``l1_decay``: adds ``l1_decay * sign(param)`` to the gradient (an L1 penalty's gradient),
  next to the L2 ``weight_decay``.
* ``max_grad_norm``: clips the gradients as ``clip_grad_norm_(all parameters, max_norm)``
  would, inside the step: the step reads the norm in one pass and uses the scaled gradient
  without writing it back (``p.grad`` keeps the unclipped gradient).

On CUDA (a build with FASTRNN_CUDA), float16/bfloat16/float32/float64 parameters of one
device take one multi-tensor launch per 16 parameters on the current stream, math in float32
(float64 for float64), with no host synchronisation: the step counters stay on the CPU as in
torch's default, and ``max_grad_norm`` reads the norm on the device.

A group the kernels do not take (other devices or dtypes, sparse gradients, ``differentiable``
or ``capturable``, step counters on the device, a tensor ``lr``, state that does not fit its
parameter, the ``grad_scale``/``found_inf`` that GradScaler gives a ``fused`` optimizer) runs
torch's own step, with the same results, or torch's own error.
"""

from typing import List

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C
from ..ops import CPU_DTYPES, CUDA_DTYPES, stream
from .clip import clip_coefficient, device_norm, total_norm

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]

_SGD, _ADAM, _RMSPROP, _ADAGRAD = 0, 1, 2, 3
_CUDA_KERNELS = bool(_C.build_info().get("cuda_compiled"))


def _torch_step_of(cls):
    """The torch class's own step, without the hook wrapper Optimizer may have put around it
    (our step runs the hooks once)."""
    step = cls.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


class _Fused:
    """step() for the torch.optim classes; mixed in before the torch class."""

    _kind: int
    _state_keys: tuple  # the state tensors the kernel reads, state0.. in order

    def _add_extras(self, l1_decay, max_grad_norm):
        if not 0.0 <= l1_decay:
            raise ValueError(f"Invalid l1_decay value: {l1_decay}")
        if max_grad_norm is not None and not 0.0 < max_grad_norm:
            raise ValueError(f"Invalid max_grad_norm value: {max_grad_norm}")
        self.defaults.update(l1_decay=l1_decay, max_grad_norm=max_grad_norm)
        for group in self.param_groups:
            group.setdefault("l1_decay", l1_decay)
            group.setdefault("max_grad_norm", max_grad_norm)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # state dicts from torch.optim lack the additions
            group.setdefault("l1_decay", 0.0)
            group.setdefault("max_grad_norm", None)

    @torch.no_grad()
    def step(self, closure=None):
        """One optimisation step over every parameter group; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = [(g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups]
        groups = [(g, params) for g, params in groups if params]
        # One norm for all gradients, read once, if any group clips: when every gradient is on
        # the CPU, clip_grad_norm_'s (in the gradients' promoted dtype), else a float32 tensor
        # on the first gradient's device (no sync).
        norm = None
        if any(g.get("max_grad_norm") is not None for g, _ in groups):
            grads = [p.grad for _, params in groups for p in params]
            norm = total_norm(grads, 2.0) if all(g.device.type == "cpu" for g in grads) else device_norm(grads)
        for group, params in groups:
            max_norm = group.get("max_grad_norm")
            clip = None if max_norm is None else (norm, float(max_norm))
            if self._fusable(group, params):
                for device, dtype in {(p.device, p.dtype) for p in params}:
                    self._fused_step(group, [p for p in params if p.device == device and p.dtype == dtype], clip)
            else:
                self._torch_step(group, params, clip)
        return loss

    def _fusable(self, group, params: List[Tensor]) -> bool:
        if group.get("differentiable") or group.get("capturable") or isinstance(group["lr"], Tensor):
            return False
        if any(isinstance(b, Tensor) for b in group.get("betas", ())):
            return False
        # GradScaler hands a fused optimizer its scale and found_inf to apply inside the step.
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            return False

        def takes(p):
            dtypes = CPU_DTYPES if p.device.type == "cpu" else CUDA_DTYPES if p.device.type == "cuda" else ()
            if p.device.type == "cuda" and not _CUDA_KERNELS:
                return False
            return (p.dtype in dtypes and p.is_contiguous() and p.grad.layout == torch.strided and
                    p.grad.dtype == p.dtype and p.grad.device == p.device and p.grad.is_contiguous() and
                    not (p.device.type == "cuda" and group.get("fused")) and self._state_fits(group, p))

        return all(takes(p) for p in params)

    def _state_fits(self, group, p: Tensor) -> bool:
        """Whether p's state is what the kernel reads and writes: absent (the step creates it as
        torch does), or every tensor the rule uses present, dense and contiguous, with p's shape,
        dtype and device, and a float step counter on the CPU. Anything else (state loaded from
        a parameter of another shape, a key missing after amsgrad or centered was switched on,
        tensors edited by hand) runs torch's step, which raises or copes as torch does."""
        if not self._keeps_state(group) or p not in self.state or self._fresh(self.state[p]):
            return True
        state = self.state[p]

        def fits(t):
            return (isinstance(t, Tensor) and t.layout == torch.strided and t.shape == p.shape and
                    t.dtype == p.dtype and t.device == p.device and t.is_contiguous())

        if not all(fits(state.get(key)) for key in self._used_keys(group)):
            return False
        if self._kind == _SGD:
            return True
        step = state.get("step")
        return (isinstance(step, Tensor) and step.device.type == "cpu" and step.numel() == 1 and
                step.dtype in CPU_DTYPES)

    def _keeps_state(self, group) -> bool:
        """Whether torch's step keeps any state for this group's parameters."""
        return True

    def _used_keys(self, group) -> tuple:
        """The state tensors (of _state_keys) the kernel reads and writes for this group."""
        raise NotImplementedError

    @staticmethod
    def _fresh(state) -> bool:
        """Whether torch's step would create this state from scratch."""
        return len(state) == 0

    def _torch_step(self, group, params, clip):
        """torch's implementation on this group alone; the additions are applied to temporary
        gradients, so p.grad is left as it was."""
        # torch negates the whole gradient under maximize; the L1 term, like weight_decay, must
        # still pull toward 0 (as the fused kernels add it after the negation).
        l1 = group.get("l1_decay", 0.0) * (-1.0 if group.get("maximize", False) else 1.0)
        scale = None if clip is None else clip_coefficient(*clip)
        originals = [p.grad for p in params]
        if scale is not None or l1:
            for p in params:
                g = p.grad if scale is None else p.grad * scale.to(p.grad.device)  # as clip_grad_norm_ scales
                p.grad = g + l1 * torch.sign(p) if l1 else g
        saved = self.param_groups
        self.param_groups = [group]
        try:
            _torch_step_of(self._torch_class)(self)
        finally:
            self.param_groups = saved
            for p, g in zip(params, originals):
                p.grad = g

    def _fused_step(self, group, params, clip):
        """One kernel call for parameters of one device and dtype."""
        hyper = self._hyper(group)
        hyper.update(l1_decay=float(group.get("l1_decay", 0.0)), maximize=bool(group.get("maximize", False)))
        device = params[0].device
        if device.type == "cuda":
            hyper["stream"] = stream(params[0])
            if clip is not None:
                norm, max_norm = clip
                hyper.update(clip_norm=to_dlpack(norm.to(device)), max_norm=max_norm)
        elif clip is not None:
            hyper["grad_scale"] = clip_coefficient(*clip).item()
        tensors = []
        keeps_state, used = self._keeps_state(group), self._used_keys(group)
        for p in params:
            entry = {"param": to_dlpack(p), "grad": to_dlpack(p.grad)}
            if keeps_state:  # (touching self.state[p] would create an entry)
                state = self.state[p]
                entry["fresh_buffer"] = self._init_state(group, p, state)
                for k, key in enumerate(self._state_keys):
                    if key in used:
                        entry[f"state{k}"] = to_dlpack(state[key])
                if self._kind != _SGD:
                    entry["step"] = to_dlpack(state["step"])
            tensors.append(entry)
        _C.optimizer_step(hyper, tensors)

    @staticmethod
    def _new_step(group, p) -> Tensor:
        """The step counter torch keeps for a parameter: on the CPU in float64 if that is the
        default dtype, else float32 (a float16 default too), or on the parameter's device in
        float32 for fused/capturable groups."""
        if group.get("fused") or group.get("capturable"):
            return torch.zeros((), dtype=torch.float32, device=p.device)
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return torch.tensor(0.0, dtype=dtype)


class SGD(_Fused, torch.optim.SGD):
    """torch.optim.SGD (momentum, dampening, Nesterov, weight decay) with a fused step."""

    _kind, _state_keys, _torch_class = _SGD, ("momentum_buffer",), torch.optim.SGD

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False,
                 foreach=None, differentiable=False, fused=None, l1_decay=0.0, max_grad_norm=None):
        super().__init__(params, lr, momentum, dampening, weight_decay, nesterov, maximize=maximize, foreach=foreach,
                         differentiable=differentiable, fused=fused)
        self._add_extras(l1_decay, max_grad_norm)

    def _hyper(self, group):
        return dict(kind=_SGD, lr=float(group["lr"]), weight_decay=float(group["weight_decay"]),
                    momentum=float(group["momentum"]), dampening=float(group["dampening"]),
                    nesterov=bool(group["nesterov"]))

    def _keeps_state(self, group):
        return group["momentum"] != 0  # torch's SGD keeps no entry at all without momentum

    @staticmethod
    def _fresh(state):
        return state.get("momentum_buffer") is None

    def _used_keys(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _init_state(self, group, p, state):
        # torch's rule: the momentum buffer is created at the first step, as the gradient.
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
            return True
        return False


class Adam(_Fused, torch.optim.Adam):
    """torch.optim.Adam (amsgrad, maximize, weight decay) with a fused step."""

    _kind, _state_keys, _torch_class = _ADAM, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), torch.optim.Adam

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False, l1_decay=0.0, max_grad_norm=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=decoupled_weight_decay)
        self._add_extras(l1_decay, max_grad_norm)

    def _hyper(self, group):
        beta1, beta2 = group["betas"]
        return dict(kind=_ADAM, lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), eps=float(group["eps"]),
                    weight_decay=float(group["weight_decay"]), amsgrad=bool(group["amsgrad"]),
                    decoupled_weight_decay=bool(group.get("decoupled_weight_decay", False)))

    def _used_keys(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _init_state(self, group, p, state):
        if len(state) == 0:
            state["step"] = self._new_step(group, p)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return False


class AdamW(Adam, torch.optim.AdamW):
    """torch.optim.AdamW (decoupled weight decay) with a fused step."""

    _torch_class = torch.optim.AdamW

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None, l1_decay=0.0,
                 max_grad_norm=None):
        torch.optim.AdamW.__init__(self, params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                                   foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused)
        self._add_extras(l1_decay, max_grad_norm)

    def _hyper(self, group):
        return {**super()._hyper(group), "decoupled_weight_decay": True}


class RMSprop(_Fused, torch.optim.RMSprop):
    """torch.optim.RMSprop (centered, momentum, weight decay) with a fused step."""

    _kind, _state_keys, _torch_class = _RMSPROP, ("square_avg", "momentum_buffer", "grad_avg"), torch.optim.RMSprop

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False, l1_decay=0.0,
                 max_grad_norm=None):
        super().__init__(params, lr, alpha, eps, weight_decay, momentum, centered, capturable, foreach, maximize,
                         differentiable)
        self._add_extras(l1_decay, max_grad_norm)

    def _hyper(self, group):
        return dict(kind=_RMSPROP, lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]),
                    weight_decay=float(group["weight_decay"]), momentum=float(group["momentum"]),
                    centered=bool(group["centered"]))

    def _used_keys(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ()) +
                (("grad_avg",) if group["centered"] else ()))

    def _init_state(self, group, p, state):
        if len(state) == 0:
            state["step"] = self._new_step(group, p)
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return False


class Adagrad(_Fused, torch.optim.Adagrad):
    """torch.optim.Adagrad (lr_decay, initial_accumulator_value, weight decay) with a fused step."""

    _kind, _state_keys, _torch_class = _ADAGRAD, ("sum",), torch.optim.Adagrad

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None, l1_decay=0.0,
                 max_grad_norm=None):
        super().__init__(params, lr, lr_decay, weight_decay, initial_accumulator_value, eps, foreach,
                         maximize=maximize, differentiable=differentiable, fused=fused)
        self._add_extras(l1_decay, max_grad_norm)

    def _hyper(self, group):
        return dict(kind=_ADAGRAD, lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                    weight_decay=float(group["weight_decay"]), eps=float(group["eps"]))

    def _used_keys(self, group):
        return ("sum",)

    def _init_state(self, group, p, state):
        # torch fills this state in its constructor; a group added later gets it here, from
        # the constructor's value as in torch (not the group's own).
        if len(state) == 0:
            state["step"] = self._new_step(group, p)
            state["sum"] = torch.full_like(p, self.defaults["initial_accumulator_value"],
                                           memory_format=torch.preserve_format)
        return False
