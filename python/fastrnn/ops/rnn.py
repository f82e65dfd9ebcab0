"""The kernels as torch custom ops (``torch.ops.fastrnn.*``), with fake (meta) kernels and
autograd, so ``torch.compile``, ``torch.library.opcheck`` and ``gradcheck`` see real ops.

* ``rnn_forward`` / ``rnn_backward``: one layer, one direction.
* ``rnn_bidirectional_forward`` / ``rnn_bidirectional_backward``: both directions of a layer at
  once, run side by side by the kernels; the output holds them as the halves of each row
  (torch.nn's layout) and the input gradient is their sum.

Each forward op takes an optional ``recurrent_mask`` (B, P) per direction: variational dropout
on the recurrence, ``gates = W_ih x + W_hh (mask * h_prev) + b`` at every step (h0 included),
the mask already scaled (0 or 1/(1-p)). It is a constant: no gradient flows to it.

Their backward is the kernels' (first order); where a backward is itself differentiated
(create_graph, torch.func.grad of grad) its derivative comes from ``fastrnn._rnn_reference``, the
same math in torch operations (Gradients). Each op has a vmap rule (a loop over the mapped
dimension), and under functorch transforms the layers' autograd runs in transform_function's.

These are the low-level entry points; ``fastrnn.functional`` and ``fastrnn.nn`` validate
arguments and are the API to call. Tensors reach the compiled kernels zero-copy through
DLPack; outputs and workspaces come from ``ops._runtime``, with torch's allocator.
"""

import functools
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from .. import _C, _rnn_reference
from .._checks import CELLS, GATES, RESERVE_BLOCKS
from . import _runtime
from ._runtime import DIRECT, choose, reserve_buffer, stream, transform_function, view, workspaces_for

__all__ = ["rnn_forward", "rnn_backward", "rnn_bidirectional_forward", "rnn_bidirectional_backward"]

_CELL_NAMES = {code: name for name, code in CELLS.items()}
LSTM = CELLS["lstm"]


def _rows(x: Tensor, batch_sizes: Optional[Tensor]) -> int:
    # Unpacked input is (T, B, I); packed input is (sum(batch_sizes), I).
    return x.shape[0] * x.shape[1] if batch_sizes is None else x.shape[0]


def _hidden_size(weight_hh: Tensor, cell: int) -> int:
    return weight_hh.shape[0] // GATES[_CELL_NAMES[cell]]


def reserve_width(cell: int, hidden_size: int, projected: bool, training: bool) -> int:
    blocks = RESERVE_BLOCKS[_CELL_NAMES[cell]] + (1 if projected else 0)
    return blocks * hidden_size if training else 0


def _buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes):
    """(reserve elements, forward workspace bytes, backward workspace bytes) of one call."""
    B, P = h0.shape
    # The CPU workspace holds per-thread slices, so its size depends on the OpenMP thread count,
    # which torch.set_num_threads may change between calls.
    on_cpu = x.is_cpu
    return sizes_of(cell, x.dtype, _rows(x, batch_sizes), B, x.shape[-1], _hidden_size(weight_hh, cell),
                     0 if weight_hr is None else P, "cpu" if on_cpu else x.device.type,
                     _C.max_threads() if on_cpu else 0)


@functools.lru_cache(maxsize=256)
def sizes_of(cell, dtype, rows, B, I, H, P, device, threads):
    # Pure in its arguments (threads: the count the C side will read), and asked again on every
    # call of a training or inference loop.
    return _C.rnn_buffer_sizes(cell, _runtime.dtype_name(dtype), rows, B, I, H, P, device)


