"""The reference side of the RNN CUDA tests, device-independent so that ordinary (no-GPU) CI runs
it on the CPU (tests/test_cuda_references.py): a reference mistake fails there, not in the few
lent GPU minutes. Every function takes its tensors on any device; the CUDA tests call them with
CUDA tensors or a CUDA layer, the CPU tests with CPU ones. The references themselves are
tests/reference.py's (make_layer, run_layer, rounded are re-exported here under the names the CUDA
suites and tools/gpu_round.py import)."""

import contextlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn.functional as F
from reference import make_layer, rounded, run_layer, twins  # noqa: F401


def relative_error(actual, expected):
    """Max-norm error relative to the reference's largest magnitude (at least 1)."""
    actual = actual.detach().to("cpu", torch.float64)
    expected = expected.detach().to("cpu", torch.float64)
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not actual.isnan().any(), "NaN in the result (an element left unwritten?)"
    assert not expected.isnan().any(), "NaN in the reference"
    return (actual - expected).abs().max().item() / max(1.0, expected.abs().max().item())


def problem(cell, dtype, T, B, I, H, seed):
    """(layer, x, h0, c0, out_weights): float64 CPU tensors holding values representable in dtype;
    out_weights weigh (y, h_n, c_n) in the loss, so every side back-propagates the same values."""
    layer = make_layer(cell, I, H, True, dtype, seed)
    gen = torch.Generator().manual_seed(seed)
    x = rounded(torch.randn(T, B, I, generator=gen), dtype)
    h0 = rounded(0.5 * torch.randn(B, H, generator=gen), dtype)
    c0 = rounded(0.5 * torch.randn(B, H, generator=gen), dtype) if cell == "lstm" else None
    out_weights = [rounded(torch.randn(s, generator=gen), dtype) for s in ((T, B, H), (B, H), (B, H))]
    return layer, x, h0, c0, out_weights


def grad_names(cell):
    """The order of the gradients that rnn_reference and fastrnn_run return."""
    return ["dx", "dh0"] + (["dc0"] if cell == "lstm" else []) + ["dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"]


def loss_of(outputs, weights):
    """A float64 CPU loss of outputs on any device (autograd carries the gradient back)."""
    return sum((o.double().cpu() * w).sum() for o, w in zip(outputs, weights) if o is not None)


def rnn_reference(layer, cell, x, h0, c0, out_weights, reverse, training=True):
    """torch.nn's [y, h_n, c_n] (c_n None but for an LSTM) in the layer's device and dtype, the
    reverse direction on the time-flipped sequence, and when training the gradients of
    loss_of(outputs, out_weights) in grad_names order, taken with respect to leaves that are in
    the graph: x, h0, c0 as given (not flipped) and the layer's own parameters."""
    p = next(layer.parameters())
    inputs = [None if t is None else t.detach().to(p.device, p.dtype).requires_grad_(training) for t in (x, h0, c0)]
    xi, h0i, c0i = inputs
    y, h_n, c_n = run_layer(layer, cell, xi.flip(0) if reverse else xi, h0i, c0i)
    out = [y.flip(0) if reverse else y, h_n, c_n]
    if not training:
        return out, []
    leaves = [t for t in inputs if t is not None] + list(layer.parameters())
    return out, list(torch.autograd.grad(loss_of(out, out_weights), leaves))


def fastrnn_call(cell, x, h0, c0, weights, reverse):
    if cell == "lstm":
        return list(F.lstm(x, h0, c0, *weights, reverse=reverse))
    if cell == "gru":
        return list(F.gru(x, h0, *weights, reverse=reverse)) + [None]
    return list(F.rnn(x, h0, *weights, nonlinearity=cell.split("_")[1], reverse=reverse)) + [None]


def fastrnn_run(cell, device, dtype, x, h0, c0, params, out_weights, reverse, training=True):
    """fastrnn.functional on `device` in `dtype`: [y, h_n, c_n] and, when training, the gradients
    of loss_of(outputs, out_weights) in grad_names order."""
    inputs = [None if t is None else t.detach().to(device, dtype).requires_grad_(training)
              for t in [x, h0, c0] + list(params)]
    xo, h0o, c0o, *weights = inputs
    out = fastrnn_call(cell, xo, h0o, c0o, weights, reverse)
    if not training:
        return out, []
    return out, list(torch.autograd.grad(loss_of(out, out_weights), [t for t in inputs if t is not None]))


def module_pair(kind, dtype, device, **kwargs):
    """(fastrnn.nn.X on device in dtype, torch.nn.X in float32 on the CPU) with the same weights,
    rounded to dtype."""
    reference, ours = twins(kind, dtype=torch.float32, seed=11, round_to=dtype, **kwargs)
    return ours.to(device, dtype), reference


def module_input(kwargs, dtype, T, B, seed):
    """(T, B, input_size) or batch-first input, float64 holding values representable in dtype."""
    shape = (B, T, kwargs["input_size"]) if kwargs.get("batch_first") else (T, B, kwargs["input_size"])
    return rounded(torch.randn(shape, generator=torch.Generator().manual_seed(seed)), dtype)


def module_outputs(module, x, dtype, device, dt, lengths=None):
    """[y, *hidden, dx, *dparameters] of the module on x (packed by lengths if given; y padded
    back), the gradients of a float64 loss whose weights are representable in dtype."""
    xi = x.to(device, dt).requires_grad_()
    inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if lengths is not None else xi
    y, hidden = module(inp)
    if lengths is not None:
        y, _ = pad_packed_sequence(y, batch_first=getattr(module, "batch_first", False))
    hidden = hidden if isinstance(hidden, tuple) else (hidden,)
    gen = torch.Generator().manual_seed(6)
    loss = (y.double().cpu() * rounded(torch.randn(y.shape, generator=gen), dtype)).sum()
    for h in hidden:
        loss = loss + (h.double().cpu() * rounded(torch.randn(h.shape, generator=gen), dtype)).sum()
    return [y, *hidden, *torch.autograd.grad(loss, [xi] + list(module.parameters()))]


def parametrize_modules(cases, dtypes):
    """pytest's parametrisation of a test over (kind, kwargs) module cases (ids kind-index) and
    dtypes."""
    by_case = pytest.mark.parametrize("kind,kwargs", cases, ids=[f"{k}-{i}" for i, (k, _) in enumerate(cases)])
    by_dtype = pytest.mark.parametrize("dtype", dtypes, ids=str)
    return lambda test: by_dtype(by_case(test))


def module_run(kind, kwargs, dtype, T, B, seed, lengths=None, device="cuda", context=contextlib.nullcontext):
    """fastrnn.nn.<kind>(**kwargs) on device in dtype, run inside context(), and torch.nn's twin in
    float64 on the CPU, on the same input (module_input) packed by lengths if given: (the float64
    reference, x, ours' module_outputs, the reference's), as many of each."""
    ours, reference = module_pair(kind, dtype, device, **kwargs)
    x = module_input(kwargs, dtype, T, B, seed)
    with context():
        got = module_outputs(ours, x, dtype, device, dtype, lengths)
    expected = module_outputs(reference.double(), x, dtype, "cpu", torch.float64, lengths)
    assert len(got) == len(expected)
    return reference, x, got, expected
