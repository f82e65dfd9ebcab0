"""The persistent CUDA recurrence (csrc/cuda/rnn_persistent.cuh): which path a call takes, an
A/B switch, and the grid-barrier floor. Private: used by the tests and bench/cuda_persistent.py.

The CUDA forward of an RNN layer runs its whole recurrence in one cooperative launch when
``plan(...)["use"]`` is true, and its backward when ``plan(...)["backward"]["use"]`` is true;
each falls back to the step-wise kernels otherwise, independently of the other.
``FASTRNN_CUDA_PERSISTENT=0`` in the environment (read once) forces the step-wise path;
``forced(False)`` does the same inside one process.
"""

import contextlib

from . import _C
from ._checks import CELLS
from .ops import dtype_name


def plan(cell: str, dtype, steps: int, batch: int, hidden_size: int, training: bool = False,
         device: int = 0) -> dict:
    """How the CUDA forward of one layer-direction would run: dict(use, reason, blocks, units,
    batch_chunk, smem_bytes), and under "backward" the same dict for its backward (which runs
    after a training forward). ``dtype`` a torch dtype or its name ("float32")."""
    def one(backward):
        return dict(_C.cuda_rnn_persistent_plan(CELLS[cell], dtype_name(dtype), steps, batch, hidden_size,
                                                training, backward, device))
    out = one(False)
    out["backward"] = one(True)
    return out


def enabled() -> bool:
    return _C.cuda_rnn_persistent_enabled()


@contextlib.contextmanager
def forced(on: bool):
    """Within the block, the persistent path is used where it applies (True) or never (False)."""
    _C.set_cuda_rnn_persistent(1 if on else 0)
    try:
        yield
    finally:
        _C.set_cuda_rnn_persistent(-1)


def grid_barrier_us(device: int = 0, blocks: int = 0, steps: int = 10000, stream: int = 0) -> float:
    """Microseconds per grid-wide barrier of a cooperative launch that does nothing else
    (``blocks`` 0: one per SM): the floor of one persistent step. Synchronises ``stream``."""
    return _C.cuda_grid_barrier_us(device, blocks, steps, stream)
