"""Where the RNN kernels run, checked without a GPU: the buffer-size query per device, and the
dtypes each device takes (CUDA adds float16 and bfloat16; the CPU keeps refusing them)."""

import pytest
import torch

import fastrnn
import fastrnn.functional as F
from fastrnn import _C
from fastrnn._checks import CELLS, RESERVE_BLOCKS

CUDA_BUILD = fastrnn.build_info()["cuda_compiled"]


@pytest.mark.skipif(not CUDA_BUILD, reason="a CUDA build answers the CUDA size query")
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_cuda_buffer_sizes(cell, dtype):
    rows, B, I, H = 91, 7, 13, 37
    reserve, forward, backward = _C.rnn_buffer_sizes(CELLS[cell], dtype, rows, B, I, H, 0, "cuda")
    assert reserve == rows * RESERVE_BLOCKS[cell] * H  # elements; float32 ones for the half types
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    compute = 8 if dtype == "float64" else 4
    assert forward >= rows * gates * H * compute  # the input projection of every row
    assert backward >= rows * gates * H * compute  # the gate gradients of every row
    if cell == "lstm":
        projected = _C.rnn_buffer_sizes(CELLS[cell], dtype, rows, B, I, H, 5, "cuda")
        assert projected[0] == rows * (RESERVE_BLOCKS[cell] + 1) * H


@pytest.mark.skipif(CUDA_BUILD, reason="only a build without CUDA refuses the CUDA size query")
def test_cuda_buffer_sizes_need_a_cuda_build():
    with pytest.raises(RuntimeError, match="no CUDA kernels"):
        _C.rnn_buffer_sizes(CELLS["lstm"], "float32", 10, 2, 3, 4, 0, "cuda")


def test_buffer_sizes_device_is_checked():
    with pytest.raises(ValueError, match="device must be"):
        _C.rnn_buffer_sizes(CELLS["lstm"], "float32", 10, 2, 3, 4, 0, "tpu")
    with pytest.raises(RuntimeError, match="not supported on the CPU"):
        _C.rnn_buffer_sizes(CELLS["lstm"], "float16", 10, 2, 3, 4, 0, "cpu")


def test_supported_dtypes_by_device():
    assert F.supported_dtypes(torch.empty(0)) == (torch.float32, torch.float64)
    meta = torch.empty(0, device="meta")  # any non-CPU device other than CUDA keeps the CPU's list
    assert torch.float16 not in F.supported_dtypes(meta)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_cuda_only(dtype):
    x = torch.randn(3, 2, 4, dtype=dtype)
    w_ih, w_hh = torch.randn(20, 4, dtype=dtype), torch.randn(20, 5, dtype=dtype)
    with pytest.raises(RuntimeError, match="is not supported"):
        F.lstm(x, None, None, w_ih, w_hh)
    module = fastrnn.nn.GRU(4, 5).to(dtype)
    with pytest.raises(RuntimeError, match="support float32 and float64"):
        module(x)
