"""2-d max and average pooling: torch custom ops (``torch.ops.fastrnn.max_pool2d`` etc., with
fake kernels and autograd, double backward included) and the torch.nn.functional-style
functions built on them, which validate their arguments as torch does.

Input (N, C, H, W) or (C, H, W); channels_last or other strided input is made NCHW-contiguous
first, and the output is NCHW-contiguous. Max pool indices are int64, the argmax's flat position
h * W + w within its (n, c) plane, as torch returns them. CPU: float32, float64; CUDA: float16,
bfloat16, float32, float64 (float accumulation), on the current stream.

A CPU max pool that needs a gradient but not the indices keeps uint8 window slots instead, the
argmax's place kh * kW + kw in its window (windows of at most 256 elements): the training step's
index traffic is 1/8 of int64 positions'.
"""

import operator
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from . import _C, ops

__all__ = ["max_pool2d", "avg_pool2d"]

_CPU_DTYPES = (torch.float32, torch.float64)
_MAX_WINDOW_SLOTS = 256  # uint8 window slots: kernel_h * kernel_w at most this (common/pool_params.h)
_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# torch's names of scalar types, for its "not implemented for 'Int'" message.
_TYPE_NAMES = {torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
               torch.int8: "Char", torch.uint8: "Byte", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
               torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble"}


def _stream(t: Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream if t.device.type == "cuda" else 0


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (towards zero), as torch's checks compute it."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _output_size(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooled size: floor (or ceil) of the window count; in ceil mode the last window
    must start inside the input or its left padding."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pooled_shape(shape, kernel_size, stride, padding, dilation, ceil_mode) -> List[int]:
    return list(shape[:-2]) + [_output_size(shape[-2 + d], kernel_size[d], padding[d], stride[d], dilation[d], ceil_mode)
                               for d in range(2)]


def _not_saved():
    return RuntimeError("fastrnn: this max_pool2d ran without indices and saved nothing for backward; call it "
                        "with with_indices=True (fastrnn.functional and fastrnn.nn do so when a gradient is needed)")


# ---- torch.jit and functorch transforms ---------------------------------------------------------

def untraced(fn, *args):
    """fn(*args) with torch.jit.trace paused, for argument checks: under trace a tensor's sizes
    are tensors, each comparison of them a TracerWarning, and int[] op arguments refuse them.
    (The checks record nothing a traced graph needs; the ops they lead to are traced.)"""
    if not torch.jit.is_tracing():
        return fn(*args)
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        return fn(*args)
    finally:
        torch._C._set_tracing_state(state)


script_error, transformed, transform_function = ops.script_error, ops.transformed, ops.transform_function


def no_setup(ctx, inputs, output) -> None:
    """The setup_context of an op without a derivative of its own."""


def no_derivative(ctx, *grads):
    raise RuntimeError("fastrnn: the backward of this op has no derivative of its own (no double backward)")


# ---- Custom ops -----------------------------------------------------------------------------


def max_pool2d_impl(x: Tensor, kernel_size: List[int], stride: List[int], padding: List[int], dilation: List[int],
                    ceil_mode: bool, with_indices: bool, window_slots: bool = False) -> Tuple[Tensor, Tensor]:
    """(y, indices): indices is empty unless with_indices; int64 flat positions, or with
    window_slots (CPU only) uint8 window slots. x must be contiguous. The body of the custom op
    max_pool2d; called directly it skips torch's dispatcher (no autograd)."""
    shape = _pooled_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = ops._empty(shape, x)
    index_dtype = torch.uint8 if window_slots else torch.int64
    indices = ops._empty(shape, x, index_dtype) if with_indices else x.new_empty(0, dtype=index_dtype)
    _C.max_pool2d_forward(to_dlpack(x), to_dlpack(y), to_dlpack(indices) if with_indices else None, kernel_size,
                          stride, padding, dilation, ceil_mode, _stream(x))
    return y, indices


max_pool2d_op = torch.library.custom_op("fastrnn::max_pool2d", mutates_args=())(max_pool2d_impl)


@max_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode, with_indices, window_slots=False):
    shape = _pooled_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    index_dtype = torch.uint8 if window_slots else torch.int64
    return x.new_empty(shape), x.new_empty(shape if with_indices else 0, dtype=index_dtype)


def max_pool2d_backward_impl(grad_output: Tensor, indices: Tensor, input_shape: List[int], kernel_size: List[int],
                             stride: List[int], padding: List[int], dilation: List[int], ceil_mode: bool) -> Tensor:
    """grad_input of input_shape: grad_output added at the argmax positions `indices` (int64
    flat positions or uint8 window slots)."""
    grad_input = ops._empty(input_shape, grad_output)
    _C.max_pool2d_backward(to_dlpack(grad_output.contiguous()), to_dlpack(indices.contiguous()),
                           to_dlpack(grad_input), kernel_size, stride, padding, dilation, ceil_mode,
                           _stream(grad_output))
    return grad_input


max_pool2d_backward_op = torch.library.custom_op("fastrnn::max_pool2d_backward",
                                                 mutates_args=())(max_pool2d_backward_impl)


@max_pool2d_backward_op.register_fake
def _(grad_output, indices, input_shape, kernel_size, stride, padding, dilation, ceil_mode):
    return grad_output.new_empty(input_shape)


def _max_setup(ctx, inputs, output):
    _, kernel_size, stride, padding, dilation, ceil_mode, with_indices = inputs[:7]
    ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
    ctx.with_indices = with_indices
    ctx.input_shape = list(inputs[0].shape)
    ctx.save_for_backward(output[1])
    ctx.set_materialize_grads(False)  # no zero gradient for the (int64) indices output


def _max_backward(ctx, grad_y, _grad_indices):
    if not ctx.with_indices:
        raise _not_saved()
    (indices,) = ctx.saved_tensors
    if grad_y is None:  # only the indices were used: no gradient reaches the input
        return None, None, None, None, None, None, None, None
    # Outside a double-backward graph the op's body runs directly, without the dispatcher.
    backward = max_pool2d_backward_op if not _direct(grad_y, torch.is_grad_enabled()) else max_pool2d_backward_impl
    if transformed():
        backward = _MaxPool2dBackwardTransformed.apply
    return backward(grad_y, indices, ctx.input_shape, *ctx.args), None, None, None, None, None, None, None


max_pool2d_op.register_autograd(_max_backward, setup_context=_max_setup)


def _max_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.input_width = inputs[2][-1]
    ctx.args = inputs[3:7]  # kernel_size, stride, padding, dilation


def _flat_positions(slots: Tensor, input_width: int, kernel_size, stride, padding, dilation) -> Tensor:
    """The int64 flat positions h * W + w of uint8 window slots kh * kW + kw."""
    oh = torch.arange(slots.shape[-2], device=slots.device).unsqueeze(-1)
    ow = torch.arange(slots.shape[-1], device=slots.device)
    slot = slots.long()
    h = oh * stride[0] - padding[0] + torch.div(slot, kernel_size[1], rounding_mode="floor") * dilation[0]
    w = ow * stride[1] - padding[1] + slot % kernel_size[1] * dilation[1]
    return h * input_width + w


def _max_double_backward(ctx, grad_grad_input):
    # The backward is linear in grad_output: its own gradient picks each window's argmax.
    (indices,) = ctx.saved_tensors
    if indices.dtype == torch.uint8:
        indices = _flat_positions(indices, ctx.input_width, *ctx.args)
    flat = grad_grad_input.flatten(-2).gather(-1, indices.flatten(-2))
    return flat.view(indices.shape), None, None, None, None, None, None, None


max_pool2d_backward_op.register_autograd(_max_double_backward, setup_context=_max_backward_setup)


def avg_pool2d_impl(x: Tensor, kernel_size: List[int], stride: List[int], padding: List[int], ceil_mode: bool,
                    count_include_pad: bool, divisor_override: Optional[int]) -> Tensor:
    """The body of the custom op avg_pool2d. x must be contiguous."""
    y = ops._empty(_pooled_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode), x)
    _C.avg_pool2d_forward(to_dlpack(x), to_dlpack(y), kernel_size, stride, padding, ceil_mode, count_include_pad,
                          divisor_override or 0, _stream(x))
    return y


