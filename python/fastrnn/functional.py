"""fastrnn's kernels as torch functions: the RNN layers (``lstm``, ``gru``, ``rnn``: one layer,
one direction, whole sequence), ``conv2d`` and ``conv_relu_pool2d``, ``max_pool2d`` and
``avg_pool2d`` (torch.nn.functional's signatures, arguments and errors). Each call takes the path
``fastrnn.ops.choose`` picks: the op body directly (no autograd), an autograd.Function around it
(eager training), or the custom op (torch.compile, tracing, functorch transforms).

RNN layers:

Shapes: x (T, B, I); h0, c0 (B, H) or None (zeros); y (T, B, H). Weights in PyTorch's layout
(weight_ih (G*H, I), weight_hh (G*H, H), biases (G*H)), so the parameters of a torch.nn.LSTM,
GRU or RNN layer can be passed as they are. Differentiable with autograd; each call is one
``torch.ops.fastrnn`` custom op, so ``torch.compile(fullgraph=True)`` keeps it in the graph.

CUDA tensors run the CUDA kernels, on the current stream, in float32, float64, float16 or
bfloat16 (the last two with float32 arithmetic and cell state). float32 products are true fp32
unless ``torch.backends.cuda.matmul.allow_tf32`` is True, in which case they use TF32 tensor
cores, as torch's own matmuls then do; the switch is read at each call.

``recurrent_mask`` (B, H), optional: variational (recurrent) dropout inside the fused kernel,
``gates_t = W_ih x_t + W_hh (recurrent_mask * h_{t-1}) + b`` with the same mask at every step
(h0 included); pass it already scaled (0 or 1/(1-p)). It is a constant (no gradient flows to
it). CPU only for now.
"""

import operator
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as _torch_F
from torch import Tensor

from . import _checks, ops
from .ops import DIRECT, FUNCTION, TRANSFORMED, any_requires_grad, choose, contiguous, supported_dtypes
from .ops import conv as _conv_ops
from .ops import pool as _pool_ops
from .ops import rnn as _rnn_ops

__all__ = ["lstm", "gru", "rnn", "conv2d", "conv_relu_pool2d", "max_pool2d", "avg_pool2d"]


