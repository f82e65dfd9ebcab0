"""fastrnn's kernels as torch functions: one layer, one direction, whole sequence.

Shapes: x (T, B, I); h0, c0 (B, H) or None (zeros); y (T, B, H). Weights in PyTorch's layout
(weight_ih (G*H, I), weight_hh (G*H, H), biases (G*H)), so the parameters of a torch.nn.LSTM,
GRU or RNN layer can be passed as they are. Differentiable with autograd; each call is one
``torch.ops.fastrnn`` custom op, so ``torch.compile(fullgraph=True)`` keeps it in the graph.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _checks, ops

__all__ = ["lstm", "gru", "rnn", "conv2d", "conv_relu_pool2d"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def run_layer(cell: str, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor] = None,
              batch_sizes: Optional[Tensor] = None, reverse: bool = False):
    """One layer and direction on already validated arguments: (y, h_n, c_n); c_n is empty
    unless LSTM. x is (T, B, I), or (rows, I) packed with batch_sizes. The building block of
    fastrnn.nn; not part of the public API."""
    tensors = (x, h0, c0 if cell == "lstm" else None, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    # Save what backward needs only when autograd will ask for it.
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    # Without autograd or tracing the op's body can be called directly, saving the dispatch.
    forward = ops.rnn_forward if training or torch.compiler.is_compiling() else ops.rnn_forward_impl
    y, h_n, c_n, _ = forward(*map(_contiguous, tensors), batch_sizes, _checks.CELLS[cell], bool(reverse), training)
    return y, h_n, c_n


def run_bidirectional_layer(cell: str, x: Tensor, forward: tuple, reverse: tuple,
                            batch_sizes: Optional[Tensor] = None):
    """Both directions of one layer on validated arguments, side by side in one kernel call.
    `forward` and `reverse` are each (h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr).
    Returns (y, (h_n, c_n), (h_n_reverse, c_n_reverse)), y holding both directions per row as
    torch.nn does. The building block of fastrnn.nn; not part of the public API."""
    lstm = cell == "lstm"

    def prepared(direction):
        h0, c0, *weights = direction
        return (h0, c0 if lstm else None, *weights)

    tensors = prepared(forward) + prepared(reverse)
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x,) + tensors)
    op = (ops.rnn_bidirectional_forward if training or torch.compiler.is_compiling()
          else ops.rnn_bidirectional_forward_impl)
    y, h_n, c_n, _, h_n_r, c_n_r, _ = op(*map(_contiguous, (x,) + tensors), batch_sizes, _checks.CELLS[cell],
                                         training)
    return y, (h_n, c_n), (h_n_r, c_n_r)


def _layer(op, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse):
    lstm = cell == "lstm"
    T, B, _, H = _checks.check_rnn_arguments(op, cell, x, h0, c0 if lstm else None, weight_ih, weight_hh, bias_ih,
                                             bias_hh, _SUPPORTED_DTYPES)
    if h0 is None:
        h0 = x.new_zeros(B, H)
    if lstm and c0 is None:
        c0 = x.new_zeros(B, H)
    y, h_n, c_n = run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse=reverse)
    return (y, h_n, c_n) if lstm else (y, h_n)


def lstm(x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
         bias_ih: Optional[Tensor] = None, bias_hh: Optional[Tensor] = None, *,
         reverse: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """LSTM layer (gates i, f, g, o): returns (y, h_n, c_n).

    ``reverse=True`` runs from the last step to the first (the backward direction of a
    bidirectional layer); y stays at the original time positions.
    """
    return _layer("lstm", "lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse)


def gru(x: Tensor, h0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor] = None,
        bias_hh: Optional[Tensor] = None, *, reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """GRU layer (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))): returns (y, h_n)."""
    return _layer("gru", "gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse)


def rnn(x: Tensor, h0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor] = None,
        bias_hh: Optional[Tensor] = None, *, nonlinearity: str = "tanh", reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """Elman RNN layer, h = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu: returns (y, h_n)."""
    cell = _checks.elman_cell(nonlinearity)
    return _layer("rnn", cell, x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse)


# Convolutions (torch.nn.functional.conv2d's signature); see fastrnn._conv.
from ._conv import conv2d, conv_relu_pool2d  # noqa: E402
