"""Inputs of one row (one token, one sequence): bidirectional layers write the two halves of a
(1, 2P) output, where no row pitch can be read from the strides."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

from conftest import DTYPES, assert_close
from reference import twins

MODES = [("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]


def _inputs(kind, dtype):
    """(input for the module, batch_first) of a single row: one step of one sequence."""
    x = torch.randn(1, 1, 5, dtype=dtype)
    if kind == "unbatched":
        return x[0], False
    if kind == "packed":
        return pack_sequence([x[0]]), False
    if kind == "batch_first":
        return x, True
    return x, False


def _tensors(out):
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        return [out.data]
    if isinstance(out, tuple):
        return [t for o in out for t in _tensors(o)]
    return [out]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["batched", "unbatched", "packed", "batch_first"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name,extra", MODES)
def test_bidirectional_single_row(name, extra, num_layers, training, kind, dtype):
    x, batch_first = _inputs(kind, dtype)
    reference, ours = twins(name, 5, 7, num_layers=num_layers, bidirectional=True, batch_first=batch_first,
                            dtype=dtype, seed=1, **extra)
    reference.train(training)
    ours.train(training)
    with torch.set_grad_enabled(training):
        expected, actual = _tensors(reference(x)), _tensors(ours(x))
    for e, a in zip(expected, actual):
        assert_close(a, e, dtype, "forward")
    if training:
        sum(t.sum() for t in expected).backward()
        sum(t.sum() for t in actual).backward()
        for (n, p), q in zip(reference.named_parameters(), ours.parameters()):
            assert_close(q.grad, p.grad, dtype, n)
