"""fastrnn: fused CPU and CUDA kernels for Elman, LSTM and GRU networks.

Three ways in:

* ``fastrnn.nn`` -- drop-in ``torch.nn.RNN``, ``LSTM``, ``GRU`` and their cells;
* ``fastrnn.functional`` -- torch functions (``lstm``, ``gru``, ``rnn``), differentiable with
  autograd and ``torch.compile``;
* ``fastrnn.optim`` -- drop-in ``torch.optim`` SGD, Adam, AdamW, RMSprop, Adagrad with fused
  steps, and a fused ``clip_grad_norm_``;
* ``fastrnn.numpy`` -- the same kernels on NumPy arrays, forward and backward, with no torch;
* ``fastrnn.utils`` -- training utilities: windows over long series, truncated BPTT with
  stateful batches, per-gate initialisers, L1/L2 penalties, clipping by value;
* ``fastrnn.build_info()`` -- how this copy was built and what it runs on.

Importing ``fastrnn`` does not import torch; ``fastrnn.nn`` and ``fastrnn.functional`` do,
when first used.
"""

import importlib as _importlib

from . import _C

__version__ = _C.build_info()["version"]
__all__ = ["build_info", "__version__", "functional", "nn", "numpy", "ops", "optim", "utils"]

_LAZY_SUBMODULES = ("functional", "nn", "numpy", "ops", "optim", "utils")


def build_info():
    """How this copy of fastrnn was built and what it finds on this machine.

    Returns a dict with ``version``, ``compiler``, ``openmp`` (the OpenMP version),
    ``omp_max_threads``, ``isa`` (the CPU instruction set in use) and ``isa_best``,
    ``cuda_compiled``, ``cuda_archs``, ``cuda_runtime``, ``cuda_device_count``,
    ``cuda_devices`` (names) and ``cuda_device_available``.
    """
    info = dict(_C.build_info())
    info["cuda_device_available"] = info["cuda_device_count"] > 0
    return info


def __getattr__(name):
    # Submodules load on first use, so `import fastrnn` stays light and torch-free.
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastrnn' has no attribute '{name}'")
