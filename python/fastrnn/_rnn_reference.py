"""The math of fastrnn's RNN kernels in plain torch operations, step by step.

The kernels' backward is first-order only; a second derivative (gradgradcheck, a backward after
``torch.autograd.grad(..., create_graph=True)``, ``torch.func.grad`` of ``torch.func.grad``)
differentiates this instead (see ``fastrnn.ops._Gradients``). Same conventions as the ops: x is
(T, B, I), or (rows, I) packed with batch_sizes (T); each direction has h0 (B, P), c0 (B, H) for
an LSTM, the weights in torch.nn's layout, weight_hr (P, H) or None, and an optional constant
recurrent_mask (B, P) that multiplies h_prev where it enters weight_hh.
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import CELLS

_TANH, _RELU, _LSTM, _GRU = (CELLS[name] for name in ("rnn_tanh", "rnn_relu", "lstm", "gru"))


def _step(cell: int, x: Tensor, h: Tensor, c: Optional[Tensor], d, rows: int):
    """One step of `rows` sequences: (h, c), c None unless LSTM."""
    mask = d.recurrent_mask
    h_in = h if mask is None else h * mask[:rows]
    gates_ih = F.linear(x, d.weight_ih, d.bias_ih)
    gates_hh = F.linear(h_in, d.weight_hh, d.bias_hh)
    if cell == _GRU:
        i_r, i_z, i_n = gates_ih.chunk(3, 1)
        h_r, h_z, h_n = gates_hh.chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h, None  # the blend reads h_prev unmasked
    gates = gates_ih + gates_hh
    if cell == _LSTM:
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h if d.weight_hr is None else F.linear(h, d.weight_hr)), c
    return (torch.tanh(gates) if cell == _TANH else torch.relu(gates)), None


def direction(x: Tensor, batch_sizes: Optional[Tensor], cell: int, d):
    """One direction of a layer: (y, h_n, c_n), c_n None unless LSTM. A packed batch shrinks
    as sequences end (forward in time) or grows as they start (reverse)."""
    lstm = cell == _LSTM
    if batch_sizes is None:
        T, B = x.shape[0], x.shape[1]
        sizes, steps = [B] * T, list(x.unbind(0))
    else:
        sizes = [int(n) for n in batch_sizes.tolist()]
        steps = list(x.split(sizes, 0))
    T = len(sizes)
    order = range(T - 1, -1, -1) if d.reverse else range(T)
    first = sizes[order[0]]
    h, c = d.h0[:first], (d.c0[:first] if lstm else None)
    ended_h, ended_c = [], []  # the final states of sequences shorter than the batch, latest first
    ys: List[Optional[Tensor]] = [None] * T
    for t in order:
        rows = sizes[t]
        if h.shape[0] > rows:
            ended_h.insert(0, h[rows:])
            h = h[:rows]
            if lstm:
                ended_c.insert(0, c[rows:])
                c = c[:rows]
        elif h.shape[0] < rows:
            h = torch.cat([h, d.h0[h.shape[0]:rows]])
            if lstm:
                c = torch.cat([c, d.c0[c.shape[0]:rows]])
        h, c = _step(cell, steps[t], h, c, d, rows)
        ys[t] = h
    y = torch.stack(ys) if batch_sizes is None else torch.cat(ys)
    h_n = torch.cat([h, *ended_h]) if ended_h else h
    c_n = (torch.cat([c, *ended_c]) if ended_c else c) if lstm else None
    return y, h_n, c_n


def layer(x: Tensor, batch_sizes: Optional[Tensor], cell: int, directions: list):
    """One layer, one direction or both: (y, [(h_n, c_n) per direction]), y holding the
    directions' outputs side by side in each row as torch.nn lays them out."""
    results = [direction(x, batch_sizes, cell, d) for d in directions]
    y = results[0][0] if len(results) == 1 else torch.cat([r[0] for r in results], -1)
    return y, [(h_n, c_n) for _, h_n, c_n in results]
