"""Training utilities for recurrent networks: windows over long series, truncated BPTT with
stateful batches, per-gate initialisers, penalties and gradient clipping by value.

Windows (NumPy arrays or torch tensors, returned as views of the series, no copy; other
array-likes such as lists are taken as NumPy arrays):

    >>> x = np.arange(10)
    >>> inputs, targets = shift_split(x, length=4, shift=2, target_shift=1)
    >>> inputs.tolist(), targets.tolist()
    ([[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]], [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]])

Truncated BPTT over B parallel streams of one long sequence, carrying the state:

    stream = batchify(encoded_text, batch_size=32)           # (T, 32)
    walk = StatefulBatches(stream, k=100, target_shift=1)
    for x, y in walk:                                        # (<=100, 32) each
        out, state = model(x, walk.state)                    # the previous chunk's final state
        walk.state = state                                   # stored detached
        ...

Gradient clipping by norm is fused into the optimizers (``fastrnn.optim.Adam(...,
max_grad_norm=1.0)``) and available alone as ``fastrnn.optim.clip_grad_norm_``; clipping by value
is :func:`clip_grad_value_` here. The optimizers' ``weight_decay`` and ``l1_decay`` add the
gradients of the L2/L1 penalties inside the fused step; :func:`l1_penalty` and :func:`l2_penalty`
are for penalties on chosen parameters, added to the loss.

The NumPy parts never import torch; the torch parts import it when first called.
"""

import fnmatch
import math
import operator
import sys

import numpy as np

__all__ = [
    "sliding_windows", "reshape_split", "shift_split", "WindowDataset",
    "batchify", "tbptt_chunks", "detach_state", "StatefulBatches",
    "xavier_uniform_", "xavier_normal_", "he_uniform_", "he_normal_", "orthogonal_", "identity_",
    "forget_gate_bias_", "init_rnn_",
    "select_parameters", "l1_penalty", "l2_penalty", "clip_grad_value_",
]


def _is_torch(x) -> bool:
    # Checked without importing torch, so NumPy users never pay for it.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


# ---- Argument checks: the exception NumPy, torch or range() raises for the same mistake ------------

_AxisError = getattr(np, "exceptions", np).AxisError  # a ValueError and an IndexError


def _integer(name, value) -> int:
    """A size, step or count: an integer (or anything with __index__), never a float to truncate."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _real(name, value) -> float:
    """A gain, bias or clipping value: a real number (Python, NumPy or a one-element tensor)."""
    if not isinstance(value, (str, bytes)):
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise TypeError(f"{name} must be a real number, got {type(value).__name__}")


def _axis(name, axis, ndim: int) -> int:
    """``axis`` made non-negative; out of range is NumPy's AxisError, not a silent wrap-around."""
    axis = _integer(name, axis)
    if not -ndim <= axis < ndim:
        raise _AxisError(axis, ndim, None if name == "axis" else name)
    return axis % ndim


def _series(name, x):
    """A NumPy array or a torch tensor as given (windows are views of it); other array-likes
    (lists) as NumPy arrays."""
    if _is_torch(x) or isinstance(x, np.ndarray):
        return x
    if x is None:
        raise TypeError(f"{name} must be a NumPy array or a torch tensor, got None")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a NumPy array or a torch tensor; "
                        f"NumPy cannot convert the {type(x).__name__} given: {e}") from e


# ---- Windows over long series -------------------------------------------------------------------

