"""fastrnn's kernels as torch functions: one layer, one direction, whole sequence.

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

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _checks, ops

__all__ = ["lstm", "gru", "rnn", "conv2d", "conv_relu_pool2d"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
# CUDA also runs float16 and bfloat16 (float32 arithmetic and cell state inside).
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supported_dtypes(x: Tensor):
    """The dtypes fastrnn's kernels take for tensors on x's device."""
    return _CUDA_DTYPES if x.device.type == "cuda" else _SUPPORTED_DTYPES


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def run_layer(cell: str, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor] = None,
              batch_sizes: Optional[Tensor] = None, reverse: bool = False, recurrent_mask: Optional[Tensor] = None):
    """One layer and direction on already validated arguments: (y, h_n, c_n); c_n is empty
    unless LSTM. x is (T, B, I), or (rows, I) packed with batch_sizes. The building block of
    fastrnn.nn; not part of the public API."""
    tensors = (x, h0, c0 if cell == "lstm" else None, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    # Save what backward needs only when autograd will ask for it.
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    args = (*map(_contiguous, tensors), batch_sizes, _checks.CELLS[cell], bool(reverse), training)
    if ops.eager(x):
        if training:
            y, h_n, c_n, _ = ops.rnn_forward_eager(*args, _contiguous(recurrent_mask))
            return y, h_n, c_n
        # Without autograd, tracing or transforms the op's body can be called directly, saving the dispatch.
        return ops.rnn_inference(*args[:-1], _contiguous(recurrent_mask))
    if not training and ops.tracing(tensors):
        args = args[:-1] + (True,)
    elif training and ops.transformed():
        y, h_n, c_n, _ = ops.rnn_forward_transformed(*args, _contiguous(recurrent_mask))
        return y, h_n, c_n
    # The mask goes along only when there is one: the op's plain call is unchanged without it.
    masks = () if recurrent_mask is None else (recurrent_mask.contiguous(),)
    y, h_n, c_n, _ = ops.rnn_forward(*args, *masks)
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

    tensors = prepared(forward) + prepared(reverse)
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x,) + tensors)
    args = (*map(_contiguous, (x,) + tensors), batch_sizes, _checks.CELLS[cell], training)
    if ops.eager(x):
        if training:
            y, h_n, c_n, _, h_n_r, c_n_r, _ = ops.rnn_bidirectional_forward_eager(
                *args, *map(_contiguous, recurrent_masks))
            return y, (h_n, c_n), (h_n_r, c_n_r)
        # Without autograd, tracing or transforms the op's body can be called directly, saving the dispatch.
        return ops.rnn_bidirectional_inference(*args[:-1], *map(_contiguous, recurrent_masks))
    if not training and ops.tracing((x,) + tensors):
        args = args[:-1] + (True,)
    elif training and ops.transformed():
        y, h_n, c_n, _, h_n_r, c_n_r, _ = ops.rnn_bidirectional_forward_transformed(
            *args, *map(_contiguous, recurrent_masks))
        return y, (h_n, c_n), (h_n_r, c_n_r)
    y, h_n, c_n, _, h_n_r, c_n_r, _ = ops.rnn_bidirectional_forward(
        *args, *(() if all(m is None for m in recurrent_masks) else map(_contiguous, recurrent_masks)))
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
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{like.device} and {mask.device}! ({op}: recurrent_mask)")
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


# 2-d pooling (torch.nn.functional's signatures): python/fastrnn/_pool.py.
from ._pool import avg_pool2d, max_pool2d  # noqa: E402

__all__ += ["max_pool2d", "avg_pool2d"]

# Convolutions (torch.nn.functional.conv2d's signature); see fastrnn._conv.
from ._conv import conv2d, conv_relu_pool2d  # noqa: E402
