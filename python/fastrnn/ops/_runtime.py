"""What every op family shares: the buffers a kernel call gets (allocation, the CPU workspace and
reserve caches), DLPack views, CUDA streams, the dtypes the kernels take, and the one chooser of
the path a call takes (the op body directly, an autograd.Function around it, the custom op) with
the autograd helpers around it.

Internal to fastrnn: the family modules (ops.rnn, ops.cell, ops.conv, ops.pool), fastrnn.functional,
fastrnn.nn and fastrnn.optim use the names without a leading underscore, most through
``fastrnn.ops``. ``empty`` and ``recycled`` are looked up through this module at each call (as
``_runtime.empty``), so tests/conftest.py can replace them to poison every output and workspace.
"""

import threading
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode
from torch.utils.dlpack import to_dlpack

from .. import _C
from .._checks import device_mismatch  # noqa: F401 (torch-free, shared with fastrnn.numpy)

HUGE_PAGE_BYTES = 4 << 20
CPU_DTYPES = (torch.float32, torch.float64)
# CUDA also runs float16 and bfloat16 (float32 arithmetic and cell state inside). The order is
# the one error messages list them in.
CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supported_dtypes(x: Tensor):
    """The dtypes fastrnn's kernels take for tensors on x's device."""
    return CUDA_DTYPES if x.device.type == "cuda" else CPU_DTYPES


def dtype_name(dtype) -> str:
    """float32 for torch.float32 (a name given as a string stays as it is)."""
    return str(dtype).replace("torch.", "")


# ---- Buffers --------------------------------------------------------------------------------


def empty(shape, like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Every buffer the ops hand to a kernel comes from here (the tests fill them with NaN)."""
    # (new_empty, nbytes and is_cpu: a few microseconds less per call than torch.empty with
    # like's dtype and device, and .device.type, which batch-1 calls notice)
    t = like.new_empty(shape) if dtype is None else like.new_empty(shape, dtype=dtype)
    if t.nbytes >= HUGE_PAGE_BYTES and t.is_cpu:
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


def workspaces_for(sizes: List[int], like: Tensor) -> List[Tensor]:
    """One workspace per call, as slices of one (reused) buffer (a single call gets the whole
    buffer, which may be larger than it asked for: slicing costs a few microseconds)."""
    total = sum(sizes)
    if not like.is_cpu:
        buffer = empty(total, like, torch.uint8)
    else:
        buffer = _workspaces.buffer
        if buffer is None or buffer.numel() < total:
            _workspaces.buffer = None  # let the old one go before taking a larger one
            buffer = _workspaces.buffer = empty(total, like, torch.uint8)
    if len(sizes) == 1:
        return [buffer]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [buffer[s:s + n] for s, n in zip(starts, sizes)]


class _ReserveCache(threading.local):
    """Reserves (the gates a training forward saves for its backward) of earlier steps on this
    thread, handed out again once nothing holds them (CPU, HUGE_PAGE_BYTES and up).

    A reserve lives from a training forward to its backward, so unlike a workspace it cannot be
    one buffer per thread. But a training loop asks for the same sizes every step, and a fresh
    buffer costs its page faults and the kernel's zeroing of every page, a noticeable part of a
    large training forward (see bench/NOTES.md, reserve reuse). A kept buffer is reused only when
    its storage has no user left (the autograd graph that saved it has run its backward or been
    freed), which torch's storage use count tells; without that count nothing is kept.
    """

    def __init__(self):
        self.buffers: List[Tensor] = []  # flat, least recently used first


_reserves = _ReserveCache()
_RESERVES_KEPT = 16  # per thread: every layer and direction of a deep bidirectional stack
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def recycled(t: Tensor) -> Tensor:
    """A kept buffer as it is handed out again (the tests poison it like a fresh one)."""
    return t


def reserve_buffer(shape: Tuple[int, int], like: Tensor, dtype: torch.dtype) -> Tensor:
    n = shape[0] * shape[1]
    if not like.is_cpu or _storage_use_count is None or n * dtype.itemsize < HUGE_PAGE_BYTES:
        return empty(shape, like, dtype)
    kept = _reserves.buffers
    # Free: referenced only by `t` and by the storage object asked for here.
    free = [_storage_use_count(t.untyped_storage()._cdata) == 2 for t in kept]
    for i, t in enumerate(kept):
        # Up to 1.5x larger buffers serve too, for batches whose total length varies a little.
        if free[i] and t.dtype == dtype and n <= t.numel() <= n + n // 2:
            kept.append(kept.pop(i))
            return recycled(t[:n].view(shape))
    # A miss: the free buffers are of sizes the caller no longer asks for. Letting them go
    # bounds what is kept to about one step's reserves, however the sequence lengths vary.
    kept[:] = [t for t, f in zip(kept, free) if not f]
    t = empty(n, like, dtype)
    kept.append(t)
    if len(kept) > _RESERVES_KEPT:
        del kept[0]  # a reserve still in use stays alive through its user, just not kept here
    return t.view(shape)


def empty_cache() -> None:
    """Releases the CPU memory this thread's kernel calls keep for reuse (scratch space and
    the saved gates of finished training steps)."""
    _workspaces.buffer = None
    _reserves.buffers = []


def view(t: Optional[Tensor]):
    """A tensor as the kernels take it (DLPack), None as None."""
    return None if t is None else to_dlpack(t)


def contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def stream(t: Tensor) -> int:
    """The caller's current CUDA stream on t's device (0 for a CPU tensor)."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