avg_pool2d_op = torch.library.custom_op("fastrnn::avg_pool2d", mutates_args=())(avg_pool2d_impl)


@avg_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return x.new_empty(_pooled_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode))


def avg_pool2d_backward_impl(grad_output: Tensor, input_shape: List[int], kernel_size: List[int], stride: List[int],
                             padding: List[int], ceil_mode: bool, count_include_pad: bool,
                             divisor_override: Optional[int]) -> Tensor:
    """grad_input of input_shape: each grad_output spread over its window by its divisor."""
    grad_input = ops._empty(input_shape, grad_output)
    _C.avg_pool2d_backward(to_dlpack(grad_output.contiguous()), to_dlpack(grad_input), kernel_size, stride, padding,
                           ceil_mode, count_include_pad, divisor_override or 0, _stream(grad_output))
    return grad_input


avg_pool2d_backward_op = torch.library.custom_op("fastrnn::avg_pool2d_backward",
                                                 mutates_args=())(avg_pool2d_backward_impl)


@avg_pool2d_backward_op.register_fake
def _(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return grad_output.new_empty(input_shape)


def _avg_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)
    ctx.args = inputs[1:]


def _avg_backward(ctx, grad_y):
    backward = avg_pool2d_backward_op if not _direct(grad_y, torch.is_grad_enabled()) else avg_pool2d_backward_impl
    if transformed():
        backward = _AvgPool2dBackwardTransformed.apply
    return (backward(grad_y, ctx.input_shape, *ctx.args), None, None, None, None, None, None)


