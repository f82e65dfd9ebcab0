"""The kernels as torch custom ops (``torch.ops.fastrnn.*``), with fake (meta) kernels and
autograd, so ``torch.compile``, ``torch.library.opcheck`` and ``gradcheck`` see real ops.

These are the low-level entry points; ``fastrnn.functional`` validates arguments and is the
API to call. Tensors reach the compiled kernels zero-copy through DLPack; outputs and
workspaces are allocated here, with torch's allocator.
"""

import threading
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from . import _C
from ._checks import CELLS, GATES, RESERVE_BLOCKS

__all__ = ["rnn_forward", "rnn_backward", "empty_cache"]

_CELL_NAMES = {code: name for name, code in CELLS.items()}
_LSTM = CELLS["lstm"]


_HUGE_PAGE_BYTES = 4 << 20


def _empty(shape, like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Every buffer the ops hand to a kernel comes from here (the tests fill them with NaN)."""
    t = torch.empty(shape, dtype=dtype or like.dtype, device=like.device)
    if t.device.type == "cpu" and t.numel() * t.element_size() >= _HUGE_PAGE_BYTES:
        _C.advise_huge_pages(to_dlpack(t))  # as NumPy does for its large arrays
    return t


class _WorkspaceCache(threading.local):
    """Scratch memory reused across kernel calls on the CPU, one buffer per thread.

    torch has no caching allocator for the CPU: every fresh buffer is page-faulted in on first
    touch, which for a backward pass's tens of megabytes of scratch costs as much as a fair
    part of the arithmetic. Workspaces never outlive a call, so the largest one requested on
    this thread is kept and handed out again. GPU workspaces come from torch's own caching
    allocator.
    """

    def __init__(self):
        self.buffer: Optional[Tensor] = None


_workspaces = _WorkspaceCache()


def _workspace(nbytes: int, like: Tensor) -> Tensor:
    if like.device.type != "cpu":
        return _empty(nbytes, like, torch.uint8)
    buffer = _workspaces.buffer
    if buffer is None or buffer.numel() < nbytes:
        _workspaces.buffer = None  # let the old one go before taking a larger one
        buffer = _workspaces.buffer = _empty(nbytes, like, torch.uint8)
    return buffer[:nbytes]


def empty_cache() -> None:
    """Releases the CPU scratch memory this thread's kernel calls keep for reuse."""
    _workspaces.buffer = None


def _view(t: Optional[Tensor]):
    return None if t is None else to_dlpack(t)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _rows(x: Tensor, batch_sizes: Optional[Tensor]) -> int:
    # Unpacked input is (T, B, I); packed input is (sum(batch_sizes), I).
    return x.shape[0] * x.shape[1] if batch_sizes is None else x.shape[0]


def _hidden_size(weight_hh: Tensor, cell: int) -> int:
    return weight_hh.shape[0] // GATES[_CELL_NAMES[cell]]


def _reserve_width(cell: int, hidden_size: int, projected: bool, training: bool) -> int:
    blocks = RESERVE_BLOCKS[_CELL_NAMES[cell]] + (1 if projected else 0)
    return blocks * hidden_size if training else 0


def _buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes):
    """(reserve elements, forward workspace bytes, backward workspace bytes)."""
    B, P = h0.shape
    return _C.rnn_buffer_sizes(cell, _dtype_name(x.dtype), _rows(x, batch_sizes), B, x.shape[-1],
                               _hidden_size(weight_hh, cell), 0 if weight_hr is None else P)