def _reserve_dtype(x: Tensor) -> torch.dtype:
    # float16/bfloat16 (CUDA) keep the saved gates and cell states in float32.
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _launch(x: Tensor) -> dict:
    """What a CUDA call needs besides its tensors: the caller's current stream on x's device, and
    whether float32 products may use TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)."""
    if not x.is_cuda:
        return {}
    return {"stream": stream(x), "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


class _Direction:
    """One direction of a layer: whether it runs backwards in time, and its tensors."""

    def __init__(self, reverse, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, weight_hr=None,
                 recurrent_mask=None):
        self.reverse = reverse
        self.h0, self.c0, self.weight_ih, self.weight_hh = h0, c0, weight_ih, weight_hh
        self.bias_ih, self.bias_hh, self.weight_hr = bias_ih, bias_hh, weight_hr
        self.recurrent_mask = recurrent_mask


def _per_direction(t: Tensor, P: int, count: int) -> List[Tensor]:
    """Each direction's P columns of an output row (t itself for one direction: a slice costs
    a few microseconds a call)."""
    return [t] if count == 1 else [t[..., k * P:(k + 1) * P] for k in range(count)]


def _check_masks_on_cpu(directions: List[_Direction]) -> None:
    for d in directions:
        if d.recurrent_mask is not None and d.recurrent_mask.device.type != "cpu":
            raise NotImplementedError("fastrnn: recurrent dropout (recurrent_mask) is implemented only in the CPU "
                                      f"kernels so far; got a mask on {d.recurrent_mask.device}")


def _forward(x: Tensor, batch_sizes: Optional[Tensor], cell: int, training: bool, directions: List[_Direction],
             placeholders: bool = True):
    """Runs one direction, or two side by side, in one kernel call. Returns y, whose rows hold
    the directions' outputs one after the other, and per direction (h_n, c_n, reserve).

    c_n (unless LSTM) and the reserve (unless training) are empty tensors, as the ops' schemas
    want; a caller that is not an op (an inference call) passes placeholders=False and gets None
    for them, which spares two allocations a direction (a batch-1 call notices).
    """
    _check_masks_on_cpu(directions)
    lstm = cell == LSTM
    first = directions[0]
    B, P = first.h0.shape
    H = _hidden_size(first.weight_hh, cell)
    count = len(directions)
    y = _runtime.empty(x.shape[:-1] + (count * P,), x)
    y_halves = _per_direction(y, P, count)
    # The directions of one layer have the same sizes (the kernels check that each workspace fits).
    workspace_bytes = _buffer_sizes(cell, x, first.h0, first.weight_hh, first.weight_hr, batch_sizes)[1]
    workspaces = workspaces_for([workspace_bytes] * count, x)
    width = reserve_width(cell, H, first.weight_hr is not None, training)
    rows = _rows(x, batch_sizes) if width else 0
    launch = _launch(x)
    x_view, batch_sizes_view = to_dlpack(x), view(batch_sizes)
    calls, results = [], []
    for d, y_half, workspace in zip(directions, y_halves, workspaces):
        h_n = _runtime.empty((B, P), x)
        c_n = _runtime.empty((B, H), x) if lstm else x.new_empty(0) if placeholders else None
        reserve = (reserve_buffer((rows, width), x, _reserve_dtype(x)) if width
                   else x.new_empty(0) if placeholders else None)
        calls.append({**launch,
            "reverse": d.reverse, "x": x_view, "h0": to_dlpack(d.h0), "c0": view(d.c0) if lstm else None,
            "weight_ih": to_dlpack(d.weight_ih), "weight_hh": to_dlpack(d.weight_hh), "bias_ih": view(d.bias_ih),
            "bias_hh": view(d.bias_hh), "weight_hr": view(d.weight_hr), "batch_sizes": batch_sizes_view,
            "recurrent_mask": view(d.recurrent_mask), "y": to_dlpack(y_half), "h_n": to_dlpack(h_n),
            "c_n": to_dlpack(c_n) if lstm else None, "reserve": to_dlpack(reserve) if width else None,
            "workspace": to_dlpack(workspace)})
        results.append((h_n, c_n, reserve))
    _C.rnn_forward(cell, training, calls)
    return y, results


def _backward(x: Tensor, batch_sizes: Optional[Tensor], y: Tensor, dy: Tensor, cell: int, has_bias_ih: bool,
              has_bias_hh: bool, directions: List[_Direction], reserves: List[Tensor], dh_ns: List[Tensor],
              dc_ns: List[Optional[Tensor]]):
    """BPTT of _forward, both directions side by side: returns dx (summed over the directions)
    and per direction (dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, dweight_hr)."""
    lstm = cell == LSTM
    P = directions[0].h0.shape[1]
    dx = _runtime.empty(x.shape, x)
    y_halves, dy_halves = _per_direction(y, P, len(directions)), _per_direction(dy, P, len(directions))
    sizes = [_buffer_sizes(cell, x, d.h0, d.weight_hh, d.weight_hr, batch_sizes)[2] for d in directions]
    workspaces = workspaces_for(sizes, x)
    calls, results = [], []
    for k, d in enumerate(directions):
        grads = (_runtime.empty(d.h0.shape, d.h0),
                 _runtime.empty(d.c0.shape, d.c0) if lstm else x.new_empty(0),
                 _runtime.empty(d.weight_ih.shape, d.weight_ih),
                 _runtime.empty(d.weight_hh.shape, d.weight_hh),
                 _runtime.empty(d.weight_ih.shape[0], x) if has_bias_ih else x.new_empty(0),
                 _runtime.empty(d.weight_ih.shape[0], x) if has_bias_hh else x.new_empty(0),
                 _runtime.empty(d.weight_hr.shape, d.weight_hr) if d.weight_hr is not None else x.new_empty(0))
        dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = grads
        calls.append({**_launch(x),
            "reverse": d.reverse, "x": view(x), "h0": view(d.h0), "c0": view(d.c0 if lstm else None),
            "weight_ih": view(d.weight_ih), "weight_hh": view(d.weight_hh), "weight_hr": view(d.weight_hr),
            "batch_sizes": view(batch_sizes), "recurrent_mask": view(d.recurrent_mask),
            "y": view(y_halves[k]),
            "reserve": view(reserves[k] if reserves[k].numel() else None), "dy": view(dy_halves[k]),
            "dh_n": view(dh_ns[k]), "dc_n": view(dc_ns[k] if lstm else None), "dx": view(dx), "dh0": view(dh0),
            "dc0": view(dc0 if lstm else None), "dweight_ih": view(dw_ih), "dweight_hh": view(dw_hh),
            "dbias_ih": view(db_ih if has_bias_ih else None), "dbias_hh": view(db_hh if has_bias_hh else None),
            "dweight_hr": view(dw_hr if d.weight_hr is not None else None), "workspace": view(workspaces[k])})
        results.append(grads)
    _C.rnn_backward(cell, calls)
    return dx, results


def _fake_forward(x, batch_sizes, cell, training, directions):
    P = directions[0].h0.shape[1]
    H = _hidden_size(directions[0].weight_hh, cell)
    y = x.new_empty(x.shape[:-1] + (len(directions) * P,))
    results = []
    for d in directions:
        c_n = d.h0.new_empty(d.h0.shape[0], H) if cell == LSTM else x.new_empty(0)
        width = reserve_width(cell, H, d.weight_hr is not None, training)
        reserve = x.new_empty(_rows(x, batch_sizes), width, dtype=_reserve_dtype(x)) if width else x.new_empty(0)
        results.append((torch.empty_like(d.h0), c_n, reserve))
    return y, results


def _fake_backward(x, cell, has_bias_ih, has_bias_hh, directions):
    results = []
    for d in directions:
        G = d.weight_ih.shape[0]
        results.append((torch.empty_like(d.h0), torch.empty_like(d.c0) if cell == LSTM else x.new_empty(0),
                        torch.empty_like(d.weight_ih), torch.empty_like(d.weight_hh),
                        x.new_empty(G if has_bias_ih else 0), x.new_empty(G if has_bias_hh else 0),
                        torch.empty_like(d.weight_hr) if d.weight_hr is not None else x.new_empty(0)))
    return torch.empty_like(x), results


def _incoming(grad: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad.contiguous()


def _not_training():
    return RuntimeError("fastrnn: this RNN forward ran with training=False and saved nothing for backward; "
                        "call it with training=True (fastrnn.functional and fastrnn.nn do so when a gradient is "
                        "needed)")


class _Function(torch.autograd.Function):
    """A custom op's forward body and its registered backward as one autograd.Function: apply
    with (forward body, setup_context, backward, *the op's arguments). The setup is told it runs
    eagerly, where it may keep the output y aside instead of saving it (_keep_output)."""

    @staticmethod
    def forward(ctx, body, setup, backward, *inputs):
        output = body(*inputs)
        setup(ctx, inputs, output, True)
        ctx.backward_fn = backward
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, None, *ctx.backward_fn(ctx, *grads))


def _keep_output(ctx, y: Tensor, saved: bool) -> Optional[Tensor]:
    """What of the output y a layer's backward context saves: y itself where `saved`, else None,
    y being kept aside as a detached alias (no reference cycle) with its version.

    The kernels' backward reads y (the h_prev of each step), but torch's own layers mostly keep
    their own copies, so a caller may change the returned y in place before backward (y.mul_(2))
    and torch gives the gradients of the changed graph. Kept aside, a y changed since is made
    again by running the forward once more (_forward_output). Saved, its change raises autograd's
    version error, as torch's layers do where they save their output (oneDNN's LSTM, cuDNN)."""
    if saved:
        return y
    ctx.output = (y.detach(), y._version)
    return None


def _torch_saves_output(x: Tensor, cell: int, bidirectional: bool, projected: bool, packed: bool) -> bool:
    """Whether torch.nn's layer of this kind saves the output it returns for its backward: cuDNN
    always (CUDA), and on the CPU oneDNN's LSTM, which torch runs for a float32 LSTM without
    projection that is not packed, one direction at a time (bidirectional outputs are a copy)."""
    if not x.is_cpu:
        return True
    return (cell == LSTM and not bidirectional and not projected and not packed and x.dtype == torch.float32
            and _MKLDNN and _mkldnn_enabled())


_MKLDNN = torch.backends.mkldnn.is_available()
_mkldnn_enabled = torch._C._get_mkldnn_enabled  # torch.backends.mkldnn.enabled (its flags() context too)


def _forward_output(ctx, y: Optional[Tensor], forward):
    """y as the training forward returned it, and whether `forward()` (the forward run again,
    returning the op's outputs) had to make it, y having been changed in place (_keep_output)."""
    if y is not None:
        return y, None
    y, version = ctx.output
    if y._version == version:
        return y, None
    output = forward()
    return output[0], output


class Layer:
    """What a layer's gradients depend on besides tensors (see Gradients)."""

    def __init__(self, cell: int, reverses: Tuple[bool, ...], has_bias_ih: bool, has_bias_hh: bool):
        self.cell, self.reverses = cell, reverses
        self.has_bias_ih, self.has_bias_hh = has_bias_ih, has_bias_hh


# Per direction, Gradients takes these tensors, in this order, after (x, batch_sizes, y, dy).
_DIRECTION_INPUTS = ("h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "recurrent_mask",
                     "reserve", "dh_n", "dc_n")
_PRIMALS = 7  # the first seven: what the layer differentiates with respect to, in its gradients' order


class Gradients(torch.autograd.Function):
    """A layer's first-order gradients as a differentiable function of its inputs and of the
    incoming output gradients: the forward is the backward kernels (the op), the backward
    differentiates fastrnn._rnn_reference, the same math in torch operations, twice.

    Used where a backward itself needs a derivative (create_graph, functorch transforms), so a
    second derivative is right instead of raising, and the kernels still compute the first one.
    apply(Layer, x, batch_sizes, y, dy, *per direction the _DIRECTION_INPUTS) returns the op's
    gradients: dx, then per direction (dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh,
    dweight_hr), empty where the layer has no such input."""

    generate_vmap_rule = True

    @staticmethod
    def forward(layer, x, batch_sizes, y, dy, *tensors):
        per = [tensors[k:k + len(_DIRECTION_INPUTS)] for k in range(0, len(tensors), len(_DIRECTION_INPUTS))]
        flags = (layer.cell, layer.has_bias_ih, layer.has_bias_hh)
        if len(per) == 1:
            h0, c0, w_ih, w_hh, _, _, w_hr, mask, reserve, dh_n, dc_n = per[0]
            call = rnn_backward_impl if choose(x, False) == DIRECT else rnn_backward
            return tuple(call(x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, layer.cell,
                              layer.reverses[0], layer.has_bias_ih, layer.has_bias_hh, mask))
        (h0, c0, w_ih, w_hh, _, _, w_hr, mask, reserve, dh_n, dc_n), (h0_r, c0_r, w_ih_r, w_hh_r, _, _, w_hr_r, mask_r,
                                                                      reserve_r, dh_n_r, dc_n_r) = per
        call = rnn_bidirectional_backward_impl if choose(x, False) == DIRECT else rnn_bidirectional_backward
        return tuple(call(x, h0, c0, w_ih, w_hh, w_hr, reserve, dh_n, dc_n, h0_r, c0_r, w_ih_r, w_hh_r, w_hr_r,
                          reserve_r, dh_n_r, dc_n_r, batch_sizes, y, dy, *flags, mask, mask_r))

    @staticmethod
    def setup_context(ctx, inputs, output):
        layer, x, batch_sizes, _, dy, *tensors = inputs
        ctx.layer = layer
        ctx.save_for_backward(x, batch_sizes, dy, *tensors)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):
        layer = ctx.layer
        x, batch_sizes, dy, *tensors = ctx.saved_tensors
        n = len(_DIRECTION_INPUTS)
        per = [tensors[k:k + n] for k in range(0, len(tensors), n)]
        # What the first-order gradients are a function of: the layer's inputs (primals) and the
        # gradients of its outputs (y, then per direction h_n and, for an LSTM, c_n).
        primals = [x] + [t for d in per for t in d[:_PRIMALS]]
        lstm = layer.cell == LSTM
        cotangents = [dy] + [t for d in per for t in (d[9:11] if lstm else d[9:10])]
        wanted = [k for k, p in enumerate(primals) if p is not None]

        def outputs(*values):
            full = [None] * len(primals)
            for k, v in zip(wanted, values):
                full[k] = v
            directions = [_Direction(reverse, *full[1 + _PRIMALS * j:1 + _PRIMALS * (j + 1)], per[j][7])
                          for j, reverse in enumerate(layer.reverses)]
            y, states = _rnn_reference.layer(full[0], batch_sizes, layer.cell, directions)
            return (y, *[s for h_n, c_n in states for s in ((h_n, c_n) if lstm else (h_n,))])

        def first_order(*values):
            _, pullback = torch.func.vjp(outputs, *values[:len(wanted)])
            return pullback(tuple(values[len(wanted):]))

        # The op's gradients come in the primals' order; the empty ones (no such input) are dropped.
        incoming = tuple(torch.zeros_like(primals[k]) if grads[k] is None else grads[k] for k in wanted)
        _, pullback = torch.func.vjp(first_order, *[primals[k] for k in wanted], *cotangents)
        results = pullback(incoming)
        d_primals = [None] * len(primals)
        for k, g in zip(wanted, results[:len(wanted)]):
            d_primals[k] = g
        d_cotangents = list(results[len(wanted):])
        d_dy = d_cotangents.pop(0)
        per_direction = []
        for j in range(len(per)):
            d_states = (d_cotangents[2 * j], d_cotangents[2 * j + 1]) if lstm else (d_cotangents[j], None)
            per_direction += [*d_primals[1 + _PRIMALS * j:1 + _PRIMALS * (j + 1)], None, None, *d_states]
        return (None, d_primals[0], None, None, d_dy, *per_direction)


