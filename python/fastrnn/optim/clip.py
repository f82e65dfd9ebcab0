"""Gradient-norm clipping with torch.nn.utils.clip_grad_norm_'s semantics, fused: one pass to
read the norm of each gradient, one pass to scale them all (skipped when nothing is clipped)."""

import math
import types
import warnings
from typing import Iterable, List, Optional, Union

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C
from ..ops import CPU_DTYPES

__all__ = ["clip_grad_norm_"]

_LOG_FLOAT32_MAX = math.log(torch.finfo(torch.float32).max)


def _fused_grads(grads: List[Tensor], norm_type: float) -> bool:
    """Whether the fused kernels take these gradients and this norm (else torch's own code
    runs): positive orders, and no empty gradient for the infinity norm (torch raises there,
    the maximum having no identity)."""
    return norm_type > 0 and all(
        g.device.type == "cpu" and g.layout == torch.strided and g.is_contiguous() and
        g.dtype in CPU_DTYPES and (g.numel() > 0 or not math.isinf(norm_type)) for g in grads)


def _as_torch_keeps(norm: float, dtype: torch.dtype, norm_type: float) -> float:
    """A gradient's norm from the kernels (float64 accumulation) as torch has it: a float32
    gradient's sum of |g|^p is accumulated in float32, so past float32's range it is infinite."""
    overflows = norm > 0 and not math.isinf(norm_type) and norm_type * math.log(norm) > _LOG_FLOAT32_MAX
    return math.inf if dtype == torch.float32 and overflows else norm


def total_norm(grads: List[Tensor], norm_type: float) -> Tensor:
    """The norm of all the gradients together, as torch.nn.utils.clip_grad_norm_ computes it:
    each gradient's norm in its own dtype, those norms stacked (so in their promoted dtype, float64
    as soon as one gradient is float64) and normed again, on the first gradient's device."""
    if not grads:
        return torch.tensor(0.0)
    if _fused_grads(grads, norm_type):
        values = _C.gradient_norms([to_dlpack(g) for g in grads], float(norm_type))
        single = [g.dtype == torch.float32 for g in grads]
        norms = torch.tensor([_as_torch_keeps(v, g.dtype, norm_type) for v, g in zip(values, grads)],
                             dtype=torch.float64)
        if all(single):
            norms = norms.to(torch.float32)
        elif any(single):  # float32 norms rounded as torch keeps them, then promoted
            norms = torch.where(torch.tensor(single), norms.to(torch.float32).to(torch.float64), norms)
        return torch.linalg.vector_norm(norms, norm_type)
    norms = [torch.linalg.vector_norm(g.to_dense() if g.is_sparse else g, norm_type) for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]), norm_type)


def device_norm(grads: List[Tensor]) -> Tensor:
    """The 2-norm of all the gradients together as a float32 tensor on the first gradient's
    device, computed there (one multi-tensor launch per device), without a host sync."""
    device = grads[0].device
    norms = torch._foreach_norm([g.to_dense() if g.is_sparse else g for g in grads], 2.0)
    return torch.linalg.vector_norm(torch.stack([n.to(device, torch.float32) for n in norms]), 2.0)


def clip_coefficient(norm: Tensor, max_norm: float) -> Tensor:
    """min(max_norm / (norm + 1e-6), 1) in the norm's dtype, NaN staying NaN, as torch has it."""
    return torch.clamp(float(max_norm) / (norm + 1e-6), max=1.0)


def check_finite(norm: Tensor, norm_type: float) -> None:
    if not math.isfinite(norm.item()):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")


def clip_grad_norm_(parameters: Union[Tensor, Iterable[Tensor]], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Optional[bool] = None) -> Tensor:
    """torch.nn.utils.clip_grad_norm_, fused: scales all gradients in place so that their total
    norm is at most max_norm, and returns that total norm (before clipping) as a tensor of the
    gradients' promoted dtype. `foreach` is accepted for compatibility; the fused kernels run
    either way where they take the gradients."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        generator = isinstance(parameters, types.GeneratorType)
        parameters = list(parameters)
        if generator and not parameters:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm_type = float(norm_type)
    if not _fused_grads(grads, norm_type):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)
    norm = total_norm(grads, norm_type)
    if error_if_nonfinite:
        check_finite(norm, norm_type)
    coefficient = clip_coefficient(norm, max_norm).item()
    if coefficient != 1.0:
        _C.scale_gradients([to_dlpack(g) for g in grads], coefficient)
    return norm
