"""2-d max and average pooling as torch custom ops (``torch.ops.fastrnn.max_pool2d`` etc.), with
fake kernels and autograd, double backward included.

Input (N, C, H, W) or (C, H, W); channels_last or other strided input is made NCHW-contiguous
first, and the output is NCHW-contiguous. Max pool indices are int64, the argmax's flat position
h * W + w within its (n, c) plane, as torch returns them. CPU: float32, float64; CUDA: float16,
bfloat16, float32, float64 (float accumulation), on the current stream.

A CPU max pool that needs a gradient but not the indices keeps uint8 window slots instead, the
argmax's place kh * kW + kw in its window (windows of at most 256 elements): the training step's
index traffic is 1/8 of int64 positions'.

The arguments are validated by the caller (``fastrnn.functional.max_pool2d`` and ``avg_pool2d``,
which take torch's).
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C
from . import _runtime
from ._runtime import backward_entry, eager_function, stream, transform_function, transformed

__all__ = ["max_pool2d_op", "max_pool2d_backward_op", "avg_pool2d_op", "avg_pool2d_backward_op"]

MAX_WINDOW_SLOTS = 256  # uint8 window slots: kernel_h * kernel_w at most this (common/pool_params.h)


def output_size(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooled size: floor (or ceil) of the window count; in ceil mode the last window
    must start inside the input or its left padding."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pooled_shape(shape, kernel_size, stride, padding, dilation, ceil_mode) -> List[int]:
    return list(shape[:-2]) + [output_size(shape[-2 + d], kernel_size[d], padding[d], stride[d], dilation[d], ceil_mode)
                               for d in range(2)]


def _not_saved():
    return RuntimeError("fastrnn: this max_pool2d ran without indices and saved nothing for backward; call it "
                        "with with_indices=True (fastrnn.functional and fastrnn.nn do so when a gradient is needed)")


# ---- Custom ops -----------------------------------------------------------------------------


def max_pool2d_impl(x: Tensor, kernel_size: List[int], stride: List[int], padding: List[int], dilation: List[int],
                    ceil_mode: bool, with_indices: bool, window_slots: bool = False) -> Tuple[Tensor, Tensor]:
    """(y, indices): indices is empty unless with_indices; int64 flat positions, or with
    window_slots (CPU only) uint8 window slots. x must be contiguous. The body of the custom op
    max_pool2d; called directly it skips torch's dispatcher (no autograd)."""
    shape = pooled_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = _runtime.empty(shape, x)
    index_dtype = torch.uint8 if window_slots else torch.int64
    indices = _runtime.empty(shape, x, index_dtype) if with_indices else x.new_empty(0, dtype=index_dtype)
    _C.max_pool2d_forward(to_dlpack(x), to_dlpack(y), to_dlpack(indices) if with_indices else None, kernel_size,
                          stride, padding, dilation, ceil_mode, stream(x))
    return y, indices


max_pool2d_op = torch.library.custom_op("fastrnn::max_pool2d", mutates_args=())(max_pool2d_impl)


@max_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode, with_indices, window_slots=False):
    shape = pooled_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    index_dtype = torch.uint8 if window_slots else torch.int64
    return x.new_empty(shape), x.new_empty(shape if with_indices else 0, dtype=index_dtype)


def max_pool2d_backward_impl(grad_output: Tensor, indices: Tensor, input_shape: List[int], kernel_size: List[int],
                             stride: List[int], padding: List[int], dilation: List[int], ceil_mode: bool) -> Tensor:
    """grad_input of input_shape: grad_output added at the argmax positions `indices` (int64
    flat positions or uint8 window slots)."""
    grad_input = _runtime.empty(input_shape, grad_output)
    _C.max_pool2d_backward(to_dlpack(grad_output.contiguous()), to_dlpack(indices.contiguous()),
                           to_dlpack(grad_input), kernel_size, stride, padding, dilation, ceil_mode,
                           stream(grad_output))
    return grad_input


def _grad_input_like(grad_output, input_shape: List[int]) -> Tensor:
    """A backward op's fake kernel: its output's shape and dtype."""
    return grad_output.new_empty(input_shape)


max_pool2d_backward_op = torch.library.custom_op("fastrnn::max_pool2d_backward",
                                                 mutates_args=())(max_pool2d_backward_impl)
max_pool2d_backward_op.register_fake(lambda grad_output, indices, input_shape, *_: _grad_input_like(grad_output,
                                                                                                    input_shape))


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
    backward = backward_entry(grad_y, max_pool2d_backward_impl, max_pool2d_backward_op,
                              _MaxPool2dBackwardTransformed.apply)
    return backward(grad_y, indices, ctx.input_shape, *ctx.args), None, None, None, None, None, None, None


max_pool2d_op.register_autograd(_max_backward, setup_context=_max_setup)