def sliding_windows(x, length: int, step: int = 1, axis: int = 0):
    """Windows of ``length`` consecutive elements along ``axis``, starting every ``step``
    elements, as a view of ``x`` (a NumPy array or a torch tensor).

    ``x`` of shape (..., N, ...) with N at ``axis`` gives (..., n, length, ...), with
    n = (N - length) // step + 1 windows: window i is ``x[i*step : i*step + length]``.

    >>> sliding_windows(np.arange(7), 3, step=2).tolist()
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    """
    x = _series("x", x)
    length, step = _integer("length", length), _integer("step", step)
    if length < 1 or step < 1:
        raise ValueError(f"length and step must be positive, got length={length}, step={step}")
    axis = _axis("axis", axis, x.ndim)
    if x.shape[axis] < length:
        raise ValueError(f"a window of {length} elements needs at least {length} along axis {axis}, "
                         f"got shape {tuple(x.shape)}")
    if _is_torch(x):
        # unfold appends the window dimension last; move it next to the window index.
        return x.unfold(axis, length, step).movedim(-1, axis + 1)
    x = np.asarray(x)
    windows = np.lib.stride_tricks.sliding_window_view(x, length, axis=axis)
    index = [slice(None)] * x.ndim
    index[axis] = slice(None, None, step)
    return np.moveaxis(windows[tuple(index)], -1, axis + 1)


def _take(x, start: int, stop: int, axis: int):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def shift_split(x, length: int, shift: int = 1, target_shift: int = 1, axis: int = 0, targets=None):
    """The "shift" split of a long series into (inputs, targets) windows, both views of ``x``.

    Window i starts at t = i*shift: ``inputs[i] = x[t : t+length]`` and
    ``targets[i] = x[t+target_shift : t+target_shift+length]`` (from ``targets`` instead of
    ``x`` when given: a second series of the same length along ``axis``). Windows are made while
    the target window fits in the series. Shapes: (n, length, ...) for ``x`` of (N, ...).

    >>> i, t = shift_split(np.arange(8), length=3, shift=2, target_shift=1)
    >>> i.tolist(), t.tolist()
    ([[0, 1, 2], [2, 3, 4], [4, 5, 6]], [[1, 2, 3], [3, 4, 5], [5, 6, 7]])
    """
    x = _series("x", x)
    length, shift = _integer("length", length), _integer("shift", shift)
    target_shift = _integer("target_shift", target_shift)
    if length < 1 or shift < 1 or target_shift < 0:
        raise ValueError(f"length and shift must be positive and target_shift non-negative, got length={length}, "
                         f"shift={shift}, target_shift={target_shift}")
    source = x if targets is None else _series("targets", targets)
    axis = _axis("axis", axis, x.ndim)
    _axis("targets", axis, source.ndim)  # the same axis must exist in targets
    n_steps = x.shape[axis]
    if source.shape[axis] != n_steps:
        raise ValueError(f"targets must have as many steps as x along axis {axis}: "
                         f"{source.shape[axis]} != {n_steps}")
    if n_steps < length + target_shift:
        raise ValueError(f"a window of {length} steps with targets {target_shift} steps ahead needs at least "
                         f"{length + target_shift} steps, got {n_steps}")
    count = (n_steps - target_shift - length) // shift + 1
    span = (count - 1) * shift + length  # the steps the windows cover, so both sides get `count`
    inputs = sliding_windows(_take(x, 0, span, axis), length, shift, axis)
    outputs = sliding_windows(_take(source, target_shift, target_shift + span, axis), length, shift, axis)
    return inputs, outputs


def reshape_split(x, length: int, target_shift: int = 1, axis: int = 0, targets=None):
    """The "reshape" split: non-overlapping windows of ``length`` steps (the series cut into
    consecutive pieces, the rest dropped) and their targets ``target_shift`` steps ahead;
    :func:`shift_split` with ``shift=length``.

    >>> i, t = reshape_split(np.arange(8), length=3)
    >>> i.tolist(), t.tolist()
    ([[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]])
    """
    return shift_split(x, length, shift=length, target_shift=target_shift, axis=axis, targets=targets)


_dataset_class = None


