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
same math in torch operations (_Gradients). Each op has a vmap rule (a loop over the mapped
dimension), and under functorch transforms the layers' autograd runs in transform_function's.

These are the low-level entry points; ``fastrnn.functional`` and ``fastrnn.nn`` validate
arguments and are the API to call. Tensors reach the compiled kernels zero-copy through
DLPack; outputs and workspaces are allocated here, with torch's allocator.
"""

import functools
import threading
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode
from torch.utils.dlpack import to_dlpack

from . import _C, _rnn_reference
from ._checks import CELLS, GATES, RESERVE_BLOCKS

__all__ = ["rnn_forward", "rnn_backward", "rnn_bidirectional_forward", "rnn_bidirectional_backward", "empty_cache"]

_CELL_NAMES = {code: name for name, code in CELLS.items()}
_LSTM = CELLS["lstm"]
_HUGE_PAGE_BYTES = 4 << 20


def _empty(shape, like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Every buffer the ops hand to a kernel comes from here (the tests fill them with NaN)."""
    # (new_empty, nbytes and is_cpu: a few microseconds less per call than torch.empty with
    # like's dtype and device, and .device.type, which batch-1 calls notice)
    t = like.new_empty(shape) if dtype is None else like.new_empty(shape, dtype=dtype)
    if t.nbytes >= _HUGE_PAGE_BYTES and t.is_cpu:
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


def _workspaces_for(sizes: List[int], like: Tensor) -> List[Tensor]:
    """One workspace per call, as slices of one (reused) buffer (a single call gets the whole
    buffer, which may be larger than it asked for: slicing costs a few microseconds)."""
    total = sum(sizes)
    if not like.is_cpu:
        buffer = _empty(total, like, torch.uint8)
    else:
        buffer = _workspaces.buffer
        if buffer is None or buffer.numel() < total:
            _workspaces.buffer = None  # let the old one go before taking a larger one
            buffer = _workspaces.buffer = _empty(total, like, torch.uint8)
    if len(sizes) == 1:
        return [buffer]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [buffer[s:s + n] for s, n in zip(starts, sizes)]


class _ReserveCache(threading.local):
    """Reserves (the gates a training forward saves for its backward) of earlier steps on this
    thread, handed out again once nothing holds them (CPU, 4 MiB and up).

    A reserve lives from a training forward to its backward, so unlike a workspace it cannot be
    one buffer per thread. But a training loop asks for the same sizes every step, and a fresh
    buffer costs its page faults and the kernel's zeroing of every page: for the LSTM at
    T100 B64 H512 (65 MB) ~20 ms of a ~160 ms forward. A kept buffer is reused only when its
    storage has no user left (the autograd graph that saved it has run its backward or been
    freed), which torch's storage use count tells; without that count nothing is kept.
    """

    def __init__(self):
        self.buffers: List[Tensor] = []  # flat, least recently used first


_reserves = _ReserveCache()
_RESERVES_KEPT = 16  # per thread: every layer and direction of a deep bidirectional stack
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _recycled(t: Tensor) -> Tensor:
    """A kept buffer as it is handed out again (the tests poison it like a fresh one)."""
    return t


def _reserve_buffer(shape: Tuple[int, int], like: Tensor, dtype: torch.dtype) -> Tensor:
    n = shape[0] * shape[1]
    if not like.is_cpu or _storage_use_count is None or n * dtype.itemsize < _HUGE_PAGE_BYTES:
        return _empty(shape, like, dtype)
    kept = _reserves.buffers
    # Free: referenced only by `t` and by the storage object asked for here.
    free = [_storage_use_count(t.untyped_storage()._cdata) == 2 for t in kept]
    for i, t in enumerate(kept):
        # Up to 1.5x larger buffers serve too, for batches whose total length varies a little.
        if free[i] and t.dtype == dtype and n <= t.numel() <= n + n // 2:
            kept.append(kept.pop(i))
            return _recycled(t[:n].view(shape))
    # A miss: the free buffers are of sizes the caller no longer asks for. Letting them go
    # bounds what is kept to about one step's reserves, however the sequence lengths vary.
    kept[:] = [t for t, f in zip(kept, free) if not f]
    t = _empty(n, like, dtype)
    kept.append(t)
    if len(kept) > _RESERVES_KEPT:
        del kept[0]  # a reserve still in use stays alive through its user, just not kept here
    return t.view(shape)


