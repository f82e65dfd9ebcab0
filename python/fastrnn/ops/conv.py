"""Conv2d and the fused conv + ReLU + 2x2 max-pool block as torch custom ops, on CPU and CUDA.

Custom ops (``torch.ops.fastrnn.*``), all on 4-D contiguous tensors, arguments validated by the
caller (``fastrnn.functional.conv2d`` and ``conv_relu_pool2d``, which take torch's):

* ``conv2d(x, weight, bias, stride, padding, dilation, groups, output_size)``: padding is the
  top/left padding; output_size (out_h, out_w) implies the bottom/right one, which is how
  torch's asymmetric ``padding='same'`` for even kernels reaches the CPU kernel.
* ``conv2d_backward(dy, x, weight, ..., output_mask)`` -> (dx, dweight, dbias).
* ``conv_relu_pool2d(...)`` -> (y, indices): max_pool2d(relu(conv2d(x)), 2, 2), with the
  indices of the maxima in the conv output planes.
* ``conv_relu_pool2d_backward(dy, y, indices, x, weight, ..., output_mask)``.

CPU float32/float64 run fastrnn's CPU kernels. CUDA tensors (float16, bfloat16, float32, float64)
run fastrnn's CUDA kernels (the ``cuda_*`` functions below) inside the same ops; on CUDA the fused
op's ``indices`` are uint8, each window's winner as ``2*dp + dq``, and float32 takes the TF32
tensor cores when ``torch.backends.cudnn.allow_tf32`` is set, as cuDNN convolutions do.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C
from . import _runtime
from ._runtime import (backward_entry, eager_function, no_derivative, no_setup, stream, transform_function, view,
                       workspaces_for)

__all__ = ["conv2d_op", "conv2d_backward", "conv_relu_pool2d_op", "conv_relu_pool2d_backward"]

_FORWARD, _BACKWARD, _POOL_FORWARD, _POOL_BACKWARD = 0, 1, 2, 3


def _workspace(op: int, x: Tensor, weight: Tensor, output_size, stride, padding, dilation, groups) -> Tensor:
    size = _C.conv_workspace_bytes(op, _runtime.dtype_name(x.dtype), list(x.shape), list(weight.shape),
                                   output_size[0], output_size[1], stride, padding, dilation, groups)
    return workspaces_for([size], x)[0]


def _gradients(x: Tensor, dx: Optional[Tensor], dw: Optional[Tensor], db: Optional[Tensor]):
    """(dx, dw, db) with a fresh empty tensor for each one not computed: a custom op's outputs
    may not alias each other (one shared empty failed whenever two gradients were not wanted)."""
    return tuple(x.new_empty(0) if g is None else g for g in (dx, dw, db))


def _fake_gradients(x: Tensor, weight: Tensor, output_mask):
    return _gradients(x, torch.empty_like(x) if output_mask[0] else None,
                      torch.empty_like(weight) if output_mask[1] else None,
                      weight.new_empty(weight.shape[0]) if output_mask[2] else None)


def _cpu_gradients(x: Tensor, weight: Tensor, output_mask):
    """(dx, dw, db) for the CPU kernels to write, None where output_mask is False."""
    return (_runtime.empty(x.shape, x) if output_mask[0] else None,
            _runtime.empty(weight.shape, weight) if output_mask[1] else None,
            _runtime.empty(weight.shape[0], weight) if output_mask[2] else None)


# ---- conv2d ----------------------------------------------------------------------------------


def conv2d_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
                dilation: List[int], groups: int, output_size: List[int]) -> Tensor:
    """The body of the custom op conv2d (see the module docstring); called directly it skips
    torch's dispatcher, which is safe only when no autograd graph or tracing is needed."""
    if x.is_cuda:
        return cuda_forward(x, weight, bias, stride, padding, dilation, groups)
    y = _runtime.empty((x.shape[0], weight.shape[0], output_size[0], output_size[1]), x)
    work = _workspace(_FORWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv2d_forward(view(x), view(weight), view(bias), view(y), view(work), stride, padding, dilation, groups)
    return y


conv2d_op = torch.library.custom_op("fastrnn::conv2d", mutates_args=())(conv2d_impl)


@conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, output_size):
    return x.new_empty(x.shape[0], weight.shape[0], output_size[0], output_size[1])