avg_pool2d_op.register_autograd(_avg_backward, setup_context=_avg_setup)


def _avg_backward_setup(ctx, inputs, output):
    ctx.args = inputs[2:]


def _avg_double_backward(ctx, grad_grad_input):
    # The backward is linear in grad_output, and its adjoint is the forward pool.
    forward = _AvgPool2dTransformed.apply if transformed() else avg_pool2d_op
    return forward(grad_grad_input.contiguous(), *ctx.args), None, None, None, None, None, None, None


avg_pool2d_backward_op.register_autograd(_avg_double_backward, setup_context=_avg_backward_setup)


# ---- Eager training: autograd.Function around the same bodies ---------------------------------------
# torch.library's autograd wrapper of a custom op costs ~0.3 ms a training step on this kind of
# machine (a few times torch's whole per-call overhead), which is 10-15% of a 2x2 pool's step on a
# 64x32x28x28 batch. Plain tensors in eager mode take these Functions instead; they run the same
# bodies and, for double backward (create_graph), the same differentiable backward ops.
# torch.compile, tensor subclasses, dispatch modes and functorch transforms keep the custom ops.


class _MaxPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, window_slots):
        y, indices = max_pool2d_impl(x, kernel_size, stride, padding, dilation, ceil_mode, True, window_slots)
        ctx.mark_non_differentiable(indices)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(indices)
        ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.input_shape = list(x.shape)
        ctx.with_indices = True
        return y, indices

    @staticmethod
    def backward(ctx, grad_y, grad_indices):
        return _max_backward(ctx, grad_y, grad_indices)[:7]


