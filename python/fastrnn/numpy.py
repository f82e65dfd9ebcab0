"""fastrnn on NumPy arrays: forward and backward of one RNN layer, one direction. No torch.

Shapes: x (T, B, I); h0, c0 (B, H); weights in PyTorch's layout, weight_ih (G*H, I),
weight_hh (G*H, H), bias_ih and bias_hh (G*H), G = 4 for LSTM (gates i, f, g, o), 3 for GRU
(r, z, n), 1 for the Elman RNN. float32 and float64.

With ``training=True`` the forward also returns a context, last; pass it with the gradients
of the outputs to the matching ``*_backward``, which returns a dict of gradients::

    y, h_n, c_n, ctx = fastrnn.numpy.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, training=True)
    grads = fastrnn.numpy.lstm_backward(ctx, dy, dh_n, dc_n)   # grads["weight_ih"], ...

The context keeps references to the inputs: do not modify them before the backward call.
Gradients given as None count as zeros; so do h0 and c0. x and the weights are required.

Arguments may be anything NumPy turns into an array of numbers (lists, torch CPU tensors) and
arrays of any layout: strided, reversed, Fortran-order, read-only or big-endian ones are copied
into the dense native layout the kernels read (as np.dot and friends accept any layout), dense
ones are used in place. The dtype is never converted: float32 or float64, the same for all.
"""

import numpy as np

from . import _C, _checks

__all__ = ["lstm", "gru", "rnn", "lstm_backward", "gru_backward", "rnn_backward"]

_SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class RnnContext:
    """What a training forward keeps for its backward. Opaque to users."""

    __slots__ = ("cell", "reverse", "x", "h0", "c0", "weight_ih", "weight_hh", "has_bias_ih", "has_bias_hh",
                 "y", "reserve")

    def __init__(self, **fields):
        for name, value in fields.items():
            setattr(self, name, value)

    def __repr__(self):
        T, B, I = self.x.shape
        return f"RnnContext({self.cell}, T={T}, B={B}, input_size={I}, hidden_size={self.y.shape[-1]})"


def _empty(shape, dtype):
    """Every buffer handed to a kernel comes from here (the tests fill them with NaN)."""
    return np.empty(shape, dtype)


def _array(op, name, a, optional=False):
    """``a`` as an ndarray for the checks: anything NumPy turns into numbers (lists, torch CPU
    tensors), in native byte order. Layout is fixed later, by :func:`_for_kernel`."""
    if a is None:
        if optional:
            return None
        raise TypeError(f"{op}: expected {name} to be a float32 or float64 array, got None")
    try:
        array = np.asarray(a)
    except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, torch tensors needing grad or on a GPU
        raise TypeError(f"{op}: expected {name} to be a float32 or float64 array; "
                        f"NumPy cannot convert the {type(a).__name__} given: {e}") from e
    if array.dtype.kind not in "biufc":  # strings, objects, records, dates: nothing to compute on
        raise TypeError(f"{op}: expected {name} to be a float32 or float64 array, "
                        f"got {type(a).__name__} of dtype {array.dtype}")
    if not array.dtype.isnative:  # big-endian data read from a file: NumPy users expect it to just work
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _for_kernel(a):
    """The kernels read dense row-major aligned memory: a copy only where ``a`` is not that."""
    return None if a is None else np.require(a, requirements=("C", "A"))