# ---- One direction -----------------------------------------------------------------------------


def rnn_forward_impl(x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                     bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor],
                     batch_sizes: Optional[Tensor], cell: int, reverse: bool, training: bool,
                     recurrent_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One layer, one direction: returns (y, h_n, c_n, reserve).

    cell: 0 rnn_tanh, 1 rnn_relu, 2 lstm, 3 gru. x is (T, B, I), or (rows, I) packed with
    batch_sizes (T); h0 (B, P); weight_hr (P, H) projects an LSTM's output (P = H without it).
    c_n is empty unless LSTM; reserve (what the backward needs) is empty unless training.
    Inputs must be contiguous. recurrent_mask (B, P), optional: see the module docstring.

    The body of the custom op rnn_forward. Called directly, it skips torch's dispatcher (tens
    of microseconds per call), which is safe only where no autograd graph or tracing is needed.
    """
    direction = _Direction(reverse, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, recurrent_mask)
    y, [(h_n, c_n, reserve)] = _forward(x, batch_sizes, cell, training, [direction])
    return y, h_n, c_n, reserve


rnn_forward = torch.library.custom_op("fastrnn::rnn_forward", mutates_args=())(rnn_forward_impl)


def rnn_inference(x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                  bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], weight_hr: Optional[Tensor],
                  batch_sizes: Optional[Tensor], cell: int, reverse: bool,
                  recurrent_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """rnn_forward_impl with training=False, called directly (no autograd graph, no tracing):
    (y, h_n, c_n), c_n None unless LSTM."""
    if not x.is_cpu or recurrent_mask is not None:
        direction = _Direction(reverse, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, recurrent_mask)
        y, [(h_n, c_n, _)] = _forward(x, batch_sizes, cell, False, [direction], placeholders=False)
        return y, h_n, c_n
    # On the CPU the kernel's positional entry: _forward's dict costs a batch-1 call a few percent.
    B, P = h0.shape
    lstm = cell == LSTM
    y = _runtime.empty(x.shape[:-1] + (P,), x)
    h_n = _runtime.empty((B, P), x)
    c_n = _runtime.empty((B, _hidden_size(weight_hh, cell)), x) if lstm else None
    workspace = workspaces_for([_buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes)[1]], x)[0]
    _C.rnn_inference(cell, reverse, to_dlpack(x), to_dlpack(h0), view(c0) if lstm else None, to_dlpack(weight_ih),
                     to_dlpack(weight_hh), view(bias_ih), view(bias_hh), view(weight_hr), view(batch_sizes), None,
                     to_dlpack(y), to_dlpack(h_n), view(c_n), to_dlpack(workspace))
    return y, h_n, c_n


@rnn_forward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, cell, reverse, training,
      recurrent_mask=None):
    direction = _Direction(reverse, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    y, [(h_n, c_n, reserve)] = _fake_forward(x, batch_sizes, cell, training, [direction])
    return y, h_n, c_n, reserve


def rnn_backward_impl(x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                 weight_hr: Optional[Tensor], batch_sizes: Optional[Tensor], y: Tensor, reserve: Tensor, dy: Tensor,
                 dh_n: Tensor, dc_n: Optional[Tensor], cell: int, reverse: bool, has_bias_ih: bool,
                 has_bias_hh: bool, recurrent_mask: Optional[Tensor] = None
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT of rnn_forward: returns (dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh,
    dweight_hr); dc0 is empty unless LSTM, a bias gradient is empty when the forward had no such
    bias, dweight_hr is empty without a projection."""
    direction = _Direction(reverse, h0, c0, weight_ih, weight_hh, weight_hr=weight_hr, recurrent_mask=recurrent_mask)
    dx, [grads] = _backward(x, batch_sizes, y, dy, cell, has_bias_ih, has_bias_hh, [direction], [reserve], [dh_n],
                            [dc_n])
    return (dx, *grads)