class _AvgPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.input_shape = list(x.shape)
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return avg_pool2d_impl(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    @staticmethod
    def backward(ctx, grad_y):
        return _avg_backward(ctx, grad_y)


_MaxPool2dTransformed = transform_function("_MaxPool2dTransformed", max_pool2d_op, _max_setup, _max_backward)
_MaxPool2dBackwardTransformed = transform_function("_MaxPool2dBackwardTransformed", max_pool2d_backward_op,
                                                   _max_backward_setup, _max_double_backward)
_AvgPool2dTransformed = transform_function("_AvgPool2dTransformed", avg_pool2d_op, _avg_setup, _avg_backward)
_AvgPool2dBackwardTransformed = transform_function("_AvgPool2dBackwardTransformed", avg_pool2d_backward_op,
                                                   _avg_backward_setup, _avg_double_backward)


# ---- Argument checks, in torch's order and words --------------------------------------------------


def int_list(value) -> List[int]:
    """An int or a sequence of ints (anything with __index__ but a bool) as a list; TypeError for
    anything else, whose words the caller leaves to torch's own call."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, bool) for v in items):
        raise TypeError
    return [operator.index(v) for v in items]


def _pair(items: List[int], what: str) -> List[int]:
    """One or two ints -> two (torch's RuntimeError `what` for another count)."""
    if len(items) not in (1, 2):
        raise RuntimeError(what)
    return items * 2 if len(items) == 1 else items


def _check_flag(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _check_shape(x: Tensor, kernel, stride, padding, dilation, ceil_mode) -> None:
    """torch's pooling_output_shape then pool2d_shape_check."""
    sizes = list(x.shape)
    out = []
    for d in range(2):
        k, s, p, dil = kernel[d], stride[d], padding[d], dilation[d]
        if s == 0:
            raise RuntimeError("stride should not be zero")
        if p < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
        if p > _trunc_div((k - 1) * dil + 1, 2):
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={dil}")
        out.append(_output_size(sizes[-2 + d], k, p, s, dil, ceil_mode))
    kH, kW = kernel
    if kW <= 0 or kH <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {kH} kW: {kW}")
    if stride[1] <= 0 or stride[0] <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got dH: {stride[0]} dW: {stride[1]}")
    if dilation[0] <= 0 or dilation[1] <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dilation[0]} "
                           f"dilationW: {dilation[1]}")
    valid = x.ndim in (3, 4) and sizes[1] != 0 and sizes[2] != 0 and (sizes[0] != 0 if x.ndim == 3 else sizes[3] != 0)
    if not valid:
        raise RuntimeError(f"Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                           f"got:{sizes}")
    if kW // 2 < padding[1] or kH // 2 < padding[0]:
        raise RuntimeError(f"pad should be smaller than or equal to half of kernel size, but got padW = {padding[1]}, "
                           f"padH = {padding[0]}, kW = {kW}, kH = {kH}")
    if out[0] < 1 or out[1] < 1:
        planes = sizes[-3]
        raise RuntimeError(f"Given input size: ({planes}x{sizes[-2]}x{sizes[-1]}). Calculated output size: "
                           f"({planes}x{out[0]}x{out[1]}). Output size is too small")


def _check_dtype(name: str, x: Tensor) -> None:
    supported = _CUDA_DTYPES if x.device.type == "cuda" else _CPU_DTYPES
    if x.dtype not in supported:
        raise NotImplementedError(f'"{name}" not implemented for \'{_TYPE_NAMES.get(x.dtype, str(x.dtype))}\'')


def _needs_autograd(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _direct(x: Tensor, training: bool) -> bool:
    """Whether the op's body may be called without the dispatcher: no autograd, no tracing
    (a plain tensor, no dispatch mode active, not compiling, not in torch.jit.trace, which
    records only dispatcher calls and would keep the output's allocation without the kernel,
    and no functorch transform, whose tensors look plain but wrap others)."""
    return not training and ops.eager(x)


# ---- Functions ---------------------------------------------------------------------------------------


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """torch.nn.functional.max_pool2d: the maximum of each window (a NaN wins); with
    return_indices also the argmax's flat position in its plane."""
    try:
        lists = [int_list(v) for v in (kernel_size, () if stride is None else stride, padding, dilation)]
        ceil_mode = _check_flag(ceil_mode)
    except TypeError:
        # torch's argument parser words a type error by where the wrong element sits and how the
        # argument came; its own call says it (and computes what it takes and fastrnn does not: a
        # bool after a sequence's first element counts as an int there).
        return torch.nn.functional.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                                              return_indices=return_indices)
    kernel = _pair(lists[0], "max_pool2d: kernel_size must either be a single int, or a tuple of two ints")
    strides = kernel if not lists[1] else _pair(
        lists[1], "max_pool2d: stride must either be omitted, a single int, or a tuple of two ints")
    pads = _pair(lists[2], "max_pool2d: padding must either be a single int, or a tuple of two ints")
    dilations = _pair(lists[3], "max_pool2d: dilation must be either a single int, or a tuple of two ints")
    if input.ndim not in (3, 4):
        raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    untraced(_check_shape, input, kernel, strides, pads, dilations, ceil_mode)
    _check_dtype("max_pool2d", input)
    # A traced graph may be run for training: it keeps the indices a backward needs.
    training = _needs_autograd(input) or torch.jit.is_tracing()
    x = input.contiguous()
    # Indices kept only for the backward are window slots where they fit in a byte (CPU kernels).
    window_slots = (training and not return_indices and x.device.type == "cpu"
                    and kernel[0] * kernel[1] <= _MAX_WINDOW_SLOTS)
    args = (kernel, strides, pads, dilations, ceil_mode, bool(return_indices or training), window_slots)
    if _direct(x, training):
        y, indices = max_pool2d_impl(x, *args)
    elif training and ops.eager(x):
        y, indices = _MaxPool2dFunction.apply(x, *args[:5], window_slots)
    elif transformed():
        y, indices = _MaxPool2dTransformed.apply(x, *args)
    else:
        y, indices = max_pool2d_op(x, *args)
    return (y, indices) if return_indices else y


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """torch.nn.functional.avg_pool2d: each window's sum over its divisor (divisor_override, or
    the window's size within the padded input with count_include_pad, within the input without)."""
    return _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, False)


def avg_pool2d_by_position(input: Tensor, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override) -> Tensor:
    """avg_pool2d as torch.nn.AvgPool2d calls it, every argument by position, which torch's type
    errors name: "argument 'ceil_mode' (position 5)"."""
    return _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, True)


