"""Gradient-norm clipping with torch.nn.utils.clip_grad_norm_'s semantics, fused: one pass to
read the norm of all gradients, one pass to scale them (skipped when nothing is clipped)."""

import math
from typing import Iterable, List, Optional, Union

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C

__all__ = ["clip_grad_norm_"]


def _fused_grads(grads: List[Tensor]) -> bool:
    """Whether the fused kernels take these gradients (else torch's own code runs)."""
    return all(g.device.type == "cpu" and g.layout == torch.strided and g.is_contiguous() and
               g.dtype in (torch.float32, torch.float64) for g in grads)


def total_norm(grads: List[Tensor], norm_type: float) -> float:
    """The norm of all the gradients together, as a Python float (float64 accumulation)."""
    if _fused_grads(grads) and norm_type > 0:
        return _C.gradient_norm([to_dlpack(g) for g in grads], float(norm_type))
    norms = [torch.linalg.vector_norm(g.to_dense() if g.is_sparse else g, norm_type) for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]), norm_type).item()


def device_norm(grads: List[Tensor]) -> Tensor:
    """The 2-norm of all the gradients together as a float32 tensor on the first gradient's
    device, computed there (one multi-tensor launch per device), without a host sync."""
    device = grads[0].device
    norms = torch._foreach_norm([g.to_dense() if g.is_sparse else g for g in grads], 2.0)
    return torch.linalg.vector_norm(torch.stack([n.to(device, torch.float32) for n in norms]), 2.0)


def clip_coefficient(norm: float, max_norm: float) -> float:
    """min(max_norm / (norm + 1e-6), 1), NaN staying NaN, as torch clamps it."""
    coefficient = float(max_norm) / (norm + 1e-6)
    return coefficient if math.isnan(coefficient) else min(coefficient, 1.0)


def check_finite(norm: float, norm_type: float) -> None:
    if math.isnan(norm) or math.isinf(norm):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")


def clip_grad_norm_(parameters: Union[Tensor, Iterable[Tensor]], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Optional[bool] = None) -> Tensor:
    """torch.nn.utils.clip_grad_norm_, fused: scales all gradients in place so that their total
    norm is at most max_norm, and returns that total norm (before clipping) as a tensor.
    `foreach` is accepted for compatibility; the fused kernels run either way."""
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm_type = float(norm_type)
    if not _fused_grads(grads) or not norm_type > 0:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)
    norm = total_norm(grads, norm_type)
    if error_if_nonfinite:
        check_finite(norm, norm_type)
    coefficient = clip_coefficient(norm, max_norm)
    if coefficient != 1.0:
        _C.scale_gradients([to_dlpack(g) for g in grads], coefficient)
    return torch.tensor(norm, dtype=grads[0].dtype, device=grads[0].device)
