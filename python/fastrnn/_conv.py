"""Conv2d and the fused conv + ReLU + 2x2 max-pool block as torch custom ops, and the argument
handling torch.nn.functional.conv2d does (padding strings, unbatched input, torch's errors).

Custom ops (``torch.ops.fastrnn.*``), all on 4-D contiguous tensors:

* ``conv2d(x, weight, bias, stride, padding, dilation, groups, output_size)``: padding is the
  top/left padding; output_size (out_h, out_w) implies the bottom/right one, which is how
  torch's asymmetric ``padding='same'`` for even kernels reaches the kernel.
* ``conv2d_backward(dy, x, weight, ..., output_mask)`` -> (dx, dweight, dbias).
* ``conv_relu_pool2d(...)`` -> (y, indices): max_pool2d(relu(conv2d(x)), 2, 2), with the
  indices of the maxima in the conv output planes.
* ``conv_relu_pool2d_backward(dy, y, indices, x, weight, ..., output_mask)``.

CPU float32/float64 run fastrnn's CPU kernels. CUDA tensors (float16, bfloat16, float32, float64)
run fastrnn's CUDA kernels (``fastrnn._conv_cuda``) inside the same ops when the extension was
built with CUDA; on CUDA the fused op's ``indices`` are uint8, each window's winner as ``2*dp + dq``.
Every other case (other dtypes, a CUDA-less build, torch's asymmetric 'same' padding on CUDA, an
empty input or weight, arguments fastrnn does not take) goes to torch in ``_fallback_conv2d``, so
its result or its error (type and words) is torch's.

torch.jit.trace records the custom ops, with the output size of the traced call (another height
or width is refused); torch.func transforms take them through autograd.Functions they accept;
torch.jit.script of the modules raises, naming torch.compile and torch.export.
"""

import operator
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _C, _conv_cuda, ops
from ._pool import int_list, no_derivative, no_setup, transform_function, transformed, untraced

__all__ = ["conv2d", "conv_relu_pool2d"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_CUDA_BUILT = bool(_C.build_info()["cuda_compiled"])
_FORWARD, _BACKWARD, _POOL_FORWARD, _POOL_BACKWARD = 0, 1, 2, 3


def _pair(v) -> List[int]:
    """_pool.int_list's ints, one repeated; TypeError for what is no int list (_resolve lets torch
    word it)."""
    items = int_list(v)
    return items * 2 if len(items) == 1 else items


def _geometry(stride, padding, dilation):
    return list(stride), list(padding), list(dilation)


def _workspace(op: int, x: Tensor, weight: Tensor, output_size, stride, padding, dilation, groups) -> Tensor:
    size = _C.conv_workspace_bytes(op, ops.dtype_name(x.dtype), list(x.shape), list(weight.shape),
                                   output_size[0], output_size[1], stride, padding, dilation, groups)
    return ops._workspaces_for([size], x)[0]


def _view(t: Optional[Tensor]):
    return ops._view(t)


def _gradients(x: Tensor, dx: Optional[Tensor], dw: Optional[Tensor], db: Optional[Tensor]):
    """(dx, dw, db) with a fresh empty tensor for each one not computed: a custom op's outputs
    may not alias each other (one shared empty failed whenever two gradients were not wanted)."""
    return tuple(x.new_empty(0) if g is None else g for g in (dx, dw, db))


# ---- conv2d ----------------------------------------------------------------------------------


def conv2d_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
                dilation: List[int], groups: int, output_size: List[int]) -> Tensor:
    """The body of the custom op conv2d (see the module docstring); called directly it skips
    torch's dispatcher, which is safe only when no autograd graph or tracing is needed."""
    if x.device.type == "cuda":
        return _conv_cuda.forward(x, weight, bias, stride, padding, dilation, groups)
    y = ops._empty((x.shape[0], weight.shape[0], output_size[0], output_size[1]), x)
    work = _workspace(_FORWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv2d_forward(_view(x), _view(weight), _view(bias), _view(y), _view(work), stride, padding, dilation, groups)
    return y


conv2d_op = torch.library.custom_op("fastrnn::conv2d", mutates_args=())(conv2d_impl)


@conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, output_size):
    return x.new_empty(x.shape[0], weight.shape[0], output_size[0], output_size[1])