def _avg_pool2d(input: Tensor, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                by_position: bool) -> Tensor:
    try:
        lists = [int_list(v) for v in (kernel_size, () if stride is None else stride, padding)]
        ceil_mode, count_include_pad = _check_flag(ceil_mode), _check_flag(count_include_pad)
        if divisor_override is not None and (isinstance(divisor_override, bool)
                                             or not hasattr(divisor_override, "__index__")):
            raise TypeError
    except TypeError:
        # torch's own words (see max_pool2d), which name an argument's position where it came by
        # position: all of them from torch.nn.AvgPool2d, usually the first four from a caller.
        if by_position:
            return torch.nn.functional.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                                  divisor_override)
        return torch.nn.functional.avg_pool2d(input, kernel_size, stride, padding, ceil_mode=ceil_mode,
                                              count_include_pad=count_include_pad, divisor_override=divisor_override)
    kernel = _pair(lists[0], "avg_pool2d: kernel_size must either be a single int, or a tuple of two ints")
    strides = kernel if not lists[1] else _pair(
        lists[1], "avg_pool2d: stride must either be omitted, a single int, or a tuple of two ints")
    pads = _pair(lists[2], "avg_pool2d: padding must either be a single int, or a tuple of two ints")
    if divisor_override is not None:
        divisor_override = operator.index(divisor_override)
        if divisor_override == 0:
            raise RuntimeError("divisor must be not zero")
    if input.ndim < 3:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-max(input.ndim, 1)}, "
                         f"{max(input.ndim, 1) - 1}], but got -3)")
    untraced(_check_shape, input, kernel, strides, pads, (1, 1), ceil_mode)
    _check_dtype("avg_pool2d", input)
    x = input.contiguous()
    args = (kernel, strides, pads, ceil_mode, count_include_pad, divisor_override)
    training = _needs_autograd(x)
    if _direct(x, training):
        return avg_pool2d_impl(x, *args)
    if training and ops.eager(x):
        return _AvgPool2dFunction.apply(x, *args)
    if transformed():
        return _AvgPool2dTransformed.apply(x, *args)
    return avg_pool2d_op(x, *args)
