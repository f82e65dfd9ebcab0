"""Argument checks shared by fastrnn.numpy and fastrnn.functional.

They work on anything with ``ndim``, ``shape`` and ``dtype`` (NumPy arrays, torch tensors)
and raise what torch.nn raises for the same mistake, in its words where it has them.
"""

from . import _C

# The cell table of the kernels (csrc/cells/table.h), by torch's mode names: the kind code the
# kernels take, the gates stacked in the weights, the H-wide reserve blocks per row.
_CELL_TABLE = _C.cell_table()
CELLS = {name: cell["kind"] for name, cell in _CELL_TABLE.items()}
GATES = {name: cell["gates"] for name, cell in _CELL_TABLE.items()}
RESERVE_BLOCKS = {name: cell["reserve_blocks"] for name, cell in _CELL_TABLE.items()}
NONLINEARITIES = {"tanh": "rnn_tanh", "relu": "rnn_relu"}


def device_mismatch(first, second, context: str) -> RuntimeError:
    """torch's error for tensors on two devices, with what fastrnn knows of the call."""
    return RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                        f"{first} and {second}! ({context})")


def elman_cell(nonlinearity):
    """The cell name of an Elman RNN with this nonlinearity, as torch.nn.RNN checks it."""
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:  # (a list is unhashable)
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
    return NONLINEARITIES[nonlinearity]


def _shape(a):
    return "(" + ", ".join(str(int(s)) for s in a.shape) + ("," if len(a.shape) == 1 else "") + ")"


def _device(a):
    return str(getattr(a, "device", "cpu"))


def check_rnn_arguments(op, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, supported_dtypes):
    """Validates one layer's arguments; returns (T, B, I, H).

    x (T, B, I); h0, c0 (B, H) or None; weight_ih (G*H, I); weight_hh (G*H, H);
    bias_ih, bias_hh (G*H) or None. c0 is checked only for LSTM.
    """
    gates = GATES[cell]
    if x.ndim != 3:
        raise ValueError(f"{op}: Expected input to be 3-D (seq_len, batch, input_size), got {x.ndim}-D instead")
    for name, w in (("weight_ih", weight_ih), ("weight_hh", weight_hh)):
        if w.ndim != 2:
            raise RuntimeError(f"{op}: Expected {name} to be 2-D, got {w.ndim}-D")
    H = int(weight_hh.shape[1])
    if H == 0 or weight_hh.shape[0] != gates * H:
        raise RuntimeError(
            f"{op}: Expected weight_hh of size ({gates} * hidden_size, hidden_size) with hidden_size > 0, "
            f"got {_shape(weight_hh)}")
    T, B, I = (int(s) for s in x.shape)
    if weight_ih.shape[0] != gates * H:
        raise RuntimeError(f"{op}: Expected weight_ih of size ({gates * H}, input_size), got {_shape(weight_ih)}")
    if weight_ih.shape[1] != I:
        raise RuntimeError(
            f"{op}: input.size(-1) must be equal to input_size. Expected {int(weight_ih.shape[1])}, got {I}")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None and tuple(b.shape) != (gates * H,):
            raise RuntimeError(f"{op}: Expected {name} of size ({gates * H},), got {_shape(b)}")
    if T == 0:
        raise RuntimeError(f"{op}: Expected sequence length to be larger than 0 in RNN")
    if B == 0:
        raise RuntimeError(f"{op}: Expected batch size to be larger than 0 in RNN")
    states = (("h0", h0), ("c0", c0)) if cell == "lstm" else (("h0", h0),)
    for name, s in states:
        if s is None:
            continue
        if s.ndim != 2:
            raise RuntimeError(f"{op}: Expected {name} to be 2-D (batch, hidden_size), got {s.ndim}-D")
        if tuple(s.shape) != (B, H):
            raise RuntimeError(f"{op}: Expected {name} size ({B}, {H}), got {_shape(s)}")

    dtype = weight_ih.dtype
    if dtype not in supported_dtypes:
        raise RuntimeError(
            f"{op}: dtype {dtype} is not supported; expected one of {', '.join(str(d) for d in supported_dtypes)}")
    if x.dtype != dtype:
        raise ValueError(
            f"{op}: input dtype ({x.dtype}) does not match weight dtype ({dtype}). Convert the input or the weights.")
    others = [("weight_hh", weight_hh), ("bias_ih", bias_ih), ("bias_hh", bias_hh)] + list(states)
    for name, a in others:
        if a is not None and a.dtype != dtype:
            raise RuntimeError(f"{op}: expected {name} of dtype {dtype} like weight_ih, got {a.dtype}")
    device = _device(x)
    for name, a in [("weight_ih", weight_ih)] + others:
        if a is not None and _device(a) != device:
            raise device_mismatch(device, _device(a), f"{op}: input is on {device}, {name} on {_device(a)}")
    return T, B, I, H