rnn_backward = torch.library.custom_op("fastrnn::rnn_backward", mutates_args=())(rnn_backward_impl)

@rnn_backward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, cell, reverse,
      has_bias_ih, has_bias_hh, recurrent_mask=None):
    direction = _Direction(reverse, h0, c0, weight_ih, weight_hh, weight_hr=weight_hr)
    dx, [grads] = _fake_backward(x, cell, has_bias_ih, has_bias_hh, [direction])
    return (dx, *grads)


def _setup_context(ctx, inputs, output, eager=False):
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, cell, reverse, training, mask = inputs
    y, _, _, reserve = output
    ctx.cell, ctx.reverse, ctx.training = cell, reverse, training
    saved = (x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes)
    if eager:
        # The biases only for a second derivative or a forward run again (_keep_output): unsaved,
        # so a bias changed in place before backward does not stop it, as with torch's layers.
        ctx.biases = (bias_ih, bias_hh)
        y = _keep_output(ctx, y, _torch_saves_output(x, cell, False, weight_hr is not None, batch_sizes is not None))
        ctx.save_for_backward(*saved, y, reserve, mask)
    else:  # (functorch and the compilers want every tensor saved)
        ctx.save_for_backward(*saved, y, reserve, mask, bias_ih, bias_hh)


def _autograd_backward(ctx, dy, dh_n, dc_n, _dreserve):
    if not ctx.training:
        raise _not_training()
    x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, mask, *biases = ctx.saved_tensors
    bias_ih, bias_hh = biases or ctx.biases
    y, output = _forward_output(ctx, y, lambda: rnn_forward_impl(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
                                                                  weight_hr, batch_sizes, ctx.cell, ctx.reverse, True,
                                                                  mask))
    if output is not None:
        reserve = output[3]
    lstm = ctx.cell == LSTM
    has_bias_ih, has_bias_hh = bias_ih is not None, bias_hh is not None
    dy, dh_n, dc_n = _incoming(dy, y), _incoming(dh_n, h0), _incoming(dc_n, c0) if lstm else None
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph, functorch
        grads = Gradients.apply(Layer(ctx.cell, (ctx.reverse,), has_bias_ih, has_bias_hh), x, batch_sizes, y, dy,
                                 h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, mask, reserve, dh_n, dc_n)
    else:
        grads = (rnn_backward_impl if choose(y, False) == DIRECT else rnn_backward)(
            x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, ctx.cell,
            ctx.reverse, has_bias_ih, has_bias_hh, mask)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = grads
    return (dx, dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if has_bias_ih else None,
            db_hh if has_bias_hh else None, dw_hr if weight_hr is not None else None, None, None, None, None,
            None)