def run_layer(cell: str, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor] = None,
              batch_sizes: Optional[Tensor] = None, reverse: bool = False, recurrent_mask: Optional[Tensor] = None):
    """One layer and direction on already validated arguments: (y, h_n, c_n); c_n is empty
    unless LSTM. x is (T, B, I), or (rows, I) packed with batch_sizes. The building block of
    fastrnn.nn; not part of the public API."""
    tensors = (x, h0, c0 if cell == "lstm" else None, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    # Save what backward needs only when autograd will ask for it.
    training = torch.is_grad_enabled() and any_requires_grad(tensors)
    path = choose(x, training)
    args = (*map(contiguous, tensors), batch_sizes, _checks.CELLS[cell], bool(reverse), training)
    if path == DIRECT:  # the op's body, saving the dispatch
        return _rnn_ops.rnn_inference(*args[:-1], contiguous(recurrent_mask))
    if path == FUNCTION:
        y, h_n, c_n, _ = _rnn_ops.rnn_forward_eager(*args, contiguous(recurrent_mask))
        return y, h_n, c_n
    if path == TRANSFORMED and training:  # (without a graph the op runs, with its vmap rule)
        y, h_n, c_n, _ = _rnn_ops.rnn_forward_transformed(*args, contiguous(recurrent_mask))
        return y, h_n, c_n
    if not training and ops.tracing(tensors):
        args = args[:-1] + (True,)
    # The mask goes along only when there is one: the op's plain call is unchanged without it.
    masks = () if recurrent_mask is None else (recurrent_mask.contiguous(),)
    y, h_n, c_n, _ = _rnn_ops.rnn_forward(*args, *masks)
    return y, h_n, c_n


def run_bidirectional_layer(cell: str, x: Tensor, forward: tuple, reverse: tuple,
                            batch_sizes: Optional[Tensor] = None, recurrent_masks: tuple = (None, None)):
    """Both directions of one layer on validated arguments, side by side in one kernel call.
    `forward` and `reverse` are each (h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr);
    `recurrent_masks` the two directions' masks (or None).
    Returns (y, (h_n, c_n), (h_n_reverse, c_n_reverse)), y holding both directions per row as
    torch.nn does. The building block of fastrnn.nn; not part of the public API."""
    lstm = cell == "lstm"

    def prepared(direction):
        h0, c0, *weights = direction
        return (h0, c0 if lstm else None, *weights)

    tensors = (x,) + prepared(forward) + prepared(reverse)
    training = torch.is_grad_enabled() and any_requires_grad(tensors)
    path = choose(x, training)
    args = (*map(contiguous, tensors), batch_sizes, _checks.CELLS[cell], training)
    if path == DIRECT:  # the op's body, saving the dispatch
        return _rnn_ops.rnn_bidirectional_inference(*args[:-1], *map(contiguous, recurrent_masks))
    if path == FUNCTION:
        y, h_n, c_n, _, h_n_r, c_n_r, _ = _rnn_ops.rnn_bidirectional_forward_eager(
            *args, *map(contiguous, recurrent_masks))
    elif path == TRANSFORMED and training:
        y, h_n, c_n, _, h_n_r, c_n_r, _ = _rnn_ops.rnn_bidirectional_forward_transformed(
            *args, *map(contiguous, recurrent_masks))
    else:
        if not training and ops.tracing(tensors):
            args = args[:-1] + (True,)
        y, h_n, c_n, _, h_n_r, c_n_r, _ = _rnn_ops.rnn_bidirectional_forward(
            *args, *(() if all(m is None for m in recurrent_masks) else map(contiguous, recurrent_masks)))
    return y, (h_n, c_n), (h_n_r, c_n_r)


def check_recurrent_mask(op: str, mask: Optional[Tensor], like: Tensor, batch: int, width: int) -> None:
    """A recurrent dropout mask is (batch, width), of the weights' dtype and device, constant."""
    if mask is None:
        return
    if tuple(mask.shape) != (batch, width):
        raise RuntimeError(f"{op}: Expected recurrent_mask of size ({batch}, {width}), got {tuple(mask.shape)}")
    if mask.dtype != like.dtype:
        raise RuntimeError(f"{op}: expected recurrent_mask of dtype {like.dtype} like weight_ih, got {mask.dtype}")
    if mask.device != like.device:
        raise ops.device_mismatch(like.device, mask.device, f"{op}: recurrent_mask")
    if mask.requires_grad:
        raise RuntimeError(f"{op}: recurrent_mask must not require grad: the kernels treat it as a constant")


def _check_tensors(op: str, required: dict, optional: dict) -> None:
    """A TypeError naming the argument, as torch's functions raise for a non-tensor (rather than
    an AttributeError from the first shape read)."""
    for name, t in (*required.items(), *optional.items()):
        if not isinstance(t, Tensor) and (name in required or t is not None):
            wanted = "Tensor" if name in required else "Tensor or None"
            raise TypeError(f"{op}: expected {name} to be a {wanted}, got {type(t).__name__}")


def _layer(op, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse, recurrent_mask=None):
    lstm = cell == "lstm"
    try:
        T, B, _, H = _checks.check_rnn_arguments(op, cell, x, h0, c0 if lstm else None, weight_ih, weight_hh,
                                                 bias_ih, bias_hh, supported_dtypes(x))
        check_recurrent_mask(op, recurrent_mask, weight_ih, B, H)
    except AttributeError:  # a non-tensor met where a size was read (checked only then: a batch-1 call notices)
        _check_tensors(op, {"x": x, "weight_ih": weight_ih, "weight_hh": weight_hh},
                       {"h0": h0, "c0": c0 if lstm else None, "bias_ih": bias_ih, "bias_hh": bias_hh,
                        "recurrent_mask": recurrent_mask})
        raise
    if h0 is None:
        h0 = x.new_zeros(B, H)
    if lstm and c0 is None:
        c0 = x.new_zeros(B, H)
    y, h_n, c_n = run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse=reverse,
                            recurrent_mask=recurrent_mask)
    return (y, h_n, c_n) if lstm else (y, h_n)