def _make_window_dataset():
    import torch

    class WindowDataset(torch.utils.data.Dataset):
        """A torch Dataset of (input, target) windows of a long series (shift split; the
        reshape split with ``shift=length``, the default). NumPy series are wrapped with
        ``torch.from_numpy``, so items are views of the caller's data, as for tensors.

            >>> ds = WindowDataset(np.arange(10.0), length=4, shift=2)
            >>> len(ds), ds[1][0].tolist(), ds[1][1].tolist()
            (3, [2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0])
        """

        def __init__(self, series, length, shift=None, target_shift=1, targets=None):
            series = _series("series", series)
            series = torch.from_numpy(series) if isinstance(series, np.ndarray) else series
            if targets is not None:
                targets = _series("targets", targets)
                targets = torch.from_numpy(targets) if isinstance(targets, np.ndarray) else targets
            self.inputs, self.targets = shift_split(series, length, length if shift is None else shift,
                                                    target_shift, 0, targets)

        def __len__(self):
            return self.inputs.shape[0]

        def __getitem__(self, index):
            return self.inputs[index], self.targets[index]

    WindowDataset.__module__ = __name__
    return WindowDataset


def __getattr__(name):
    # WindowDataset subclasses torch's Dataset, so it is made (importing torch) on first use.
    global _dataset_class
    if name == "WindowDataset":
        if _dataset_class is None:
            _dataset_class = _make_window_dataset()
        return _dataset_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- Truncated backpropagation through time ------------------------------------------------------