def _max_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.input_width = inputs[2][-1]
    ctx.args = inputs[3:7]  # kernel_size, stride, padding, dilation


def flat_positions(slots: Tensor, input_width: int, kernel_size, stride, padding, dilation) -> Tensor:
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
        indices = flat_positions(indices, ctx.input_width, *ctx.args)
    flat = grad_grad_input.flatten(-2).gather(-1, indices.flatten(-2))
    return flat.view(indices.shape), None, None, None, None, None, None, None


max_pool2d_backward_op.register_autograd(_max_double_backward, setup_context=_max_backward_setup)


def avg_pool2d_impl(x: Tensor, kernel_size: List[int], stride: List[int], padding: List[int], ceil_mode: bool,
                    count_include_pad: bool, divisor_override: Optional[int]) -> Tensor:
    """The body of the custom op avg_pool2d. x must be contiguous."""
    y = _runtime.empty(pooled_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode), x)
    _C.avg_pool2d_forward(to_dlpack(x), to_dlpack(y), kernel_size, stride, padding, ceil_mode, count_include_pad,
                          divisor_override or 0, stream(x))
    return y


avg_pool2d_op = torch.library.custom_op("fastrnn::avg_pool2d", mutates_args=())(avg_pool2d_impl)


@avg_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return x.new_empty(pooled_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode))


def avg_pool2d_backward_impl(grad_output: Tensor, input_shape: List[int], kernel_size: List[int], stride: List[int],
                             padding: List[int], ceil_mode: bool, count_include_pad: bool,
                             divisor_override: Optional[int]) -> Tensor:
    """grad_input of input_shape: each grad_output spread over its window by its divisor."""
    grad_input = _runtime.empty(input_shape, grad_output)
    _C.avg_pool2d_backward(to_dlpack(grad_output.contiguous()), to_dlpack(grad_input), kernel_size, stride, padding,
                           ceil_mode, count_include_pad, divisor_override or 0, stream(grad_output))
    return grad_input


avg_pool2d_backward_op = torch.library.custom_op("fastrnn::avg_pool2d_backward",
                                                 mutates_args=())(avg_pool2d_backward_impl)
avg_pool2d_backward_op.register_fake(lambda grad_output, input_shape, *_: _grad_input_like(grad_output, input_shape))


def _avg_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)
    ctx.args = inputs[1:]


def _avg_backward(ctx, grad_y):
    backward = backward_entry(grad_y, avg_pool2d_backward_impl, avg_pool2d_backward_op,
                              _AvgPool2dBackwardTransformed.apply)
    return (backward(grad_y, ctx.input_shape, *ctx.args), None, None, None, None, None, None)


avg_pool2d_op.register_autograd(_avg_backward, setup_context=_avg_setup)


def _avg_backward_setup(ctx, inputs, output):
    ctx.args = inputs[2:]


def _avg_double_backward(ctx, grad_grad_input):
    # The backward is linear in grad_output, and its adjoint is the forward pool.
    forward = _AvgPool2dTransformed.apply if transformed() else avg_pool2d_op
    return forward(grad_grad_input.contiguous(), *ctx.args), None, None, None, None, None, None, None


avg_pool2d_backward_op.register_autograd(_avg_double_backward, setup_context=_avg_backward_setup)


def _max_function_setup(ctx, inputs, output):
    """_max_setup for the eager autograd.Function: the indices are no differentiable output."""
    _max_setup(ctx, inputs, output)
    ctx.mark_non_differentiable(output[1])


_MaxPool2dTransformed = transform_function("_MaxPool2dTransformed", max_pool2d_op, _max_setup, _max_backward)
_MaxPool2dBackwardTransformed = transform_function("_MaxPool2dBackwardTransformed", max_pool2d_backward_op,
                                                   _max_backward_setup, _max_double_backward)
_AvgPool2dTransformed = transform_function("_AvgPool2dTransformed", avg_pool2d_op, _avg_setup, _avg_backward)
_AvgPool2dBackwardTransformed = transform_function("_AvgPool2dBackwardTransformed", avg_pool2d_backward_op,
                                                   _avg_backward_setup, _avg_double_backward)

# The four entries of each forward (fastrnn.functional picks one with ops.choose), as (body, eager
# autograd.Function, functorch transforms' autograd.Function, custom op). The eager Functions run
# the same bodies and, for double backward (create_graph), the same differentiable backward ops.
MAX_POOL2D = (max_pool2d_impl,
              eager_function("_MaxPool2dFunction", max_pool2d_impl, _max_function_setup, _max_backward).apply,
              _MaxPool2dTransformed.apply, max_pool2d_op)
AVG_POOL2D = (avg_pool2d_impl, eager_function("_AvgPool2dFunction", avg_pool2d_impl, _avg_setup, _avg_backward).apply,
              _AvgPool2dTransformed.apply, avg_pool2d_op)