def empty_cache() -> None:
    """Releases the CPU memory this thread's kernel calls keep for reuse (scratch space and
    the saved gates of finished training steps)."""
    _workspaces.buffer = None
    _reserves.buffers = []


def _view(t: Optional[Tensor]):
    return None if t is None else to_dlpack(t)


def dtype_name(dtype: torch.dtype) -> str:
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
    """(reserve elements, forward workspace bytes, backward workspace bytes) of one call."""
    B, P = h0.shape
    # The CPU workspace holds per-thread slices, so its size depends on the OpenMP thread count,
    # which torch.set_num_threads may change between calls.
    on_cpu = x.is_cpu
    return _sizes_of(cell, x.dtype, _rows(x, batch_sizes), B, x.shape[-1], _hidden_size(weight_hh, cell),
                     0 if weight_hr is None else P, "cpu" if on_cpu else x.device.type,
                     _C.max_threads() if on_cpu else 0)


@functools.lru_cache(maxsize=256)
def _sizes_of(cell, dtype, rows, B, I, H, P, device, threads):
    # Pure in its arguments (threads: the count the C side will read), and asked again on every
    # call of a training or inference loop.
    return _C.rnn_buffer_sizes(cell, dtype_name(dtype), rows, B, I, H, P, device)


def _reserve_dtype(x: Tensor) -> torch.dtype:
    # float16/bfloat16 (CUDA) keep the saved gates and cell states in float32.
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _launch(x: Tensor) -> dict:
    """What a CUDA call needs besides its tensors: the caller's current stream on x's device, and
    whether float32 products may use TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)."""
    if not x.is_cuda:
        return {}
    return {"stream": torch.cuda.current_stream(x.device).cuda_stream,
            "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


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
    lstm = cell == _LSTM
    first = directions[0]
    B, P = first.h0.shape
    H = _hidden_size(first.weight_hh, cell)
    count = len(directions)
    y = _empty(x.shape[:-1] + (count * P,), x)
    y_halves = _per_direction(y, P, count)
    # The directions of one layer have the same sizes (the kernels check that each workspace fits).
    workspace_bytes = _buffer_sizes(cell, x, first.h0, first.weight_hh, first.weight_hr, batch_sizes)[1]
    workspaces = _workspaces_for([workspace_bytes] * count, x)
    width = _reserve_width(cell, H, first.weight_hr is not None, training)
    rows = _rows(x, batch_sizes) if width else 0
    launch = _launch(x)
    x_view, batch_sizes_view = to_dlpack(x), _view(batch_sizes)
    calls, results = [], []
    for d, y_half, workspace in zip(directions, y_halves, workspaces):
        h_n = _empty((B, P), x)
        c_n = _empty((B, H), x) if lstm else x.new_empty(0) if placeholders else None
        reserve = (_reserve_buffer((rows, width), x, _reserve_dtype(x)) if width
                   else x.new_empty(0) if placeholders else None)
        calls.append({**launch,
            "reverse": d.reverse, "x": x_view, "h0": to_dlpack(d.h0), "c0": _view(d.c0) if lstm else None,
            "weight_ih": to_dlpack(d.weight_ih), "weight_hh": to_dlpack(d.weight_hh), "bias_ih": _view(d.bias_ih),
            "bias_hh": _view(d.bias_hh), "weight_hr": _view(d.weight_hr), "batch_sizes": batch_sizes_view,
            "recurrent_mask": _view(d.recurrent_mask), "y": to_dlpack(y_half), "h_n": to_dlpack(h_n),
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
    lstm = cell == _LSTM
    P = directions[0].h0.shape[1]
    dx = _empty(x.shape, x)
    y_halves, dy_halves = _per_direction(y, P, len(directions)), _per_direction(dy, P, len(directions))
    sizes = [_buffer_sizes(cell, x, d.h0, d.weight_hh, d.weight_hr, batch_sizes)[2] for d in directions]
    workspaces = _workspaces_for(sizes, x)
    calls, results = [], []
    for k, d in enumerate(directions):
        grads = (_empty(d.h0.shape, d.h0),
                 _empty(d.c0.shape, d.c0) if lstm else x.new_empty(0),
                 _empty(d.weight_ih.shape, d.weight_ih),
                 _empty(d.weight_hh.shape, d.weight_hh),
                 _empty(d.weight_ih.shape[0], x) if has_bias_ih else x.new_empty(0),
                 _empty(d.weight_ih.shape[0], x) if has_bias_hh else x.new_empty(0),
                 _empty(d.weight_hr.shape, d.weight_hr) if d.weight_hr is not None else x.new_empty(0))
        dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = grads
        calls.append({**_launch(x),
            "reverse": d.reverse, "x": _view(x), "h0": _view(d.h0), "c0": _view(d.c0 if lstm else None),
            "weight_ih": _view(d.weight_ih), "weight_hh": _view(d.weight_hh), "weight_hr": _view(d.weight_hr),
            "batch_sizes": _view(batch_sizes), "recurrent_mask": _view(d.recurrent_mask),
            "y": _view(y_halves[k]),
            "reserve": _view(reserves[k] if reserves[k].numel() else None), "dy": _view(dy_halves[k]),
            "dh_n": _view(dh_ns[k]), "dc_n": _view(dc_ns[k] if lstm else None), "dx": _view(dx), "dh0": _view(dh0),
            "dc0": _view(dc0 if lstm else None), "dweight_ih": _view(dw_ih), "dweight_hh": _view(dw_hh),
            "dbias_ih": _view(db_ih if has_bias_ih else None), "dbias_hh": _view(db_hh if has_bias_hh else None),
            "dweight_hr": _view(dw_hr if d.weight_hr is not None else None), "workspace": _view(workspaces[k])})
        results.append(grads)
    _C.rnn_backward(cell, calls)
    return dx, results


def _fake_forward(x, batch_sizes, cell, training, directions):
    P = directions[0].h0.shape[1]
    H = _hidden_size(directions[0].weight_hh, cell)
    y = x.new_empty(x.shape[:-1] + (len(directions) * P,))
    results = []
    for d in directions:
        c_n = d.h0.new_empty(d.h0.shape[0], H) if cell == _LSTM else x.new_empty(0)
        width = _reserve_width(cell, H, d.weight_hr is not None, training)
        reserve = x.new_empty(_rows(x, batch_sizes), width, dtype=_reserve_dtype(x)) if width else x.new_empty(0)
        results.append((torch.empty_like(d.h0), c_n, reserve))
    return y, results


def _fake_backward(x, cell, has_bias_ih, has_bias_hh, directions):
    results = []
    for d in directions:
        G = d.weight_ih.shape[0]
        results.append((torch.empty_like(d.h0), torch.empty_like(d.c0) if cell == _LSTM else x.new_empty(0),
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


# ---- Eager training: autograd.Function around the op bodies ------------------------------------
# torch.library's autograd wrapper and dispatch of a custom op cost a few hundred microseconds a
# training step on this kind of machine, several times torch.nn.LSTM's whole per-call overhead,
# and the first call of one imports torch._dynamo (seconds). Plain tensors in eager mode take
# autograd.Functions around the same bodies instead, and inference calls the bodies directly;
# torch.compile, torch.jit.trace, tensor subclasses (meta, fake), dispatch modes and functorch
# transforms keep the custom ops, the only calls they can see.

# Not in every torch 2.x: where it is missing, every call takes the custom ops.
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_is_tracing = torch._C._is_tracing  # torch.jit.trace


def eager(x: Tensor) -> bool:
    """Whether a call on x may run the op bodies outside the dispatcher: directly for inference,
    inside an autograd.Function for training. (is_cpu, is_cuda: a device object costs a batch-1
    call a few hundred nanoseconds.)"""
    return (_functorch_active is not None and type(x) is Tensor and (x.is_cpu or x.is_cuda)
            and not torch.compiler.is_compiling() and not _is_tracing() and _current_dispatch_mode() is None
            and not _functorch_active())


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


def transform_function(name: str, op, setup_context, backward):
    """An autograd.Function running the custom op `op` with its autograd rule (setup_context,
    backward), for functorch transforms (torch.func.grad, vjp, jacrev, vmap): they need the
    setup_context form, which torch.library's autograd wrapper of a custom op lacks (through it
    grad and vjp fail). The op runs below that wrapper; vmap meets the op and its vmap rule."""

    def forward(*inputs):
        with torch.no_grad():
            return op(*inputs)

    return type(name, (torch.autograd.Function,), {
        "generate_vmap_rule": True, "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context), "backward": staticmethod(backward)})


def script_error(module) -> RuntimeError:
    """What torch.jit.script of any fastrnn.nn module raises (from __prepare_scriptable__, which
    it calls on every submodule first): their forwards call the kernels from Python, which
    TorchScript cannot compile."""
    return RuntimeError(f"fastrnn.nn.{type(module).__name__} cannot be compiled by torch.jit.script: its forward "
                        f"calls fastrnn's kernels from Python, which TorchScript cannot compile. Use torch.jit.trace, "
                        f"torch.compile or torch.export instead")


def transformed() -> bool:
    """Whether functorch transforms are active (outside torch.compile): a training call then
    takes the op through transform_function's autograd.Function (rnn_forward_transformed)."""
    return not torch.compiler.is_compiling() and _functorch_active is not None and _functorch_active()


def tracing(tensors) -> bool:
    """Whether torch.jit.trace records this call with a gradient wanted: a traced graph keeps the
    training flag as a constant whatever the grad mode it runs in (and its check replays it under
    no_grad), so while tracing a call with any input that requires grad saves for backward."""
    return (not torch.compiler.is_compiling() and _is_tracing()
            and any(t is not None and t.requires_grad for t in tensors))


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
    return (cell == _LSTM and not bidirectional and not projected and not packed and x.dtype == torch.float32
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


class _Layer:
    """What a layer's gradients depend on besides tensors (see _Gradients)."""

    def __init__(self, cell: int, reverses: Tuple[bool, ...], has_bias_ih: bool, has_bias_hh: bool):
        self.cell, self.reverses = cell, reverses
        self.has_bias_ih, self.has_bias_hh = has_bias_ih, has_bias_hh


# Per direction, _Gradients takes these tensors, in this order, after (x, batch_sizes, y, dy).
_DIRECTION_INPUTS = ("h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "recurrent_mask",
                     "reserve", "dh_n", "dc_n")
_PRIMALS = 7  # the first seven: what the layer differentiates with respect to, in its gradients' order


class _Gradients(torch.autograd.Function):
    """A layer's first-order gradients as a differentiable function of its inputs and of the
    incoming output gradients: the forward is the backward kernels (the op), the backward
    differentiates fastrnn._rnn_reference, the same math in torch operations, twice.

    Used where a backward itself needs a derivative (create_graph, functorch transforms), so a
    second derivative is right instead of raising, and the kernels still compute the first one.
    apply(_Layer, x, batch_sizes, y, dy, *per direction the _DIRECTION_INPUTS) returns the op's
    gradients: dx, then per direction (dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh,
    dweight_hr), empty where the layer has no such input."""

    generate_vmap_rule = True

    @staticmethod
    def forward(layer, x, batch_sizes, y, dy, *tensors):
        per = [tensors[k:k + len(_DIRECTION_INPUTS)] for k in range(0, len(tensors), len(_DIRECTION_INPUTS))]
        flags = (layer.cell, layer.has_bias_ih, layer.has_bias_hh)
        if len(per) == 1:
            h0, c0, w_ih, w_hh, _, _, w_hr, mask, reserve, dh_n, dc_n = per[0]
            call = rnn_backward_impl if eager(x) else rnn_backward
            return tuple(call(x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, layer.cell,
                              layer.reverses[0], layer.has_bias_ih, layer.has_bias_hh, mask))
        (h0, c0, w_ih, w_hh, _, _, w_hr, mask, reserve, dh_n, dc_n), (h0_r, c0_r, w_ih_r, w_hh_r, _, _, w_hr_r, mask_r,
                                                                      reserve_r, dh_n_r, dc_n_r) = per
        call = rnn_bidirectional_backward_impl if eager(x) else rnn_bidirectional_backward
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
        lstm = layer.cell == _LSTM
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
    lstm = cell == _LSTM
    y = _empty(x.shape[:-1] + (P,), x)
    h_n = _empty((B, P), x)
    c_n = _empty((B, _hidden_size(weight_hh, cell)), x) if lstm else None
    workspace = _workspaces_for([_buffer_sizes(cell, x, h0, weight_hh, weight_hr, batch_sizes)[1]], x)[0]
    _C.rnn_inference(cell, reverse, to_dlpack(x), to_dlpack(h0), _view(c0) if lstm else None, to_dlpack(weight_ih),
                     to_dlpack(weight_hh), _view(bias_ih), _view(bias_hh), _view(weight_hr), _view(batch_sizes), None,
                     to_dlpack(y), to_dlpack(h_n), _view(c_n), to_dlpack(workspace))
    return y, h_n, c_n


def _one_step_sizes(cell: int, x: Tensor, hidden_size: int):
    """_buffer_sizes of one step of a cell, x (B, I) on the CPU."""
    B = x.shape[0]
    return _sizes_of(cell, x.dtype, B, B, x.shape[1], hidden_size, 0, "cpu", _C.max_threads())


def _cell_forward(cell: int, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                  bias_ih: Optional[Tensor], bias_hh: Optional[Tensor], training: bool):
    """One step of a cell on the CPU: (h, c, reserve); c None unless LSTM, reserve None unless
    training and the cell saves gates (Elman's backward reads h instead)."""
    B, H = h0.shape
    h = _empty((B, H), x)
    c = _empty((B, H), x) if cell == _LSTM else None
    width = _reserve_width(cell, H, False, training)
    reserve = _empty((B, width), x) if width else None
    workspace = _workspaces_for([_one_step_sizes(cell, x, H)[1]], x)[0]
    _C.rnn_cell_forward(cell, to_dlpack(x), to_dlpack(h0), _view(c0), to_dlpack(weight_ih), to_dlpack(weight_hh),
                        _view(bias_ih), _view(bias_hh), to_dlpack(h), _view(c), to_dlpack(workspace), _view(reserve))
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
        ctx.biases = (bias_ih, bias_hh)  # unsaved, as _setup_context's
        ctx.set_materialize_grads(False)
        return (h, c) if cell == _LSTM else h

    @staticmethod
    def backward(ctx, dh, dc=None):
        x, h0, c0, weight_ih, weight_hh, h, reserve = ctx.saved_tensors
        h = h0 if h is None else h  # a GRU's or LSTM's kernel takes h's shape from it but reads nothing
        if dh is None:  # only c reached the loss
            dh = torch.zeros_like(h0)
        lstm = ctx.cell == _LSTM
        bias_ih, bias_hh = ctx.biases
        if torch.is_grad_enabled():
            # create_graph: the layers' backward kernels as a differentiable function (_Gradients).
            dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, _ = _Gradients.apply(
                _Layer(ctx.cell, (False,), bias_ih is not None, bias_hh is not None), x.unsqueeze(0), None,
                h.unsqueeze(0), dh.contiguous().unsqueeze(0), h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, None,
                None, x.new_empty(0) if reserve is None else reserve, torch.zeros_like(h0),
                (torch.zeros_like(c0) if dc is None else dc.contiguous()) if lstm else None)
            return (None, dx[0], dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if bias_ih is not None else None,
                    db_hh if bias_hh is not None else None)
        H = h0.shape[1]
        dx, dh0 = _empty(x.shape, x), _empty(h0.shape, h0)
        dc0 = _empty(c0.shape, c0) if lstm else None
        dw_ih, dw_hh = _empty(weight_ih.shape, weight_ih), _empty(weight_hh.shape, weight_hh)
        db_ih, db_hh = (None if b is None else _empty(weight_ih.shape[0], x) for b in ctx.biases)
        workspace = _workspaces_for([_one_step_sizes(ctx.cell, x, H)[2]], x)[0]
        _C.rnn_cell_backward(ctx.cell, to_dlpack(x), to_dlpack(h0), _view(c0), to_dlpack(weight_ih),
                             to_dlpack(weight_hh), to_dlpack(h), _view(reserve), to_dlpack(dh.contiguous()),
                             _view(None if dc is None else dc.contiguous()), to_dlpack(dx), to_dlpack(dh0),
                             _view(dc0), to_dlpack(dw_ih), to_dlpack(dw_hh), _view(db_ih), _view(db_hh),
                             to_dlpack(workspace))
        return None, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def cell_training(cell: int, x: Tensor, h0: Tensor, c0: Optional[Tensor], weight_ih: Tensor, weight_hh: Tensor,
                  bias_ih: Optional[Tensor], bias_hh: Optional[Tensor]):
    """One differentiable step of a cell, x (B, I), on contiguous CPU tensors in eager mode (see
    eager()): h, or (h, c) for an LSTM."""
    return _CellStep.apply(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)


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
    lstm = ctx.cell == _LSTM
    has_bias_ih, has_bias_hh = bias_ih is not None, bias_hh is not None
    dy, dh_n, dc_n = _incoming(dy, y), _incoming(dh_n, h0), _incoming(dc_n, c0) if lstm else None
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph, functorch
        grads = _Gradients.apply(_Layer(ctx.cell, (ctx.reverse,), has_bias_ih, has_bias_hh), x, batch_sizes, y, dy,
                                 h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, mask, reserve, dh_n, dc_n)
    else:
        grads = (rnn_backward_impl if eager(y) else rnn_backward)(
            x, h0, c0, weight_ih, weight_hh, weight_hr, batch_sizes, y, reserve, dy, dh_n, dc_n, ctx.cell,
            ctx.reverse, has_bias_ih, has_bias_hh, mask)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = grads
    return (dx, dh0, dc0 if lstm else None, dw_ih, dw_hh, db_ih if has_bias_ih else None,
            db_hh if has_bias_hh else None, dw_hr if weight_hr is not None else None, None, None, None, None,
            None)


rnn_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def rnn_forward_eager(*inputs):
    """rnn_forward for plain tensors in eager mode (see eager()): every argument, the optional
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
    """rnn_forward's training call under functorch transforms (see transformed()): every
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
    lstm = ctx.cell == _LSTM
    has_bias_ih, has_bias_hh = bias_ih is not None, bias_hh is not None
    dy = _incoming(dy, y)
    dh_n, dc_n = _incoming(dh_n, h0), _incoming(dc_n, c0) if lstm else None
    dh_n_r, dc_n_r = _incoming(dh_n_r, h0_r), _incoming(dc_n_r, c0_r) if lstm else None
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph, functorch
        dx, *grads = _Gradients.apply(
            _Layer(ctx.cell, (False, True), has_bias_ih, has_bias_hh), x, batch_sizes, y, dy,
            h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, mask, reserve, dh_n, dc_n,
            h0_r, c0_r, weight_ih_r, weight_hh_r, bias_ih_r, bias_hh_r, weight_hr_r, mask_r, reserve_r, dh_n_r, dc_n_r)
    else:
        dx, *grads = (rnn_bidirectional_backward_impl if eager(y) else rnn_bidirectional_backward)(
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
    """rnn_bidirectional_forward for plain tensors in eager mode (see eager()): every argument,
    both optional masks included, positionally."""
    return _Function.apply(rnn_bidirectional_forward_impl, _setup_bidirectional_context,
                           _autograd_bidirectional_backward, *inputs)


_RnnBidirectionalForwardTransformed = transform_function(
    "_RnnBidirectionalForwardTransformed", rnn_bidirectional_forward, _unmaterialized(_setup_bidirectional_context),
    _autograd_bidirectional_backward)


def rnn_bidirectional_forward_transformed(*inputs):
    """rnn_bidirectional_forward's training call under functorch transforms (see transformed()):
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
