"""fastrnn's kernels as torch custom ops (``torch.ops.fastrnn.*``), with fake (meta) kernels and
autograd, so ``torch.compile``, ``torch.library.opcheck`` and ``gradcheck`` see real ops.

One module per op family over one runtime:

* ``ops.rnn``: ``rnn_forward`` / ``rnn_backward`` (one layer, one direction) and
  ``rnn_bidirectional_forward`` / ``rnn_bidirectional_backward`` (both directions side by side);
* ``ops.cell``: one step of a cell on the CPU (fastrnn.nn's cells);
* ``ops.conv``: ``conv2d`` and the fused ``conv_relu_pool2d``, CPU and CUDA;
* ``ops.pool``: ``max_pool2d`` and ``avg_pool2d``;
* ``ops._runtime``: buffers and their caches, DLPack views, streams, the dtypes the kernels take,
  and ``choose``, the one chooser of a call's path (the op body directly, an autograd.Function
  around it, or the custom op), with the autograd helpers every family uses.

These are the low-level entry points; ``fastrnn.functional`` and ``fastrnn.nn`` validate
arguments and are the API to call. The names below without ``__all__`` are fastrnn's internal
API for those layers.
"""

from .. import _C
from .._checks import CELLS
from ._runtime import (CPU_DTYPES, CUDA_DTYPES, DIRECT, FUNCTION, OP, TRANSFORMED, choose, contiguous,
                       any_requires_grad, device_mismatch, dtype_name, empty_cache, stream, supported_dtypes, tracing,
                       transformed)
from .rnn import (rnn_backward, rnn_backward_impl, rnn_bidirectional_backward, rnn_bidirectional_backward_impl,
                  rnn_bidirectional_forward, rnn_bidirectional_forward_eager, rnn_bidirectional_forward_impl,
                  rnn_bidirectional_forward_transformed, rnn_bidirectional_inference, rnn_forward, rnn_forward_eager,
                  rnn_forward_impl, rnn_forward_transformed, rnn_inference)
from .cell import cell_inference, cell_training
from . import conv, pool  # noqa: F401 - registers their custom ops

__all__ = ["rnn_forward", "rnn_backward", "rnn_bidirectional_forward", "rnn_bidirectional_backward", "empty_cache"]