rnn_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def rnn_forward_eager(*inputs):
    """rnn_forward for plain tensors in eager mode (choose's FUNCTION): every argument, the optional
    mask included, positionally."""
    return _Function.apply(rnn_forward_impl, _setup_context, _autograd_backward, *inputs)


def _unmaterialized(setup):
    """setup, then grads of outputs that reached no loss come to the backward as None."""

    def setup_context(ctx, inputs, output):
        setup(ctx, inputs, output)
        ctx.set_materialize_grads(False)

    return setup_context


_RnnForwardTransformed = transform_function("_RnnForwardTransformed", rnn_forward, _unmaterialized(_setup_context),
                                            _autograd_backward)


def rnn_forward_transformed(*inputs):
    """rnn_forward's training call under functorch transforms (choose's TRANSFORMED): every
    argument, the optional mask included, positionally."""
    return _RnnForwardTransformed.apply(*inputs)


# ---- Both directions ----------------------------------------------------------------------------


def rnn_bidirectional_forward_impl(
        x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor],
        bias_hh: Optional[Tensor], weight_hr: Optional[Tensor], h0_reverse: Tensor, c0_reverse: Optional[Tensor],
        weight_ih_reverse: Tensor, weight_hh_reverse: Tensor, bias_ih_reverse: Optional[Tensor],
        bias_hh_reverse: Optional[Tensor], weight_hr_reverse: Optional[Tensor], batch_sizes: Optional[Tensor],
        cell: int, training: bool, recurrent_mask: Optional[Tensor] = None,
        recurrent_mask_reverse: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Both directions of one layer, run side by side: returns (y, h_n, c_n, reserve,
    h_n_reverse, c_n_reverse, reserve_reverse). y is (T, B, 2P) (or (rows, 2P) packed), each row
    the forward direction's output then the reverse direction's, as torch.nn lays them out.
    The body of the custom op rnn_bidirectional_forward (see rnn_forward_impl); each direction
    takes its own optional recurrent mask."""
    directions = [_Direction(False, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, recurrent_mask),
                  _Direction(True, h0_reverse, c0_reverse, weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                             bias_hh_reverse, weight_hr_reverse, recurrent_mask_reverse)]
    y, [forward, backward] = _forward(x, batch_sizes, cell, training, directions)
    return (y, *forward, *backward)


rnn_bidirectional_forward = torch.library.custom_op("fastrnn::rnn_bidirectional_forward",
                                                    mutates_args=())(rnn_bidirectional_forward_impl)


def rnn_bidirectional_inference(
        x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, bias_ih: Optional[Tensor],
        bias_hh: Optional[Tensor], weight_hr: Optional[Tensor], h0_reverse: Tensor, c0_reverse: Optional[Tensor],
        weight_ih_reverse: Tensor, weight_hh_reverse: Tensor, bias_ih_reverse: Optional[Tensor],
        bias_hh_reverse: Optional[Tensor], weight_hr_reverse: Optional[Tensor], batch_sizes: Optional[Tensor],
        cell: int, recurrent_mask: Optional[Tensor] = None, recurrent_mask_reverse: Optional[Tensor] = None):
    """rnn_bidirectional_forward_impl with training=False, called directly (no autograd graph,
    no tracing): (y, (h_n, c_n), (h_n_reverse, c_n_reverse)), the c_n None unless LSTM."""
    directions = [_Direction(False, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, recurrent_mask),
                  _Direction(True, h0_reverse, c0_reverse, weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                             bias_hh_reverse, weight_hr_reverse, recurrent_mask_reverse)]
    y, [(h_n, c_n, _), (h_n_r, c_n_r, _)] = _forward(x, batch_sizes, cell, False, directions, placeholders=False)
    return y, (h_n, c_n), (h_n_r, c_n_r)


@rnn_bidirectional_forward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, h0_reverse, c0_reverse, weight_ih_reverse,
      weight_hh_reverse, bias_ih_reverse, bias_hh_reverse, weight_hr_reverse, batch_sizes, cell, training,
      recurrent_mask=None, recurrent_mask_reverse=None):
    directions = [_Direction(False, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr),
                  _Direction(True, h0_reverse, c0_reverse, weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                             bias_hh_reverse, weight_hr_reverse)]
    y, [forward, backward] = _fake_forward(x, batch_sizes, cell, training, directions)
    return (y, *forward, *backward)


def rnn_bidirectional_backward_impl(
        x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor, weight_hr: Optional[Tensor],
        reserve: Tensor, dh_n: Tensor, dc_n: Optional[Tensor], h0_reverse: Tensor, c0_reverse: Optional[Tensor],
        weight_ih_reverse: Tensor, weight_hh_reverse: Tensor, weight_hr_reverse: Optional[Tensor],
        reserve_reverse: Tensor, dh_n_reverse: Tensor, dc_n_reverse: Optional[Tensor], batch_sizes: Optional[Tensor],
        y: Tensor, dy: Tensor, cell: int, has_bias_ih: bool, has_bias_hh: bool, recurrent_mask: Optional[Tensor] = None,
        recurrent_mask_reverse: Optional[Tensor] = None) -> List[Tensor]:
    """BPTT of rnn_bidirectional_forward: [dx, then for each direction dh0, dc0, dweight_ih,
    dweight_hh, dbias_ih, dbias_hh, dweight_hr] (empty tensors as in rnn_backward). dx is the
    sum over both directions."""
    directions = [_Direction(False, h0, c0, weight_ih, weight_hh, weight_hr=weight_hr, recurrent_mask=recurrent_mask),
                  _Direction(True, h0_reverse, c0_reverse, weight_ih_reverse, weight_hh_reverse,
                             weight_hr=weight_hr_reverse, recurrent_mask=recurrent_mask_reverse)]
    dx, [forward, backward] = _backward(x, batch_sizes, y, dy, cell, has_bias_ih, has_bias_hh, directions,
                                        [reserve, reserve_reverse], [dh_n, dh_n_reverse], [dc_n, dc_n_reverse])
    return [dx, *forward, *backward]


rnn_bidirectional_backward = torch.library.custom_op("fastrnn::rnn_bidirectional_backward",
                                                     mutates_args=())(rnn_bidirectional_backward_impl)


@rnn_bidirectional_backward.register_fake
def _(x, h0, c0, weight_ih, weight_hh, weight_hr, reserve, dh_n, dc_n, h0_reverse, c0_reverse, weight_ih_reverse,
      weight_hh_reverse, weight_hr_reverse, reserve_reverse, dh_n_reverse, dc_n_reverse, batch_sizes, y, dy, cell,
      has_bias_ih, has_bias_hh, recurrent_mask=None, recurrent_mask_reverse=None):
    directions = [_Direction(False, h0, c0, weight_ih, weight_hh, weight_hr=weight_hr),
                  _Direction(True, h0_reverse, c0_reverse, weight_ih_reverse, weight_hh_reverse,
                             weight_hr=weight_hr_reverse)]
    dx, [forward, backward] = _fake_backward(x, cell, has_bias_ih, has_bias_hh, directions)
    return [dx, *forward, *backward]


def _setup_bidirectional_context(ctx, inputs, output, eager=False):
    (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, h0_r, c0_r, weight_ih_r, weight_hh_r, bias_ih_r,
     bias_hh_r, weight_hr_r, batch_sizes, cell, training, mask, mask_r) = inputs
    y, _, _, reserve, _, _, reserve_r = output
    ctx.cell, ctx.training = cell, training
    saved = (x, h0, c0, weight_ih, weight_hh, weight_hr, reserve, h0_r, c0_r, weight_ih_r, weight_hh_r, weight_hr_r,
             reserve_r, batch_sizes)
    biases = (bias_ih, bias_hh, bias_ih_r, bias_hh_r)
    if eager:  # as _setup_context
        ctx.biases = biases
        y = _keep_output(ctx, y, _torch_saves_output(x, cell, True, weight_hr is not None, batch_sizes is not None))
        ctx.save_for_backward(*saved, y, mask, mask_r)
    else:
        ctx.save_for_backward(*saved, y, mask, mask_r, *biases)


def _autograd_bidirectional_backward(ctx, dy, dh_n, dc_n, _dreserve, dh_n_r, dc_n_r, _dreserve_r):
    if not ctx.training:
        raise _not_training()
    (x, h0, c0, weight_ih, weight_hh, weight_hr, reserve, h0_r, c0_r, weight_ih_r, weight_hh_r, weight_hr_r,
     reserve_r, batch_sizes, y, mask, mask_r, *biases) = ctx.saved_tensors
    bias_ih, bias_hh, bias_ih_r, bias_hh_r = biases or ctx.biases
    y, output = _forward_output(ctx, y, lambda: rnn_bidirectional_forward_impl(
        x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, h0_r, c0_r, weight_ih_r, weight_hh_r, bias_ih_r,
        bias_hh_r, weight_hr_r, batch_sizes, ctx.cell, True, mask, mask_r))
    if output is not None:
        reserve, reserve_r = output[3], output[6]
    lstm = ctx.cell == LSTM
    has_bias_ih, has_bias_hh = bias_ih is not None, bias_hh is not None
    dy = _incoming(dy, y)
    dh_n, dc_n = _incoming(dh_n, h0), _incoming(dc_n, c0) if lstm else None
    dh_n_r, dc_n_r = _incoming(dh_n_r, h0_r), _incoming(dc_n_r, c0_r) if lstm else None
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph, functorch
        dx, *grads = Gradients.apply(
            Layer(ctx.cell, (False, True), has_bias_ih, has_bias_hh), x, batch_sizes, y, dy,
            h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, mask, reserve, dh_n, dc_n,
            h0_r, c0_r, weight_ih_r, weight_hh_r, bias_ih_r, bias_hh_r, weight_hr_r, mask_r, reserve_r, dh_n_r, dc_n_r)
    else:
        dx, *grads = (rnn_bidirectional_backward_impl if choose(y, False) == DIRECT else rnn_bidirectional_backward)(
            x, h0, c0, weight_ih, weight_hh, weight_hr, reserve, dh_n, dc_n, h0_r, c0_r, weight_ih_r, weight_hh_r,
            weight_hr_r, reserve_r, dh_n_r, dc_n_r, batch_sizes, y, dy, ctx.cell, has_bias_ih, has_bias_hh, mask,
            mask_r)

    def direction(dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, weight_hr):
        return (dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if has_bias_ih else None,
                db_hh if has_bias_hh else None, dw_hr if weight_hr is not None else None)

    return (dx, *direction(*grads[:7], weight_hr), *direction(*grads[7:], weight_hr_r), None, None, None, None,
            None)


rnn_bidirectional_forward.register_autograd(_autograd_bidirectional_backward,
                                            setup_context=_setup_bidirectional_context)


def rnn_bidirectional_forward_eager(*inputs):
    """rnn_bidirectional_forward for plain tensors in eager mode (choose's FUNCTION): every argument,
    both optional masks included, positionally."""
    return _Function.apply(rnn_bidirectional_forward_impl, _setup_bidirectional_context,
                           _autograd_bidirectional_backward, *inputs)


_RnnBidirectionalForwardTransformed = transform_function(
    "_RnnBidirectionalForwardTransformed", rnn_bidirectional_forward, _unmaterialized(_setup_bidirectional_context),
    _autograd_bidirectional_backward)


def rnn_bidirectional_forward_transformed(*inputs):
    """rnn_bidirectional_forward's training call under functorch transforms (choose's TRANSFORMED):
    every argument, both optional masks included, positionally."""
    return _RnnBidirectionalForwardTransformed.apply(*inputs)


# ---- vmap ---------------------------------------------------------------------------------------


def _vmap_by_loop(op):
    """A vmap rule calling op once per entry of the mapped dimension and stacking the results.
    The kernels batch over B themselves; vmap is for torch.func's per-sample work and jacobians
    (jacrev maps the backward over the output gradients), where one call per entry is plainly
    right. (Without a rule, vmap falls back to the same loop after a warning, and a direct
    call's kernel would be handed batched tensors it cannot read.)"""

    def rule(info, in_dims, *args, **kwargs):
        calls = [op(*(a if d is None else a.select(d, i).contiguous() for a, d in zip(args, in_dims)), **kwargs)
                 for i in range(info.batch_size)]
        stacked = [torch.stack(parts) for parts in zip(*calls)]
        if isinstance(calls[0], list):
            return stacked, [0] * len(stacked)
        return tuple(stacked), (0,) * len(stacked)

    return rule


for _op in (rnn_forward, rnn_backward, rnn_bidirectional_forward, rnn_bidirectional_backward):
    _op.register_vmap(_vmap_by_loop(_op))