def conv2d_backward_impl(dy: Tensor, x: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                         dilation: List[int], groups: int, output_mask: List[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of conv2d; an entry whose output_mask is False comes back empty."""
    if x.device.type == "cuda":
        dx, dw, db = _conv_cuda.backward(dy, x, weight, stride, padding, dilation, groups, output_mask,
                                         has_bias=output_mask[2])
        return _gradients(x, dx, dw, db)
    dx = ops._empty(x.shape, x) if output_mask[0] else None
    dw = ops._empty(weight.shape, weight) if output_mask[1] else None
    db = ops._empty(weight.shape[0], weight) if output_mask[2] else None
    work = _workspace(_BACKWARD, x, weight, dy.shape[2:], stride, padding, dilation, groups)
    _C.conv2d_backward(_view(dy), _view(x), _view(weight), _view(dx), _view(dw), _view(db), _view(work), stride,
                       padding, dilation, groups)
    return _gradients(x, dx, dw, db)


conv2d_backward = torch.library.custom_op("fastrnn::conv2d_backward", mutates_args=())(conv2d_backward_impl)


@conv2d_backward.register_fake
def _(dy, x, weight, stride, padding, dilation, groups, output_mask):
    return _gradients(x, torch.empty_like(x) if output_mask[0] else None,
                      torch.empty_like(weight) if output_mask[1] else None,
                      weight.new_empty(weight.shape[0]) if output_mask[2] else None)


def _eager_backward(saved: Tensor) -> bool:
    # The backward body runs without the op only when no graph of the backward itself is being
    # recorded (create_graph) or traced: the op has no derivative of its own, and through the op a
    # double backward fails loudly instead of silently giving zeros.
    return not torch.is_grad_enabled() and ops.eager(saved)


def _backward_op(op):
    """A backward op as called from an autograd rule: under functorch transforms, which run the
    backward with grad on, through an autograd.Function they accept (_BACKWARD_TRANSFORMED)."""
    return _BACKWARD_TRANSFORMED[op].apply if transformed() else op


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, _ = inputs
    ctx.geometry = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight)


def _conv2d_autograd(ctx, dy):
    x, weight = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    backward = conv2d_backward_impl if _eager_backward(x) else _backward_op(conv2d_backward)
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
    if x.device.type == "cuda":
        return _conv_cuda.conv_relu_pool_forward(x, weight, bias, stride, padding, dilation, groups)
    pooled = (x.shape[0], weight.shape[0], output_size[0] // 2, output_size[1] // 2)
    y = ops._empty(pooled, x)
    indices = ops._empty(pooled, x, torch.int64)
    work = _workspace(_POOL_FORWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv_relu_pool2d_forward(_view(x), _view(weight), _view(bias), _view(y), _view(indices), _view(work),
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
    if x.device.type == "cuda":
        dx, dw, db = _conv_cuda.conv_relu_pool_backward(dy, y, indices, x, weight, stride, padding,
                                                        dilation, groups, output_mask, has_bias=output_mask[2])
        return _gradients(x, dx, dw, db)
    dx = ops._empty(x.shape, x) if output_mask[0] else None
    dw = ops._empty(weight.shape, weight) if output_mask[1] else None
    db = ops._empty(weight.shape[0], weight) if output_mask[2] else None
    work = _workspace(_POOL_BACKWARD, x, weight, output_size, stride, padding, dilation, groups)
    _C.conv_relu_pool2d_backward(_view(dy), _view(y), _view(indices), _view(x), _view(weight), _view(dx), _view(dw),
                                 _view(db), _view(work), output_size[0], output_size[1], stride, padding, dilation,
                                 groups)
    return _gradients(x, dx, dw, db)


conv_relu_pool2d_backward = torch.library.custom_op("fastrnn::conv_relu_pool2d_backward",
                                                    mutates_args=())(conv_relu_pool2d_backward_impl)


@conv_relu_pool2d_backward.register_fake
def _(dy, y, indices, x, weight, stride, padding, dilation, groups, output_size, output_mask):
    return _gradients(x, torch.empty_like(x) if output_mask[0] else None,
                      torch.empty_like(weight) if output_mask[1] else None,
                      weight.new_empty(weight.shape[0]) if output_mask[2] else None)


def _pool_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, output_size = inputs
    y, indices = output
    ctx.geometry = (stride, padding, dilation, groups, output_size)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, y, indices)


def _pool_autograd(ctx, dy, _dindices):
    x, weight, y, indices = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    if dy is None:
        dy = torch.zeros_like(y)
    backward = conv_relu_pool2d_backward_impl if _eager_backward(x) else _backward_op(conv_relu_pool2d_backward)
    dx, dw, db = backward(dy.contiguous(), y, indices, x, weight, *ctx.geometry, mask)
    return (dx if mask[0] else None, dw if mask[1] else None, db if mask[2] else None, None, None, None, None, None)


conv_relu_pool2d_op.register_autograd(_pool_autograd, setup_context=_pool_setup)


# ---- Eager training: autograd.Functions around the same bodies ---------------------------------
# As for the RNN and pooling ops (ops.eager): torch.library's autograd wrapper costs ~0.2 ms a
# training step here, more than torch's whole conv2d call on a small layer. torch.compile, tensor
# subclasses, dispatch modes and functorch transforms keep the custom ops. (Not ops._Function: the
# backward functions read ctx.needs_input_grad, which that class offsets by its three leading
# arguments.)


class _Conv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        y = conv2d_impl(*inputs)
        _conv2d_setup(ctx, inputs, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return _conv2d_autograd(ctx, dy)


class _ConvReluPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        y, indices = conv_relu_pool2d_impl(*inputs)
        _pool_setup(ctx, inputs, (y, indices))
        ctx.mark_non_differentiable(indices)
        ctx.set_materialize_grads(False)
        return y, indices

    @staticmethod
    def backward(ctx, dy, dindices):
        return _pool_autograd(ctx, dy, dindices)


# Functorch transforms (torch.func.grad, vjp): the same ops and rules through autograd.Functions
# with setup_context (_pool.transform_function). The backward ops have no derivative of their own.


def _pool_transformed_setup(ctx, inputs, output):
    _pool_setup(ctx, inputs, output)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


_Conv2dTransformed = transform_function("_Conv2dTransformed", conv2d_op, _conv2d_setup, _conv2d_autograd)
_ConvReluPool2dTransformed = transform_function("_ConvReluPool2dTransformed", conv_relu_pool2d_op,
                                                _pool_transformed_setup, _pool_autograd)
_BACKWARD_TRANSFORMED = {
    op: transform_function(name, op, no_setup, no_derivative)
    for name, op in (("_Conv2dBackwardTransformed", conv2d_backward),
                     ("_ConvReluPool2dBackwardTransformed", conv_relu_pool2d_backward))}


def _choose(x: Tensor, weight: Tensor, bias: Optional[Tensor], impl, function, transformed_function, op):
    """The op body (no graph needed), an autograd.Function (eager training, or functorch
    transforms), or the custom op. torch.jit.trace records only dispatcher calls: the body would
    leave its output's allocation in the graph without the kernel, and an autograd.Function fails
    to trace."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return op
    if transformed():
        return transformed_function.apply
    if not _needs_graph(x, weight, bias):
        return impl
    return function.apply if ops.eager(x) else op


# ---- torch.nn.functional.conv2d's argument handling ------------------------------------------


class _TorchDecides(Exception):
    """Raised by _resolve for arguments fastrnn's kernels do not take: torch's own conv2d then
    raises its error, type and words, or computes the few odd ones it takes (a bool after the
    first element of an int list counts as an int there)."""


def _resolve(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups):
    """Validates as torch does; returns (stride, top/left padding, dilation, output size) or
    raises _TorchDecides."""
    def fail():
        raise _TorchDecides

    if x.dim() != 4 or weight.dim() != 4 or isinstance(groups, bool):
        fail()
    try:
        s, d, groups = _pair(stride), _pair(dilation), operator.index(groups)
    except (TypeError, ValueError, IndexError):
        fail()
    if groups <= 0:
        fail()
    if len(s) != 2 or len(d) != 2 or min(s) <= 0 or min(d) <= 0:
        fail()
    kh, kw = weight.shape[2], weight.shape[3]
    H, W = x.shape[2], x.shape[3]
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0), (0, 0)]
        elif padding == "same" and max(s) == 1:
            pads = []
            for k, dil in ((kh, d[0]), (kw, d[1])):
                total = dil * (k - 1)
                pads.append((total // 2, total - total // 2))
        else:
            fail()
    else:
        try:
            p = _pair(padding)
        except (TypeError, ValueError, IndexError):
            fail()
        if len(p) != 2 or min(p) < 0:
            fail()
        pads = [(p[0], p[0]), (p[1], p[1])]
    c_out = weight.shape[0]
    if (x.shape[1] != weight.shape[1] * groups or c_out % groups != 0 or weight.dtype != x.dtype
            or weight.device != x.device or (bias is not None and (bias.shape != (c_out,) or bias.dtype != x.dtype
                                                                  or bias.device != x.device))):
        fail()
    out = []
    for size, (lo, hi), k, dil, st in ((H, pads[0], kh, d[0], s[0]), (W, pads[1], kw, d[1], s[1])):
        span = dil * (k - 1) + 1
        if size + lo + hi < span:
            fail()
        out.append((size + lo + hi - span) // st + 1)
    return s, [pads[0][0], pads[1][0]], d, out


def _geometry_of(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups):
    """_resolve's (stride, padding, dilation, output size), groups as an int, and whether torch
    must run the call (_asymmetric_on_cuda). Run untraced: a torch.jit.trace graph holds the
    output size of the call it traced, and the kernels refuse inputs of another height or width."""
    s, p, d, out = _resolve(x, weight, bias, stride, padding, dilation, groups)
    return s, p, d, out, operator.index(groups), _asymmetric_on_cuda(x, weight, s, p, d, out)


def _fast_path(x: Tensor, weight: Tensor) -> bool:
    """Whether fastrnn's kernels take the call. Empty inputs and weights go to torch, which has
    its own results for them (an input with no channels gives an output with none) and its own
    errors (no output channels, an empty kernel), whose types and words differ case by case."""
    if x.numel() == 0 or not isinstance(weight, Tensor) or weight.numel() == 0:
        return False
    if x.device.type == "cuda":
        return _CUDA_BUILT and x.dtype in _CUDA_DTYPES
    return x.device.type == "cpu" and x.dtype in _SUPPORTED_DTYPES


def _asymmetric_on_cuda(x: Tensor, weight: Tensor, stride, padding, dilation, out) -> bool:
    """The CUDA kernels take one padding per side pair; torch's 'same' for even kernels pads
    bottom/right one more, which they cannot express."""
    if x.device.type != "cuda":
        return False
    for size, k, s, p, d, o in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, out):
        if (size + 2 * p - d * (k - 1) - 1) // s + 1 != o:
            return True
    return False


def _needs_graph(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _fallback_conv2d(x, weight, bias, stride, padding, dilation, groups):
    # The single place where calls leave fastrnn's kernels for torch's (see the module docstring).
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002 - torch's name
           stride: Union[int, Sequence[int]] = 1, padding: Union[str, int, Sequence[int]] = 0,
           dilation: Union[int, Sequence[int]] = 1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv2d on fastrnn's kernels: same arguments, results and errors."""
    if not untraced(_fast_path, input, weight) or input.dim() not in (3, 4):
        return _fallback_conv2d(input, weight, bias, stride, padding, dilation, groups)
    batched = input.dim() == 4
    x = input if batched else input.unsqueeze(0)
    try:
        s, p, d, out, g, to_torch = untraced(_geometry_of, x, weight, bias, stride, padding, dilation, groups)
    except _TorchDecides:
        to_torch = True
    if to_torch:
        return _fallback_conv2d(input, weight, bias, stride, padding, dilation, groups)
    op = _choose(x, weight, bias, conv2d_impl, _Conv2dFunction, _Conv2dTransformed, conv2d_op)
    y = op(x.contiguous(), weight.contiguous(), _contiguous(bias), s, p, d, g, out)
    return y if batched else y.squeeze(0)


def conv_relu_pool2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002
                     stride: Union[int, Sequence[int]] = 1, padding: Union[str, int, Sequence[int]] = 0,
                     dilation: Union[int, Sequence[int]] = 1, groups: int = 1) -> Tensor:
    """max_pool2d(relu(conv2d(input, weight, bias, ...)), 2, 2) in one fused pass: the conv
    output is pooled block by block while in cache and never stored whole."""
    if not untraced(_fast_path, input, weight) or input.dim() not in (3, 4):
        return F.max_pool2d(F.relu(_fallback_conv2d(input, weight, bias, stride, padding, dilation, groups)), 2, 2)
    batched = input.dim() == 4
    x = input if batched else input.unsqueeze(0)
    try:
        s, p, d, out, g, to_torch = untraced(_geometry_of, x, weight, bias, stride, padding, dilation, groups)
    except _TorchDecides:
        to_torch = True
    if to_torch or out[0] < 2 or out[1] < 2:
        # torch's ops for what fastrnn's kernels do not take (and max_pool2d's error for a conv
        # output too small to pool)
        return F.max_pool2d(F.relu(_fallback_conv2d(input, weight, bias, stride, padding, dilation, groups)), 2, 2)
    op = _choose(x, weight, bias, conv_relu_pool2d_impl, _ConvReluPool2dFunction, _ConvReluPool2dTransformed,
                 conv_relu_pool2d_op)
    y, _ = op(x.contiguous(), weight.contiguous(), _contiguous(bias), s, p, d, g, out)
    return y if batched else y.squeeze(0)