# ---- The path of a call -----------------------------------------------------------------------
# torch.library's autograd wrapper and dispatch of a custom op cost a few hundred microseconds a
# training step on a small CPU, several times torch.nn's whole per-call overhead, and the first
# call of one imports torch._dynamo (seconds). Plain tensors in eager mode take autograd.Functions
# around the op bodies instead, and calls without autograd the bodies directly; torch.compile,
# torch.jit.trace, tensor subclasses (meta, fake), dispatch modes and functorch transforms keep
# the custom ops, the only calls they can see (transforms through transform_function's).

DIRECT, FUNCTION, TRANSFORMED, OP = 0, 1, 2, 3  # what choose() returns, in this order

# Not in every torch 2.x: where it is missing, every call takes the custom ops.
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_is_tracing = torch._C._is_tracing  # torch.jit.trace


def any_requires_grad(tensors) -> bool:
    """Whether any of these tensors (None entries allowed) requires grad. Autograd wants the graph
    of a call where `torch.is_grad_enabled() and any_requires_grad(tensors)`: the callers test the
    grad mode first, so a call without autograd pays no function call for it."""
    return any(t is not None and t.requires_grad for t in tensors)


def choose(x: Tensor, graph: bool) -> int:
    """The path of a call on x, `graph` whether autograd wants its graph (any_requires_grad):

    DIRECT       the op body, outside the dispatcher: plain tensor, eager mode, no graph;
    FUNCTION     an autograd.Function around the body: the same with a graph;
    TRANSFORMED  functorch transforms active: transform_function's autograd.Function;
    OP           the custom op: torch.compile, torch.jit.trace, tensor subclasses, dispatch modes.

    (The first test reads is_cpu and is_cuda: a device object costs a batch-1 call a few hundred
    nanoseconds. torch.jit.trace records only dispatcher calls: a body would leave its output's
    allocation in the graph without the kernel, and an autograd.Function fails to trace.)"""
    if (_functorch_active is not None and type(x) is Tensor and (x.is_cpu or x.is_cuda)
            and not torch.compiler.is_compiling() and not _is_tracing() and _current_dispatch_mode() is None
            and not _functorch_active()):
        return FUNCTION if graph else DIRECT
    return TRANSFORMED if transformed() else OP


def transformed() -> bool:
    """Whether functorch transforms are active (outside torch.compile)."""
    return not torch.compiler.is_compiling() and _functorch_active is not None and _functorch_active()


def tracing(tensors) -> bool:
    """Whether torch.jit.trace records this call with a gradient wanted: a traced graph keeps the
    training flag as a constant whatever the grad mode it runs in (and its check replays it under
    no_grad), so while tracing a call with any input that requires grad saves for backward."""
    return not torch.compiler.is_compiling() and _is_tracing() and any_requires_grad(tensors)


def backward_entry(t: Tensor, body, op, transformed_op):
    """Which backward an autograd rule calls (t one of its saved tensors): the op's body outside
    the dispatcher when no graph of the backward itself is recorded (create_graph) or traced; the
    op where one is (a backward op without a derivative of its own then fails loudly instead of
    giving zeros, and one with a derivative has it); transformed_op under functorch transforms,
    which run the backward with grad on."""
    path = choose(t, torch.is_grad_enabled())
    return body if path == DIRECT else transformed_op if path == TRANSFORMED else op


# ---- autograd.Functions around the ops --------------------------------------------------------


def eager_function(name: str, body, setup_context, backward):
    """An autograd.Function running an op's body and its autograd rule (setup_context, backward)
    for eager training (choose's FUNCTION); its inputs are the op's, so ctx.needs_input_grad
    reads as the op's."""

    def forward(ctx, *inputs):
        output = body(*inputs)
        setup_context(ctx, inputs, output)
        return output

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                    "backward": staticmethod(backward)})


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


def no_setup(ctx, inputs, output) -> None:
    """The setup_context of an op without a derivative of its own."""


def no_derivative(ctx, *grads):
    raise RuntimeError("fastrnn: the backward of this op has no derivative of its own (no double backward)")
