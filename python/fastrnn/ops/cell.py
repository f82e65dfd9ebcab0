"""One step of an RNN cell on the CPU (fastrnn.nn's RNNCell, LSTMCell, GRUCell): the kernels'
one-step entries, called directly for inference and inside a lean autograd.Function for eager
training. Every other cell call (CUDA, tracing, transforms, torch.compile) runs as a one-step
layer through ops.rnn's custom op.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C
from . import _runtime
from ._runtime import view, workspaces_for
from .rnn import LSTM, Gradients, Layer, reserve_width, sizes_of

__all__ = ["cell_inference", "cell_training"]


def _one_step_sizes(cell: int, x: Tensor, hidden_size: int):
    """The buffer sizes (ops.rnn.sizes_of) of one step of a cell, x (B, I) on the CPU."""
    B = x.shape[0]
    return sizes_of(cell, x.dtype, B, B, x.shape[1], hidden_size, 0, "cpu", _C.max_threads())


def _cell_forward(cell: int, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                  bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], training: bool):
    """One step of a cell on the CPU: (h, c, reserve); c None unless LSTM, reserve None unless
    training and the cell saves gates (Elman's backward reads h instead)."""
    B, H = h0.shape
    h = _runtime.empty((B, H), x)
    c = _runtime.empty((B, H), x) if cell == LSTM else None
    width = reserve_width(cell, H, False, training)
    reserve = _runtime.empty((B, width), x) if width else None
    workspace = workspaces_for([_one_step_sizes(cell, x, H)[1]], x)[0]
    _C.rnn_cell_forward(cell, to_dlpack(x), to_dlpack(h0), view(c0), to_dlpack(weight_ih), to_dlpack(weight_hh),
                        view(bias_ih), view(bias_hh), to_dlpack(h), view(c), to_dlpack(workspace), view(reserve))
    return h, c, reserve


def cell_inference(cell: int, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                   bias_ih: Optional[Tensor], bias_hh: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """One step of a cell, x (B, I), on contiguous CPU tensors, without autograd or tracing (as
    rnn_inference): (h, c), c None unless LSTM. The kernel checks the shapes and dtypes."""
    h, c, _ = _cell_forward(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, False)
    return h, c


class _CellStep(torch.autograd.Function):
    """A cell's training step on the CPU in eager mode: the kernel's one-step entries both ways.
    Leaner than a layer's op for a call this small: h is the step's only output (no y beside it,
    no placeholders), and nothing is zero-filled for an output gradient autograd did not send."""

    @staticmethod
    def forward(ctx, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        h, c, reserve = _cell_forward(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, True)
        # Only an Elman cell's backward reads h (act' from it), and only it is saved: changing h in
        # place before backward then raises for the RNNCell and not for the others, as in torch.
        ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, h if reserve is None else None, reserve)
        ctx.cell = cell
        ctx.biases = (bias_ih, bias_hh)  # unsaved, as a layer's (ops.rnn)
        ctx.set_materialize_grads(False)
        return (h, c) if cell == LSTM else h

    @staticmethod
    def backward(ctx, dh, dc=None):
        x, h0, c0, weight_ih, weight_hh, h, reserve = ctx.saved_tensors
        h = h0 if h is None else h  # a GRU's or LSTM's kernel takes h's shape from it but reads nothing
        if dh is None:  # only c reached the loss
            dh = torch.zeros_like(h0)
        lstm = ctx.cell == LSTM
        bias_ih, bias_hh = ctx.biases
        if torch.is_grad_enabled():
            # create_graph: the layers' backward kernels as a differentiable function (Gradients).
            dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, _ = Gradients.apply(
                Layer(ctx.cell, (False,), bias_ih is not None, bias_hh is not None), x.unsqueeze(0), None,
                h.unsqueeze(0), dh.contiguous().unsqueeze(0), h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, None,
                None, x.new_empty(0) if reserve is None else reserve, torch.zeros_like(h0),
                (torch.zeros_like(c0) if dc is None else dc.contiguous()) if lstm else None)
            return (None, dx[0], dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if bias_ih is not None else None,
                    db_hh if bias_hh is not None else None)
        H = h0.shape[1]
        dx, dh0 = _runtime.empty(x.shape, x), _runtime.empty(h0.shape, h0)
        dc0 = _runtime.empty(c0.shape, c0) if lstm else None
        dw_ih, dw_hh = _runtime.empty(weight_ih.shape, weight_ih), _runtime.empty(weight_hh.shape, weight_hh)
        db_ih, db_hh = (None if b is None else _runtime.empty(weight_ih.shape[0], x) for b in ctx.biases)
        workspace = workspaces_for([_one_step_sizes(ctx.cell, x, H)[2]], x)[0]
        _C.rnn_cell_backward(ctx.cell, to_dlpack(x), to_dlpack(h0), view(c0), to_dlpack(weight_ih),
                             to_dlpack(weight_hh), to_dlpack(h), view(reserve), to_dlpack(dh.contiguous()),
                             view(None if dc is None else dc.contiguous()), to_dlpack(dx), to_dlpack(dh0),
                             view(dc0), to_dlpack(dw_ih), to_dlpack(dw_hh), view(db_ih), view(db_hh),
                             to_dlpack(workspace))
        return None, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def cell_training(cell: int, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                  bias_ih: Optional[Tensor], bias_hh: Optional[Tensor]):
    """One differentiable step of a cell, x (B, I), on contiguous CPU tensors in eager mode
    (choose's FUNCTION): h, or (h, c) for an LSTM."""
    return _CellStep.apply(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