def _flag(op, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: expected {name} to be a bool, got {type(value).__name__}")
    return bool(value)


def _forward(op, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse, training):
    lstm = cell == "lstm"
    reverse, training = _flag(op, "reverse", reverse), _flag(op, "training", training)
    x, weight_ih, weight_hh = (_array(op, name, a) for name, a in
                               (("x", x), ("weight_ih", weight_ih), ("weight_hh", weight_hh)))
    h0, c0, bias_ih, bias_hh = (_array(op, name, a, optional=True) for name, a in
                                (("h0", h0), ("c0", c0 if lstm else None), ("bias_ih", bias_ih),
                                 ("bias_hh", bias_hh)))
    T, B, _, H = _checks.check_rnn_arguments(op, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
                                             _SUPPORTED_DTYPES)
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh = map(_for_kernel, (x, h0, c0, weight_ih, weight_hh,
                                                                           bias_ih, bias_hh))
    dtype = weight_ih.dtype
    if h0 is None:
        h0 = np.zeros((B, H), dtype)
    if lstm and c0 is None:
        c0 = np.zeros((B, H), dtype)
    reserve_elements, workspace_bytes, _ = _C.rnn_buffer_sizes(_checks.CELLS[cell], dtype.name, T * B, B,
                                                               x.shape[2], H)
    y = _empty((T, B, H), dtype)
    h_n = _empty((B, H), dtype)
    c_n = _empty((B, H), dtype) if lstm else None
    reserve = _empty((T * B, reserve_elements // (T * B)), dtype) if training and reserve_elements else None
    workspace = _empty(workspace_bytes, np.uint8)
    _C.rnn_forward(_checks.CELLS[cell], training, [dict(
        reverse=reverse, x=x, h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
        bias_hh=bias_hh, y=y, h_n=h_n, c_n=c_n, reserve=reserve, workspace=workspace)])
    outputs = (y, h_n, c_n) if lstm else (y, h_n)
    if not training:
        return outputs
    ctx = RnnContext(cell=cell, reverse=reverse, x=x, h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh,
                     has_bias_ih=bias_ih is not None, has_bias_hh=bias_hh is not None, y=y, reserve=reserve)
    return outputs + (ctx,)


def _gradient(op, name, g, shape, dtype):
    g = _array(op, name, g, optional=True)
    if g is None:
        return np.zeros(shape, dtype)
    if tuple(g.shape) != tuple(shape):
        raise RuntimeError(f"{op}: Expected {name} of size {tuple(shape)}, got {tuple(g.shape)}")
    if g.dtype != dtype:
        raise RuntimeError(f"{op}: expected {name} of dtype {dtype}, got {g.dtype}")
    return _for_kernel(g)


def _backward(op, cell_family, ctx, dy, dh_n, dc_n):
    if not isinstance(ctx, RnnContext):
        raise TypeError(f"{op}: expected the context returned by a forward with training=True, "
                        f"got {type(ctx).__name__}")
    if (ctx.cell in ("rnn_tanh", "rnn_relu")) != (cell_family == "rnn") or (
            cell_family != "rnn" and ctx.cell != cell_family):
        raise ValueError(f"{op}: expected the context of a {cell_family} forward, got one of {ctx.cell}")
    lstm = ctx.cell == "lstm"
    dtype = ctx.weight_ih.dtype
    T, B, I = ctx.x.shape
    H = ctx.y.shape[-1]
    dy = _gradient(op, "dy", dy, (T, B, H), dtype)
    dh_n = _gradient(op, "dh_n", dh_n, (B, H), dtype)
    dc_n = _gradient(op, "dc_n", dc_n, (B, H), dtype) if lstm else None
    _, _, workspace_bytes = _C.rnn_buffer_sizes(_checks.CELLS[ctx.cell], dtype.name, T * B, B, I, H)
    grads = {
        "x": _empty(ctx.x.shape, dtype),
        "h0": _empty((B, H), dtype),
        "weight_ih": _empty(ctx.weight_ih.shape, dtype),
        "weight_hh": _empty(ctx.weight_hh.shape, dtype),
        "bias_ih": _empty(ctx.weight_ih.shape[0], dtype) if ctx.has_bias_ih else None,
        "bias_hh": _empty(ctx.weight_ih.shape[0], dtype) if ctx.has_bias_hh else None,
    }
    if lstm:
        grads["c0"] = _empty((B, H), dtype)
    _C.rnn_backward(_checks.CELLS[ctx.cell], [dict(
        reverse=ctx.reverse, x=ctx.x, h0=ctx.h0, c0=ctx.c0, weight_ih=ctx.weight_ih, weight_hh=ctx.weight_hh, y=ctx.y,
        reserve=ctx.reserve, dy=dy, dh_n=dh_n, dc_n=dc_n, dx=grads["x"], dh0=grads["h0"], dc0=grads.get("c0"),
        dweight_ih=grads["weight_ih"], dweight_hh=grads["weight_hh"], dbias_ih=grads["bias_ih"],
        dbias_hh=grads["bias_hh"], workspace=_empty(workspace_bytes, np.uint8))])
    return grads


def lstm(x, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, reverse=False, training=False):
    """LSTM layer over a whole sequence: returns (y, h_n, c_n), plus a context if training."""
    return _forward("lstm", "lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, reverse, training)


def gru(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, reverse=False, training=False):
    """GRU layer over a whole sequence: returns (y, h_n), plus a context if training."""
    return _forward("gru", "gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse, training)


def rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, nonlinearity="tanh", reverse=False,
        training=False):
    """Elman RNN layer (tanh or relu) over a whole sequence: returns (y, h_n), plus a context if training."""
    cell = _checks.elman_cell(nonlinearity)
    return _forward("rnn", cell, x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, reverse, training)


def lstm_backward(ctx, dy, dh_n, dc_n):
    """Gradients of an LSTM forward: dict with x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh."""
    return _backward("lstm_backward", "lstm", ctx, dy, dh_n, dc_n)


def gru_backward(ctx, dy, dh_n):
    """Gradients of a GRU forward: dict with x, h0, weight_ih, weight_hh, bias_ih, bias_hh."""
    return _backward("gru_backward", "gru", ctx, dy, dh_n, None)


def rnn_backward(ctx, dy, dh_n):
    """Gradients of an Elman RNN forward: dict with x, h0, weight_ih, weight_hh, bias_ih, bias_hh."""
    return _backward("rnn_backward", "rnn", ctx, dy, dh_n, None)