def batchify(sequence, batch_size: int, batch_first: bool = False):
    """One long sequence (N, ...) as ``batch_size`` parallel streams: (T, B, ...) with
    T = N // B (the rest dropped), stream b being ``sequence[b*T : (b+1)*T]``; (B, T, ...) with
    ``batch_first``. A view of ``sequence`` (NumPy or torch) when its first dimension is
    contiguous with the rest, as for any contiguous array.

    Consecutive chunks of time of the result are stateful batches: row b of chunk i+1 continues
    row b of chunk i.

    >>> batchify(np.arange(7), 2).tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    sequence = _series("sequence", sequence)
    batch_size = _integer("batch_size", batch_size)
    if sequence.ndim == 0:
        raise ValueError("cannot make streams of a 0-d sequence; expected at least one dimension (time)")
    steps = sequence.shape[0] // batch_size if batch_size > 0 else 0
    if steps == 0:
        raise ValueError(f"cannot make {batch_size} streams of at least one step from {sequence.shape[0]} steps")
    streams = sequence[:steps * batch_size].reshape(batch_size, steps, *sequence.shape[1:])
    if batch_first:
        return streams
    return streams.transpose(0, 1) if _is_torch(streams) else np.swapaxes(streams, 0, 1)


def tbptt_chunks(data, k: int, target_shift=None, dim: int = 0):
    """Walks ``data`` along its time dimension ``dim`` in consecutive chunks of ``k`` steps (the
    last one may be shorter), yielding views.

    With ``target_shift`` (e.g. 1 for next-step prediction) it yields ``(inputs, targets)``:
    ``data[t:t+k]`` and ``data[t+s:t+s+k]``, stopping where the targets run out.
    ``target_shift`` is a non-negative integer and ``data`` must hold at least one chunk with its
    targets, as in :func:`shift_split`; bad arguments raise here, not at the first ``next()``.

    >>> [c.tolist() for c in tbptt_chunks(np.arange(7), 3)]
    [[0, 1, 2], [3, 4, 5], [6]]
    >>> [(x.tolist(), y.tolist()) for x, y in tbptt_chunks(np.arange(7), 3, target_shift=1)]
    [([0, 1, 2], [1, 2, 3]), ([3, 4, 5], [4, 5, 6])]
    """
    # Checked here, not on the first next(): a bad argument fails where it is given.
    data, k, shift, dim, steps = _tbptt_walk(data, k, target_shift, dim)
    return _chunks(data, k, None if target_shift is None else shift, dim, steps)


def _tbptt_walk(data, k, target_shift, dim):
    """The checked arguments of a TBPTT walk and its number of input steps."""
    data = _series("data", data)
    k = _integer("k", k)
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    shift = 0 if target_shift is None else _integer("target_shift", target_shift)
    if shift < 0:
        raise ValueError(f"target_shift must be non-negative, got {shift}")
    dim = _axis("dim", dim, data.ndim)
    steps = data.shape[dim] - shift
    if steps < 1:
        what = "a chunk" if target_shift is None else f"a chunk with targets {shift} steps ahead"
        need = f"{shift + 1} step" + ("s" if shift else "")
        raise ValueError(f"{what} needs at least {need} along dim {dim}, got {data.shape[dim]}")
    return data, k, shift, dim, steps


def _chunks(data, k, target_shift, dim, steps):
    for start in range(0, steps, k):
        stop = min(start + k, steps)
        chunk = _take(data, start, stop, dim)
        yield chunk if target_shift is None else (chunk, _take(data, start + target_shift, stop + target_shift, dim))


def detach_state(state):
    """A recurrent state cut from the graph that made it: a tensor, a tuple/list of them (an
    LSTM's ``(h, c)``, states of several layers, nested), or None, with the same structure.
    The values stay the same (no copy); gradients stop there.

    >>> h = torch.zeros(1, 2, 3, requires_grad=True) * 2
    >>> detach_state((h, None))[0].requires_grad
    False
    """
    if state is None:
        return None
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a namedtuple takes its fields one by one
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, np.ndarray):  # fastrnn.numpy's states: no graph to cut
        return state
    if not _is_torch(state):
        raise TypeError(f"expected a recurrent state: a tensor or NumPy array, a tuple or list of them, or None; "
                        f"got {type(state).__name__}")
    return state.detach()


class StatefulBatches:
    """Truncated BPTT with stateful batches: walks ``data`` in chunks of ``k`` steps (as
    :func:`tbptt_chunks`) and holds the recurrent state between chunks, so the last state of
    chunk i is the initial state of chunk i+1. Assigning ``.state`` stores it detached, so the
    gradient of each chunk stops at its start. Each new pass over the data starts from
    ``initial_state`` (None: the module's zeros).

        walk = StatefulBatches(batchify(tokens, 32), k=100, target_shift=1)
        for epoch in range(epochs):
            for x, y in walk:                      # x, y: (<=100, 32)
                logits, state = model(x, walk.state)
                walk.state = state
                loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
                ...

    ``dim`` is the time dimension of ``data`` (1 for batch-first data).
    """

    def __init__(self, data, k: int, target_shift=None, dim: int = 0, initial_state=None):
        data, k, _, dim, _ = _tbptt_walk(data, k, target_shift, dim)
        self.data, self.k, self.target_shift, self.dim = data, k, target_shift, dim
        self.initial_state = initial_state
        self._state = detach_state(initial_state)

    @property
    def state(self):
        """The detached final state of the previous chunk (``initial_state`` at the start)."""
        return self._state

    @state.setter
    def state(self, value):
        self._state = detach_state(value)

    def reset(self):
        """Forgets the carried state (back to ``initial_state``)."""
        self._state = detach_state(self.initial_state)

    def __len__(self):
        _, k, _, _, steps = _tbptt_walk(self.data, self.k, self.target_shift, self.dim)
        return -(-steps // k)

    def __iter__(self):
        self.reset()
        return tbptt_chunks(self.data, self.k, self.target_shift, self.dim)


# ---- Initialisers, per gate block -----------------------------------------------------------------
# A recurrent weight (G*H, n) stacks G gate blocks of (H, n) (LSTM i,f,g,o; GRU r,z,n). Each
# block is one linear map, so the fan-out of a gate is H, not G*H as torch.nn.init would take.

def _blocks(weight, gates: int):
    if not _is_torch(weight):
        raise TypeError(f"expected a torch tensor as the weight, got {type(weight).__name__}")
    gates = _integer("gates", gates)
    if gates < 1:
        raise ValueError(f"gates must be positive, got {gates}")
    if weight.dim() != 2 or weight.shape[0] % gates:
        raise ValueError(f"expected a 2-D weight of {gates} stacked gate blocks, got shape {tuple(weight.shape)}")
    return weight.chunk(gates, 0) if gates > 1 else (weight,)


def _fill(weight, gates, gain, draw):
    import torch
    gain = _real("gain", gain)
    with torch.no_grad():
        for block in _blocks(weight, gates):
            if block.numel():  # an empty block has nothing to draw (and fan 0 would divide by zero)
                draw(block, block.shape[1], block.shape[0], gain)  # (block, fan_in, fan_out, gain)
    return weight


def xavier_uniform_(weight, gates: int = 1, gain: float = 1.0, generator=None):
    """Glorot/Xavier uniform per gate block: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)),
    fan_in = columns, fan_out = rows of one block (H). In place; returns ``weight``.

    >>> w = xavier_uniform_(torch.empty(4 * 16, 8), gates=4)   # an LSTM weight_ih
    """
    def draw(block, fan_in, fan_out, gain):
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        block.uniform_(-bound, bound, generator=generator)
    return _fill(weight, gates, gain, draw)


def xavier_normal_(weight, gates: int = 1, gain: float = 1.0, generator=None):
    """Glorot/Xavier normal per gate block: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    >>> w = xavier_normal_(torch.empty(3 * 16, 16), gates=3)   # a GRU weight_hh
    """
    def draw(block, fan_in, fan_out, gain):
        block.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
    return _fill(weight, gates, gain, draw)


def he_uniform_(weight, gates: int = 1, gain: float = math.sqrt(2.0), generator=None):
    """He/Kaiming uniform per gate block: U(-a, a), a = gain * sqrt(3 / fan_in); the default
    gain sqrt(2) suits ReLU.

    >>> w = he_uniform_(torch.empty(16, 8))
    """
    def draw(block, fan_in, fan_out, gain):
        bound = gain * math.sqrt(3.0 / fan_in)
        block.uniform_(-bound, bound, generator=generator)
    return _fill(weight, gates, gain, draw)


def he_normal_(weight, gates: int = 1, gain: float = math.sqrt(2.0), generator=None):
    """He/Kaiming normal per gate block: N(0, std^2), std = gain / sqrt(fan_in).

    >>> w = he_normal_(torch.empty(16, 8))
    """
    def draw(block, fan_in, fan_out, gain):
        block.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
    return _fill(weight, gates, gain, draw)


def orthogonal_(weight, gates: int = 1, gain: float = 1.0, generator=None):
    """A random orthogonal matrix per gate block (times ``gain``): for a block (H, n), orthonormal
    columns when H >= n (Q^T Q = I), orthonormal rows otherwise; Haar-distributed (QR of a
    Gaussian matrix with R's diagonal made positive).

    >>> w = orthogonal_(torch.empty(4 * 16, 16), gates=4)      # each 16x16 block orthogonal
    """
    import torch

    def draw(block, fan_in, fan_out, gain):
        rows, cols = block.shape
        gaussian = torch.randn(max(rows, cols), min(rows, cols), dtype=torch.float64, generator=generator)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
        block.copy_(gain * (q if rows >= cols else q.T))
    return _fill(weight, gates, gain, draw)


def identity_(weight, gates: int = 1, gain: float = 1.0):
    """``gain`` times the identity in each gate block (ones on the main diagonal for a
    non-square block): the IRNN's recurrent matrix (a ReLU RNN with W_hh = I, Le et al. 2015).

    >>> identity_(torch.empty(3, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    import torch

    def draw(block, fan_in, fan_out, gain):
        block.copy_(gain * torch.eye(*block.shape, dtype=block.dtype, device=block.device))
    return _fill(weight, gates, gain, draw)


_INITIALISERS = {"xavier_uniform": xavier_uniform_, "xavier_normal": xavier_normal_, "he_uniform": he_uniform_,
                 "he_normal": he_normal_, "orthogonal": orthogonal_, "identity": identity_}


def _gates(module) -> int:
    # torch.nn.RNNBase (and fastrnn.nn's subclasses) name the cell in `mode`; cells by class.
    import torch
    if isinstance(module, torch.nn.RNNBase):
        return {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    if isinstance(module, torch.nn.LSTMCell):
        return 4
    if isinstance(module, torch.nn.GRUCell):
        return 3
    if isinstance(module, torch.nn.RNNCell):
        return 1
    raise TypeError(f"expected a torch.nn or fastrnn.nn RNN, LSTM, GRU or cell, got {type(module).__name__}")


def _is_lstm(module) -> bool:
    return _gates(module) == 4


def forget_gate_bias_(module, value: float = 1.0):
    """Sets an LSTM's (or LSTMCell's) forget-gate bias to ``value`` in every layer and direction:
    the f block (rows H:2H) of ``bias_ih`` gets ``value`` and that of ``bias_hh`` zero, so the
    bias the gate sees (their sum) is ``value`` (Jozefowicz et al. 2015 suggest 1). In place;
    returns ``module``.

    >>> lstm = forget_gate_bias_(torch.nn.LSTM(8, 16), 1.0)
    >>> float((lstm.bias_ih_l0 + lstm.bias_hh_l0)[16:32].sum().detach())
    16.0
    """
    import torch
    if not _is_lstm(module):
        raise ValueError(f"forget_gate_bias_ needs an LSTM or LSTMCell, got {type(module).__name__}")
    value = _real("value", value)
    if not any(name.startswith("bias_ih") for name, _ in module.named_parameters()):
        raise ValueError(f"forget_gate_bias_ needs an LSTM with biases; this {type(module).__name__} has bias=False")
    hidden = module.hidden_size
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("bias_ih"):
                p[hidden:2 * hidden].fill_(value)
            elif name.startswith("bias_hh"):
                p[hidden:2 * hidden].zero_()
    return module


def init_rnn_(module, weight_ih="xavier_uniform", weight_hh="orthogonal", bias: float = 0.0,
              forget_bias=None, weight_hr="xavier_uniform", gain: float = 1.0, generator=None):
    """Initialises a recurrent layer or cell in place, per gate block: torch.nn's or fastrnn.nn's
    RNN, LSTM, GRU (stacked, bidirectional, with ``proj_size``) and their cells.

    ``weight_ih``, ``weight_hh`` and ``weight_hr`` (the LSTM projection) name an initialiser:
    "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal", "identity", or
    are callables ``f(weight, gates)``. Biases are set to ``bias``; for an LSTM, ``forget_bias``
    (when not None) then sets the forget gate's bias (:func:`forget_gate_bias_`). ``gain``
    scales the named initialisers (He's default gain sqrt(2) is kept when ``gain`` is 1).
    Returns ``module``.

        init_rnn_(lstm, forget_bias=1.0)                             # Xavier, orthogonal, f bias 1
        irnn = init_rnn_(nn.RNN(1, 100, nonlinearity="relu"),       # IRNN
                         weight_ih=lambda w, g: w.normal_(0, 0.001), weight_hh="identity")
    """
    import torch
    gates = _gates(module)
    # Every argument checked before the first weight changes.
    bias, gain = _real("bias", bias), _real("gain", gain)
    if forget_bias is not None:
        forget_bias = _real("forget_bias", forget_bias)
        if gates != 4:
            raise ValueError(f"forget_bias needs an LSTM or LSTMCell, got {type(module).__name__}")

    def method(spec, what):
        if callable(spec):
            return lambda w, g: spec(w, g)
        if not isinstance(spec, str) or spec not in _INITIALISERS:
            raise ValueError(f"unknown initialiser for {what}: {spec!r}; expected a callable or one of "
                             f"{sorted(_INITIALISERS)}")
        fn = _INITIALISERS[spec]
        if fn is identity_:
            return lambda w, g: fn(w, g, gain)
        if fn in (he_uniform_, he_normal_):
            return lambda w, g: fn(w, g, math.sqrt(2.0) * gain, generator)
        return lambda w, g: fn(w, g, gain, generator)

    init_ih, init_hh, init_hr = method(weight_ih, "weight_ih"), method(weight_hh, "weight_hh"), \
        method(weight_hr, "weight_hr")
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if name.startswith("weight_ih"):
                init_ih(p, gates)
            elif name.startswith("weight_hh"):
                init_hh(p, gates)
            elif name.startswith("weight_hr"):
                init_hr(p, 1)
            elif name.startswith("bias"):
                p.fill_(bias)
    if forget_bias is not None:
        forget_gate_bias_(module, forget_bias)
    return module


# ---- Regularisers and clipping ----------------------------------------------------------------------

def select_parameters(module, *patterns: str):
    """The parameters of ``module`` whose names match any of the glob ``patterns``, in
    registration order, e.g. the recurrent weights of every layer: ``"*weight_hh*"``.

    >>> model = torch.nn.LSTM(4, 8, num_layers=2)
    >>> len(select_parameters(model, "weight_hh_*"))
    2
    """
    import torch
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not patterns:
        raise TypeError("select_parameters needs at least one glob pattern, e.g. '*weight_hh*'")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"patterns must be strings, got {type(pattern).__name__}")
    return [p for name, p in module.named_parameters() if any(fnmatch.fnmatchcase(name, pat) for pat in patterns)]


def _tensors(params):
    import torch
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, torch.nn.Module):
        return list(params.parameters())
    expected = "a tensor, an iterable of tensors or a torch.nn.Module"
    try:
        tensors = list(params) if not isinstance(params, (str, bytes, np.ndarray)) else None
    except TypeError:
        tensors = None
    if tensors is None:
        raise TypeError(f"expected {expected}, got {type(params).__name__}")
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"expected {expected}, got an iterable holding {type(t).__name__}")
    return tensors


def l1_penalty(params):
    """The sum of absolute values of the given tensors (a tensor, an iterable of them, or a
    module's parameters), as a 0-d tensor with gradient sign(p). Add ``lambda * l1_penalty(...)``
    to the loss for an L1 penalty on those parameters only.

    >>> float(l1_penalty([torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])]))
    6.0
    """
    import torch
    tensors = _tensors(params)
    if not tensors:
        return torch.tensor(0.0)
    return torch.stack([t.abs().sum() for t in tensors]).sum()


def l2_penalty(params):
    """The sum of squares of the given tensors (no 1/2 factor: the gradient is 2p), as a 0-d
    tensor. The optimizers' ``weight_decay`` is the fused equivalent on whole parameter groups
    (with gradient ``weight_decay * p``).

    >>> float(l2_penalty([torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])]))
    14.0
    """
    import torch
    tensors = _tensors(params)
    if not tensors:
        return torch.tensor(0.0)
    return torch.stack([t.pow(2).sum() for t in tensors]).sum()


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """torch.nn.utils.clip_grad_value_: clamps every gradient in place to
    [-clip_value, clip_value] (NaN stays NaN); parameters without a gradient are skipped.
    Gradients of one device and dtype are clamped together (two multi-tensor passes).
    For clipping by norm use ``fastrnn.optim.clip_grad_norm_`` or the optimizers' ``max_grad_norm``.

    >>> p = torch.nn.Parameter(torch.zeros(3)); p.grad = torch.tensor([-5.0, 0.5, 5.0])
    >>> clip_grad_value_([p], 1.0); p.grad.tolist()
    [-1.0, 0.5, 1.0]
    """
    import torch
    # As torch reads it, so every value gives torch's result (a negative one clamps to
    # [|v|, -|v|], setting every gradient to clip_value; NaN makes them NaN).
    clip_value = float(clip_value)
    grads = [p.grad for p in _tensors(parameters) if p.grad is not None]
    groups = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    with torch.no_grad():
        for group in groups.values():
            if foreach is False:
                for g in group:
                    g.clamp_(min=-clip_value, max=clip_value)
            else:
                torch._foreach_clamp_min_(group, -clip_value)
                torch._foreach_clamp_max_(group, clip_value)