def lstm(x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
         bias_ih: Optional[Tensor] = None, bias_hh: Optional[Tensor] = None, *, reverse: bool = False,
         recurrent_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """LSTM layer (gates i, f, g, o): returns (y, h_n, c_n).

    ``reverse=True`` runs from the last step to the first (the backward direction of a
    bidirectional layer); y stays at the original time positions. ``recurrent_mask``: see the
    module docstring.
    """
    return _layer("lstm", "lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse, recurrent_mask)


def gru(x: Tensor, h0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor] = None,
        bias_hh: Optional[Tensor] = None, *, reverse: bool = False,
        recurrent_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """GRU layer (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))): returns (y, h_n).
    ``recurrent_mask`` multiplies h where it enters W_hh; the blend z * h_prev is unmasked."""
    return _layer("gru", "gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse, recurrent_mask)


def rnn(x: Tensor, h0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor] = None,
        bias_hh: Optional[Tensor] = None, *, nonlinearity: str = "tanh", reverse: bool = False,
        recurrent_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Elman RNN layer, h = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu: returns (y, h_n)."""
    cell = _checks.elman_cell(nonlinearity)
    return _layer("rnn", cell, x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse, recurrent_mask)




# ---- Convolutions: torch.nn.functional.conv2d's signature and argument handling ---------------
# CPU float32/float64 and CUDA float16/bfloat16/float32/float64 run fastrnn's kernels (ops.conv).
# Every other case (other dtypes, a CUDA-less build, torch's asymmetric 'same' padding on CUDA, an
# empty input or weight, arguments fastrnn does not take) goes to torch in _fallback_conv2d, so its
# result or its error (type and words) is torch's. torch.jit.trace records the custom ops, with
# the output size of the traced call (another height or width is refused).

_CUDA_BUILT = bool(ops._C.build_info()["cuda_compiled"])


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


def int_list(value) -> List[int]:
    """An int or a sequence of ints (anything with __index__ but a bool) as a list; TypeError for
    anything else, whose words the caller leaves to torch's own call."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, bool) for v in items):
        raise TypeError
    return [operator.index(v) for v in items]


class _TorchDecides(Exception):
    """Raised by _resolve for arguments fastrnn's kernels do not take: torch's own conv2d then
    raises its error, type and words, or computes the few odd ones it takes (a bool after the
    first element of an int list counts as an int there)."""


def _conv_pair(v) -> List[int]:
    """int_list's ints, one repeated; _TorchDecides for what is no int list."""
    try:
        items = int_list(v)
    except (TypeError, ValueError, IndexError):
        raise _TorchDecides from None
    return items * 2 if len(items) == 1 else items


def _conv_padding(padding, kh: int, kw: int, s: List[int], d: List[int]):
    """((top, bottom), (left, right)) of a padding argument as torch reads it."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0), (0, 0)]
        if padding == "same" and max(s) == 1:
            pads = []
            for k, dil in ((kh, d[0]), (kw, d[1])):
                total = dil * (k - 1)
                pads.append((total // 2, total - total // 2))
            return pads
        raise _TorchDecides
    p = _conv_pair(padding)
    if len(p) != 2 or min(p) < 0:
        raise _TorchDecides
    return [(p[0], p[0]), (p[1], p[1])]


def _resolve(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups):
    """Validates as torch does; returns (stride, top/left padding, dilation, output size) or
    raises _TorchDecides."""
    if x.dim() != 4 or weight.dim() != 4 or isinstance(groups, bool):
        raise _TorchDecides
    s, d = _conv_pair(stride), _conv_pair(dilation)
    try:
        groups = operator.index(groups)
    except TypeError:
        raise _TorchDecides from None
    if groups <= 0 or len(s) != 2 or len(d) != 2 or min(s) <= 0 or min(d) <= 0:
        raise _TorchDecides
    kh, kw = weight.shape[2], weight.shape[3]
    pads = _conv_padding(padding, kh, kw, s, d)
    c_out = weight.shape[0]
    if (x.shape[1] != weight.shape[1] * groups or c_out % groups != 0 or weight.dtype != x.dtype
            or weight.device != x.device or (bias is not None and (bias.shape != (c_out,) or bias.dtype != x.dtype
                                                                  or bias.device != x.device))):
        raise _TorchDecides
    out = []
    for size, (lo, hi), k, dil, st in ((x.shape[2], pads[0], kh, d[0], s[0]), (x.shape[3], pads[1], kw, d[1], s[1])):
        span = dil * (k - 1) + 1
        if size + lo + hi < span:
            raise _TorchDecides
        out.append((size + lo + hi - span) // st + 1)
    return s, [pads[0][0], pads[1][0]], d, out


def _asymmetric_on_cuda(x: Tensor, weight: Tensor, stride, padding, dilation, out) -> bool:
    """The CUDA kernels take one padding per side pair; torch's 'same' for even kernels pads
    bottom/right one more, which they cannot express."""
    if x.device.type != "cuda":
        return False
    for size, k, s, p, d, o in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, out):
        if (size + 2 * p - d * (k - 1) - 1) // s + 1 != o:
            return True
    return False


def _conv_geometry(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding,  # noqa: A002
                   dilation, groups):
    """(stride, padding, dilation, output size, groups) of a call fastrnn's kernels take; None
    for a call torch runs. Run untraced: a torch.jit.trace graph holds the output size of the
    call it traced, and the kernels refuse inputs of another height or width. Empty inputs and
    weights go to torch, which has its own results for them (an input with no channels gives an
    output with none) and its own errors (no output channels, an empty kernel), whose types and
    words differ case by case."""
    if input.numel() == 0 or not isinstance(weight, Tensor) or weight.numel() == 0 or input.dim() not in (3, 4):
        return None
    if input.is_cuda:
        if not (_CUDA_BUILT and input.dtype in ops.CUDA_DTYPES):
            return None
    elif not (input.device.type == "cpu" and input.dtype in ops.CPU_DTYPES):
        return None
    x = input if input.dim() == 4 else input.unsqueeze(0)
    try:
        s, p, d, out = _resolve(x, weight, bias, stride, padding, dilation, groups)
    except _TorchDecides:
        return None
    if _asymmetric_on_cuda(x, weight, s, p, d, out):
        return None
    return s, p, d, out, operator.index(groups)


def _fallback_conv2d(x, weight, bias, stride, padding, dilation, groups):
    # The single place where calls leave fastrnn's kernels for torch's (see above).
    return _torch_F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _conv_call(entries, x: Tensor, weight: Tensor, bias: Optional[Tensor], geometry):
    """The conv op `entries` (ops.conv) on a batched x, on the path ops.choose picks."""
    s, p, d, out, g = geometry
    op = entries[choose(x, torch.is_grad_enabled() and any_requires_grad((x, weight, bias)))]
    return op(x.contiguous(), weight.contiguous(), contiguous(bias), s, p, d, g, out)


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002 - torch's name
           stride: Union[int, Sequence[int]] = 1, padding: Union[str, int, Sequence[int]] = 0,
           dilation: Union[int, Sequence[int]] = 1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv2d on fastrnn's kernels: same arguments, results and errors."""
    geometry = untraced(_conv_geometry, input, weight, bias, stride, padding, dilation, groups)
    if geometry is None:
        return _fallback_conv2d(input, weight, bias, stride, padding, dilation, groups)
    batched = input.dim() == 4
    y = _conv_call(_conv_ops.CONV2D, input if batched else input.unsqueeze(0), weight, bias, geometry)
    return y if batched else y.squeeze(0)


def conv_relu_pool2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002
                     stride: Union[int, Sequence[int]] = 1, padding: Union[str, int, Sequence[int]] = 0,
                     dilation: Union[int, Sequence[int]] = 1, groups: int = 1) -> Tensor:
    """max_pool2d(relu(conv2d(input, weight, bias, ...)), 2, 2) in one fused pass: the conv
    output is pooled block by block while in cache and never stored whole."""
    geometry = untraced(_conv_geometry, input, weight, bias, stride, padding, dilation, groups)
    if geometry is None or min(geometry[3]) < 2:
        # torch's ops for what fastrnn's kernels do not take (and max_pool2d's error for a conv
        # output too small to pool)
        return _torch_F.max_pool2d(_torch_F.relu(_fallback_conv2d(input, weight, bias, stride, padding, dilation,
                                                                  groups)), 2, 2)
    batched = input.dim() == 4
    y, _ = _conv_call(_conv_ops.CONV_RELU_POOL2D, input if batched else input.unsqueeze(0), weight, bias, geometry)
    return y if batched else y.squeeze(0)


# ---- Pooling: torch.nn.functional's max_pool2d and avg_pool2d, checked in torch's order and words
# Input (N, C, H, W) or (C, H, W); channels_last or other strided input is made NCHW-contiguous
# first, and the output is NCHW-contiguous. CPU: float32, float64; CUDA: float16, bfloat16,
# float32, float64 (ops.pool).

# torch's names of scalar types, for its "not implemented for 'Int'" message.
_TYPE_NAMES = {torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
               torch.int8: "Char", torch.uint8: "Byte", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
               torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble"}


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (towards zero), as torch's checks compute it."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _pool_pair(items: List[int], what: str) -> List[int]:
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
        out.append(_pool_ops.output_size(sizes[-2 + d], k, p, s, dil, ceil_mode))
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
    if x.dtype not in supported_dtypes(x):
        raise NotImplementedError(f'"{name}" not implemented for \'{_TYPE_NAMES.get(x.dtype, str(x.dtype))}\'')


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
    kernel = _pool_pair(lists[0], "max_pool2d: kernel_size must either be a single int, or a tuple of two ints")
    strides = kernel if not lists[1] else _pool_pair(
        lists[1], "max_pool2d: stride must either be omitted, a single int, or a tuple of two ints")
    pads = _pool_pair(lists[2], "max_pool2d: padding must either be a single int, or a tuple of two ints")
    dilations = _pool_pair(lists[3], "max_pool2d: dilation must be either a single int, or a tuple of two ints")
    if input.ndim not in (3, 4):
        raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    untraced(_check_shape, input, kernel, strides, pads, dilations, ceil_mode)
    _check_dtype("max_pool2d", input)
    # A traced graph may be run for training: it keeps the indices a backward needs.
    training = (torch.is_grad_enabled() and input.requires_grad) or torch.jit.is_tracing()
    x = input.contiguous()
    # Indices kept only for the backward are window slots where they fit in a byte (CPU kernels).
    window_slots = (training and not return_indices and x.device.type == "cpu"
                    and kernel[0] * kernel[1] <= _pool_ops.MAX_WINDOW_SLOTS)
    args = (kernel, strides, pads, dilations, ceil_mode, bool(return_indices or training), window_slots)
    y, indices = _pool_ops.MAX_POOL2D[choose(x, training)](x, *args)
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
    kernel = _pool_pair(lists[0], "avg_pool2d: kernel_size must either be a single int, or a tuple of two ints")
    strides = kernel if not lists[1] else _pool_pair(
        lists[1], "avg_pool2d: stride must either be omitted, a single int, or a tuple of two ints")
    pads = _pool_pair(lists[2], "avg_pool2d: padding must either be a single int, or a tuple of two ints")
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
    return _pool_ops.AVG_POOL2D[choose(x, torch.is_grad_enabled() and x.requires_grad)](x, *args)