def rnn_forward_impl(x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                     bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor],
                     batch_sizes: Optional[Tensor], cell: int, reverse: bool,
                     training: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One layer, one direction: returns (y, h_n, c_n, reserve).

    cell: 0 rnn_tanh, 1 rnn_relu, 2 lstm, 3 gru. x is (T, B, I), or (rows, I) packed with
    batch_sizes (T); h0 (B, P); weight_hr (P, H) projects an LSTM's output (P = H without it).
    c_n is empty unless LSTM; reserve (what the backward needs) is empty unless training.
    Inputs must be contiguous.

    The body of the custom op rnn_forward. Called directly, it skips torch's dispatcher (tens
    of microseconds per call), which is safe only where no autograd graph or tracing is needed.
    """
    H = _hidden_size(weight_hh, cell)
    _, workspace_bytes, _ = _buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes)
    y = _empty(x.shape[:-1] + (h0.shape[1],), x)
    h_n = _empty(h0.shape, h0)
    lstm = cell == _LSTM
    c_n = _empty((h0.shape[0], H), h0) if lstm else x.new_empty(0)
    width = _reserve_width(cell, H, weight_hr is not None, training)
    reserve = _empty((_rows(x, batch_sizes), width), x) if width else x.new_empty(0)
    workspace = _workspace(workspace_bytes, x)
    _C.rnn_forward(cell, reverse, training, _view(x), _view(h0), _view(c0 if lstm else None), _view(weight_ih),
                   _view(weight_hh), _view(bias_ih), _view(bias_hh), _view(weight_hr), _view(batch_sizes), _view(y),
                   _view(h_n), _view(c_n if lstm else None), _view(reserve if width else None), _view(workspace))
    return y, h_n, c_n, reserve


rnn_forward = torch.library.custom_op("fastrnn::rnn_forward", mutates_args=())(rnn_forward_impl)
rnn_forward.__doc__ = rnn_forward_impl.__doc__


@rnn_forward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, cell, reverse, training):
    H = _hidden_size(weight_hh, cell)
    y = x.new_empty(x.shape[:-1] + (h0.shape[1],))
    c_n = h0.new_empty(h0.shape[0], H) if cell == _LSTM else x.new_empty(0)
    width = _reserve_width(cell, H, weight_hr is not None, training)
    reserve = x.new_empty(_rows(x, batch_sizes), width) if width else x.new_empty(0)
    return y, torch.empty_like(h0), c_n, reserve


@torch.library.custom_op("fastrnn::rnn_backward", mutates_args=())
def rnn_backward(x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                 weight_hr: Optional[Tensor], batch_sizes: Optional[Tensor], y: Tensor, reserve: Tensor, dy: Tensor,
                 dh_n: Tensor, dc_n: Optional[Tensor], cell: int, reverse: bool, has_bias_ih: bool,
                 has_bias_hh: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of rnn_forward: returns (dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh,
    dweight_hr); dc0 is empty unless LSTM, a bias gradient is empty when the forward had no such
    bias, dweight_hr is empty without a projection."""
    _, _, workspace_bytes = _buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes)
    lstm = cell == _LSTM
    dx = _empty(x.shape, x)
    dh0 = _empty(h0.shape, h0)
    dc0 = _empty(c0.shape, c0) if lstm else x.new_empty(0)
    dweight_ih = _empty(weight_ih.shape, weight_ih)
    dweight_hh = _empty(weight_hh.shape, weight_hh)
    dbias_ih = _empty(weight_ih.shape[0], x) if has_bias_ih else x.new_empty(0)
    dbias_hh = _empty(weight_ih.shape[0], x) if has_bias_hh else x.new_empty(0)
    dweight_hr = _empty(weight_hr.shape, weight_hr) if weight_hr is not None else x.new_empty(0)
    workspace = _workspace(workspace_bytes, x)
    _C.rnn_backward(cell, reverse, _view(x), _view(h0), _view(c0 if lstm else None), _view(weight_ih),
                    _view(weight_hh), _view(weight_hr), _view(batch_sizes), _view(y),
                    _view(reserve if reserve.numel() else None), _view(dy), _view(dh_n),
                    _view(dc_n if lstm else None), _view(dx), _view(dh0), _view(dc0 if lstm else None),
                    _view(dweight_ih), _view(dweight_hh), _view(dbias_ih if has_bias_ih else None),
                    _view(dbias_hh if has_bias_hh else None), _view(dweight_hr if weight_hr is not None else None), _view(workspace))
    return dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, dweight_hr


@rnn_backward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, cell, reverse,
      has_bias_ih, has_bias_hh):
    G = weight_ih.shape[0]
    dc0 = torch.empty_like(c0) if cell == _LSTM else x.new_empty(0)
    dweight_hr = torch.empty_like(weight_hr) if weight_hr is not None else x.new_empty(0)
    return (torch.empty_like(x), torch.empty_like(h0), dc0, torch.empty_like(weight_ih),
            torch.empty_like(weight_hh), x.new_empty(G if has_bias_ih else 0), x.new_empty(G if has_bias_hh else 0),
            dweight_hr)


def _setup_context(ctx, inputs, output):
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, cell, reverse, training = inputs
    y, _, _, reserve = output
    ctx.cell, ctx.reverse, ctx.training = cell, reverse, training
    ctx.has_bias_ih, ctx.has_bias_hh = bias_ih is not None, bias_hh is not None
    ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve)


def _backward(ctx, dy, dh_n, dc_n, _dreserve):
    if not ctx.training:
        raise RuntimeError("fastrnn: this RNN forward ran with training=False and saved nothing for backward; "
                           "call it with training=True (fastrnn.functional does so when a gradient is needed)")
    x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve = ctx.saved_tensors
    lstm = ctx.cell == _LSTM
    dy = torch.zeros_like(y) if dy is None else dy.contiguous()
    dh_n = torch.zeros_like(h0) if dh_n is None else dh_n.contiguous()
    dc_n = (torch.zeros_like(c0) if dc_n is None else dc_n.contiguous()) if lstm else None
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = rnn_backward(
        x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, ctx.cell, ctx.reverse,
        ctx.has_bias_ih, ctx.has_bias_hh)
    return (dx, dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if ctx.has_bias_ih else None,
            db_hh if ctx.has_bias_hh else None, dw_hr if weight_hr is not None else None, None, None, None, None)


rnn_forward.register_autograd(_backward, setup_context=_setup_context)