def conv2d_backward_impl(dy: Tensor, x: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                         dilation: List[int], groups: int, output_mask: List[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of conv2d; an entry whose output_mask is False comes back empty."""
    if x.is_cuda:
        dx, dw, db = cuda_backward(dy, x, weight, stride, padding, dilation, groups, output_mask,
                                   has_bias=output_mask[2])
        return _gradients(x, dx, dw, db)
    dx, dw, db = _cpu_gradients(x, weight, output_mask)
    work = _workspace(_BACKWARD, x, weight, dy.shape[2:], stride, padding, dilation, groups)
    _C.conv2d_backward(view(dy), view(x), view(weight), view(dx), view(dw), view(db), view(work), stride,
                       padding, dilation, groups)
    return _gradients(x, dx, dw, db)


conv2d_backward = torch.library.custom_op("fastrnn::conv2d_backward", mutates_args=())(conv2d_backward_impl)


@conv2d_backward.register_fake
def _(dy, x, weight, stride, padding, dilation, groups, output_mask):
    return _fake_gradients(x, weight, output_mask)


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, _ = inputs
    ctx.geometry = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight)


def _output_mask(ctx) -> List[bool]:
    return [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]


def _conv2d_autograd(ctx, dy):
    x, weight = ctx.saved_tensors
    mask = _output_mask(ctx)
    backward = backward_entry(x, conv2d_backward_impl, conv2d_backward, _BACKWARD_TRANSFORMED[0].apply)
    dx, dw, db = backward(dy.contiguous(), x, weight, *ctx.geometry, mask)
    return (dx if mask[0] else None, dw if mask[1] else None, db if mask[2] else None, None, None, None, None, None)


conv2d_op.register_autograd(_conv2d_autograd, setup_context=_conv2d_setup)


# ---- conv + relu + 2x2 max-pool --------------------------------------------------------------


def _indices_dtype(x: Tensor) -> torch.dtype:
    # CUDA keeps each window's winner in one byte (2*dp + dq); the CPU, its flat conv-output index.
    return torch.uint8 if x.device.type == "cuda" else torch.int64


def conv_relu_pool2d_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
                          dilation: List[int], groups: int, output_size: List[int]) -> Tuple[Tensor, Tensor]:
    """The body of the custom op conv_relu_pool2d: (y, indices), y (N, C_out, out_h // 2,
    out_w // 2) where (out_h, out_w) = output_size is the conv's output size."""
    if x.is_cuda:
        return cuda_conv_relu_pool_forward(x, weight, bias, stride, padding, dilation, groups)
    pooled = (x.shape[0], weight.shape[0], output_size[0] // 2, output_size[1] // 2)
    y = _runtime.empty(pooled, x)
    indices = _runtime.empty(pooled, x, torch.int64)
    work = _workspace(_POOL_FORWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv_relu_pool2d_forward(view(x), view(weight), view(bias), view(y), view(indices), view(work),
                                output_size[0], output_size[1], stride, padding, dilation, groups)
    return y, indices


conv_relu_pool2d_op = torch.library.custom_op("fastrnn::conv_relu_pool2d", mutates_args=())(conv_relu_pool2d_impl)


@conv_relu_pool2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, output_size):
    pooled = (x.shape[0], weight.shape[0], output_size[0] // 2, output_size[1] // 2)
    return x.new_empty(pooled), x.new_empty(pooled, dtype=_indices_dtype(x))


def conv_relu_pool2d_backward_impl(dy: Tensor, y: Tensor, indices: Tensor, x: Tensor, weight: Tensor,
                                   stride: List[int], padding: List[int], dilation: List[int], groups: int,
                                   output_size: List[int], output_mask: List[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of conv_relu_pool2d from the pooled gradient dy and the forward's
    y and indices; entries not in output_mask come back empty."""
    if x.is_cuda:
        dx, dw, db = cuda_conv_relu_pool_backward(dy, y, indices, x, weight, stride, padding, dilation, groups,
                                                  output_mask, has_bias=output_mask[2])
        return _gradients(x, dx, dw, db)
    dx, dw, db = _cpu_gradients(x, weight, output_mask)
    work = _workspace(_POOL_BACKWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv_relu_pool2d_backward(view(dy), view(y), view(indices), view(x), view(weight), view(dx), view(dw),
                                 view(db), view(work), output_size[0], output_size[1], stride, padding, dilation,
                                 groups)
    return _gradients(x, dx, dw, db)


conv_relu_pool2d_backward = torch.library.custom_op("fastrnn::conv_relu_pool2d_backward",
                                                    mutates_args=())(conv_relu_pool2d_backward_impl)


@conv_relu_pool2d_backward.register_fake
def _(dy, y, indices, x, weight, stride, padding, dilation, groups, output_size, output_mask):
    return _fake_gradients(x, weight, output_mask)


def _pool_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, output_size = inputs
    y, indices = output
    ctx.geometry = (stride, padding, dilation, groups, output_size)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, y, indices)


def _pool_autograd(ctx, dy, _dindices):
    x, weight, y, indices = ctx.saved_tensors
    mask = _output_mask(ctx)
    if dy is None:
        dy = torch.zeros_like(y)
    backward = backward_entry(x, conv_relu_pool2d_backward_impl, conv_relu_pool2d_backward,
                              _BACKWARD_TRANSFORMED[1].apply)
    dx, dw, db = backward(dy.contiguous(), y, indices, x, weight, *ctx.geometry, mask)
    return (dx if mask[0] else None, dw if mask[1] else None, db if mask[2] else None, None, None, None, None, None)


conv_relu_pool2d_op.register_autograd(_pool_autograd, setup_context=_pool_setup)


def _pool_function_setup(ctx, inputs, output):
    """_pool_setup for the autograd.Functions: the indices are no differentiable output."""
    _pool_setup(ctx, inputs, output)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


# The four entries of each forward (fastrnn.functional picks one with ops.choose), as
# (body, eager autograd.Function, functorch transforms' autograd.Function, custom op). The
# backward ops have no derivative of their own.
CONV2D = (conv2d_impl, eager_function("_Conv2dFunction", conv2d_impl, _conv2d_setup, _conv2d_autograd).apply,
          transform_function("_Conv2dTransformed", conv2d_op, _conv2d_setup, _conv2d_autograd).apply, conv2d_op)
CONV_RELU_POOL2D = (
    conv_relu_pool2d_impl,
    eager_function("_ConvReluPool2dFunction", conv_relu_pool2d_impl, _pool_function_setup, _pool_autograd).apply,
    transform_function("_ConvReluPool2dTransformed", conv_relu_pool2d_op, _pool_function_setup,
                       _pool_autograd).apply,
    conv_relu_pool2d_op)
_BACKWARD_TRANSFORMED = [transform_function(name, op, no_setup, no_derivative)
                         for name, op in (("_Conv2dBackwardTransformed", conv2d_backward),
                                          ("_ConvReluPool2dBackwardTransformed", conv_relu_pool2d_backward))]


# ---- The CUDA kernels ------------------------------------------------------------------------
# Each runs on the current stream of the input's device; tensors are made contiguous here.


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _cuda_geometry(x: Tensor, stride, padding, dilation, groups):
    if x.device.type != "cuda":
        raise ValueError(f"fastrnn.ops.conv's CUDA calls expect CUDA tensors, got a tensor on {x.device}")
    return dict(stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation), groups=int(groups),
                allow_tf32=x.dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32))


def _cuda_output_size(x: Tensor, weight: Tensor, g) -> Tuple[int, int]:
    (sh, sw), (ph, pw), (dh, dw) = g["stride"], g["padding"], g["dilation"]
    P = (x.shape[2] + 2 * ph - dh * (weight.shape[2] - 1) - 1) // sh + 1
    Q = (x.shape[3] + 2 * pw - dw * (weight.shape[3] - 1) - 1) // sw + 1
    return P, Q


def cuda_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups,
                 relu: bool = False) -> Tensor:
    """conv2d (then ReLU with relu) on CUDA tensors."""
    g = _cuda_geometry(x, stride, padding, dilation, groups)
    x, weight, bias = x.contiguous(), weight.contiguous(), _runtime.contiguous(bias)
    P, Q = _cuda_output_size(x, weight, g)
    y = _runtime.empty((x.shape[0], weight.shape[0], P, Q), x)
    _C.conv2d_cuda_forward(to_dlpack(x), to_dlpack(weight), view(bias), to_dlpack(y), relu=relu, stream=stream(x), **g)
    return y


def _cuda_weight_grads(x, weight, needs, has_bias, g):
    dw = _runtime.empty(weight.shape, weight) if needs[1] else None
    db = _runtime.empty((weight.shape[0],), weight) if needs[2] and has_bias else None
    workspace = None
    if dw is not None:
        size = _C.conv2d_cuda_backward_weight_workspace_bytes(to_dlpack(x), to_dlpack(weight), **g)
        workspace = _runtime.empty((size,), x, torch.uint8)
    return dw, db, workspace


def cuda_backward(dy: Tensor, x: Tensor, weight: Tensor, stride, padding, dilation, groups,
                  needs: Sequence[bool] = (True, True, True), has_bias: bool = True):
    """Gradients of conv2d on CUDA: (dx, dweight, dbias), None where ``needs`` is False (or no bias)."""
    g = _cuda_geometry(x, stride, padding, dilation, groups)
    dy, x, weight = dy.contiguous(), x.contiguous(), weight.contiguous()
    dx = _runtime.empty(x.shape, x) if needs[0] else None
    dw, db, workspace = _cuda_weight_grads(x, weight, needs, has_bias, g)
    current = stream(x)
    if dx is not None:
        _C.conv2d_cuda_backward_input(to_dlpack(dy), to_dlpack(x), to_dlpack(weight), to_dlpack(dx), stream=current,
                                      **g)
    if dw is not None or db is not None:
        _C.conv2d_cuda_backward_weight(to_dlpack(dy), to_dlpack(x), to_dlpack(weight), view(dw), view(db),
                                       view(workspace), stream=current, **g)
    return dx, dw, db


def cuda_conv_relu_pool_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation,
                                groups) -> Tuple[Tensor, Tensor]:
    """``max_pool2d(relu(conv2d(x, weight, bias)), 2)`` on CUDA tensors without writing the
    full-size convolution: (y, argmax), argmax (uint8) each window's winner as ``2 * dp + dq``."""
    g = _cuda_geometry(x, stride, padding, dilation, groups)
    x, weight, bias = x.contiguous(), weight.contiguous(), _runtime.contiguous(bias)
    P, Q = _cuda_output_size(x, weight, g)
    shape = (x.shape[0], weight.shape[0], P // 2, Q // 2)
    y = _runtime.empty(shape, x)
    argmax = _runtime.empty(shape, x, torch.uint8)
    _C.conv_relu_pool2d_cuda_forward(to_dlpack(x), to_dlpack(weight), view(bias), to_dlpack(y), to_dlpack(argmax),
                                     stream=stream(x), **g)
    return y, argmax


def cuda_conv_relu_pool_backward(dy: Tensor, y: Tensor, argmax: Tensor, x: Tensor, weight: Tensor, stride, padding,
                                 dilation, groups, needs: Sequence[bool] = (True, True, True), has_bias: bool = True):
    """Gradients of the fused block on CUDA from the pooled gradient dy, its output y and argmax."""
    g = _cuda_geometry(x, stride, padding, dilation, groups)
    dy, y, argmax = dy.contiguous(), y.contiguous(), argmax.contiguous()
    x, weight = x.contiguous(), weight.contiguous()
    dx = _runtime.empty(x.shape, x) if needs[0] else None
    dw, db, workspace = _cuda_weight_grads(x, weight, needs, has_bias, g)
    if dx is None and dw is None and db is None:
        return dx, dw, db
    _C.conv_relu_pool2d_cuda_backward(to_dlpack(dy), to_dlpack(y), to_dlpack(argmax), to_dlpack(x), to_dlpack(weight),
                                      view(dx), view(dw), view(db), view(workspace), stream=stream(x), **g)
    return dx, dw, db
