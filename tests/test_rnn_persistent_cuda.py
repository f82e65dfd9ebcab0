"""The persistent CUDA recurrence (one cooperative launch per layer-direction, W_hh resident in
shared memory; forward and backward) against torch.nn in float64 on the CPU, and against
fastrnn's own step-wise CUDA path: outputs, final states and gradients, every cell and dtype,
odd sizes, both directions, stacked and bidirectional modules, packed sequences, the
FASTRNN_CUDA_PERSISTENT switch and the barrier floor. Skipped without a GPU."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fastrnn import _persistent
from reference import CELLS
from cuda_references import (fastrnn_call, fastrnn_run, grad_names, loss_of, module_run, parametrize_modules,
                             problem, relative_error, rnn_reference)

pytestmark = pytest.mark.cuda

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# Largest error against the float64 reference, relative to its largest magnitude (at least 1),
# as in test_cuda_rnn.py. The persistent products keep h_prev in float32 (only W_hh is stored in
# half precision), so they are no less exact than the step-wise tensor-core products.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 5e-5, torch.float16: 1e-2, torch.bfloat16: 6e-2}
# (T, B, I, H): odd hidden sizes (a last block with fewer units, tiles past the edge), batch 1,
# odd batches, and B = 70 > 64 rows per shared-memory chunk (two chunks per step).
CASES = [(7, 1, 13, 37), (5, 3, 20, 129), (4, 17, 9, 515), (3, 70, 11, 129)]


@pytest.fixture(autouse=True)
def exact_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def persistent_forced():
    return _persistent.forced(True)


def check(name, ours, reference, dtype, tolerance=None):
    err = relative_error(ours, reference)
    bound = tolerance or TOLERANCE[dtype]
    assert err <= bound, f"{name}: relative error {err:.3e} > {bound:.1e} ({dtype})"


def gpu_run(cell, dtype, x, h0, c0, params, out_weights, reverse, training=True):
    """fastrnn on the GPU: outputs and, when training, the gradients of every input."""
    return fastrnn_run(cell, "cuda", dtype, x, h0, c0, params, out_weights, reverse, training)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", CASES)
def test_cases_take_the_persistent_path(cell, dtype, T, B, I, H):
    """The other tests below exercise the persistent kernel, not the fallback."""
    for training in (False, True):
        with _persistent.forced(True):  # whatever FASTRNN_CUDA_PERSISTENT says
            plan = _persistent.plan(cell, dtype, T, B, H, training=training)
        optin = getattr(torch.cuda.get_device_properties(0), "shared_memory_per_block_optin", 227 * 1024)
        for p in (plan, plan["backward"]):
            assert p["use"], p["reason"]
            assert p["blocks"] * p["units"] >= H > (p["blocks"] - 1) * p["units"]
            assert 1 <= p["batch_chunk"] <= min(B, 64)
            assert p["smem_bytes"] <= optin


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", CASES)
def test_persistent_matches_float64(cell, reverse, dtype, T, B, I, H):
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=T + B + H)
    params = [p.detach() for p in layer.parameters()]

    ref_out, ref_grads = rnn_reference(layer, cell, x, h0, c0, out_weights, reverse)

    with _persistent.forced(True):
        inference, _ = gpu_run(cell, dtype, x, h0, c0, params, out_weights, reverse, training=False)
        ours, grads = gpu_run(cell, dtype, x, h0, c0, params, out_weights, reverse, training=True)
    for name, o, i, r in zip(["y", "h_n", "c_n"], ours, inference, ref_out):
        if r is not None:
            assert o.dtype == dtype and o.device.type == "cuda"
            check(name, o, r, dtype)
            check(name + " (inference)", i, r, dtype)
    names = grad_names(cell)
    assert len(grads) == len(names) == len(ref_grads)
    for name, g, r in zip(names, grads, ref_grads):
        check(name, g, r, dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_persistent_and_step_wise_agree(cell, dtype):
    """The same call with the persistent path forced on and off, in one process."""
    T, B, I, H = 9, 5, 14, 97
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=21)
    params = [p.detach() for p in layer.parameters()]
    runs = {}
    for on in (True, False):
        with _persistent.forced(on):
            runs[on] = gpu_run(cell, dtype, x, h0, c0, params, out_weights, reverse=False)
    for k, (a, b) in enumerate(zip(runs[True][0] + runs[True][1], runs[False][0] + runs[False][1])):
        if a is not None:
            check(f"result {k}", a, b.double(), dtype)


def split_run(cell, dtype, x, h0, c0, params, out_weights, reverse, backward_persistent):
    """The persistent training forward, then the backward on the path asked for: the two
    backward paths see the same reserve, so any difference is the backward's alone."""
    inputs = [None if t is None else t.to("cuda", dtype).requires_grad_() for t in [x, h0, c0] + params]
    xo, h0o, c0o, *weights = inputs
    with _persistent.forced(True):
        out = fastrnn_call(cell, xo, h0o, c0o, weights, reverse)
    loss = loss_of(out, out_weights)
    with _persistent.forced(backward_persistent):
        return list(torch.autograd.grad(loss, [t for t in inputs if t is not None]))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", CASES)
def test_persistent_backward_matches_step_wise(cell, reverse, dtype, T, B, I, H):
    """Every gradient (dx, dh0, dc0, weights, biases) of the persistent backward against the
    step-wise backward, from one persistent forward."""
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=2 * T + B + H)
    params = [p.detach() for p in layer.parameters()]
    persistent = split_run(cell, dtype, x, h0, c0, params, out_weights, reverse, True)
    step_wise = split_run(cell, dtype, x, h0, c0, params, out_weights, reverse, False)
    names = grad_names(cell)
    assert len(persistent) == len(step_wise) == len(names)
    for name, a, b in zip(names, persistent, step_wise):
        assert a.dtype == dtype and a.device.type == "cuda"
        check(name, a, b, dtype)


# Stacked, bidirectional, batch-first: (kind, constructor arguments besides input_size=13).
MODULE_CASES = [(kind, dict(input_size=13, **kwargs)) for kind, kwargs in [
    ("LSTM", dict(hidden_size=129, num_layers=2, bidirectional=True)),
    ("GRU", dict(hidden_size=37, num_layers=3, bidirectional=True, batch_first=True)),
    ("RNN", dict(hidden_size=515, num_layers=2, nonlinearity="relu")),
    ("RNN", dict(hidden_size=37, bidirectional=True))]]


@parametrize_modules(MODULE_CASES, ALL_DTYPES)
def test_stacked_bidirectional_modules(kind, kwargs, dtype):
    _, _, got, expected = module_run(kind, kwargs, dtype, T=8, B=3, seed=5, context=persistent_forced)
    for k, (o, r) in enumerate(zip(got, expected)):
        assert o.device.type == "cuda"
        check(f"output {k}", o, r, dtype)


PACKED_LENGTHS = [[6, 6, 6, 6], [6, 6, 4, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("lengths", PACKED_LENGTHS, ids=["equal", "variable"])
def test_packed_sequences_run_persistently_only_at_equal_lengths(kind, dtype, lengths):
    """Equal lengths run persistently; different lengths fall back to the step-wise path."""
    kwargs = dict(input_size=7, hidden_size=37, num_layers=2, bidirectional=True)
    _, _, got, expected = module_run(kind, kwargs, dtype, T=6, B=4, seed=8, lengths=torch.tensor(lengths),
                                     context=persistent_forced)
    for k, (o, r) in enumerate(zip(got, expected)):
        check(f"output {k}", o, r, dtype)


@pytest.mark.parametrize("cell,H,dtype", [("lstm", 1024, torch.float32), ("gru", 1024, torch.float16),
                                          ("lstm", 1024, torch.bfloat16), ("rnn_tanh", 1024, torch.float32)])
def test_large_hidden_sizes(cell, H, dtype):
    """H = 1024: several units per block, a W_hh slice of up to 128 KiB, several batch chunks."""
    T, B, I = 6, 40, 16
    with _persistent.forced(True):
        plan = _persistent.plan(cell, dtype, T, B, H, training=True)
    assert plan["use"], plan["reason"]
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=3)
    params = [p.detach() for p in layer.parameters()]
    ref_out, _ = rnn_reference(layer, cell, x, h0, c0, out_weights, reverse=False, training=False)
    with _persistent.forced(True):
        ours, _ = gpu_run(cell, dtype, x, h0, c0, params, out_weights, reverse=False, training=False)
    for name, o, r in zip(["y", "h_n", "c_n"], ours, ref_out):
        if r is not None:
            check(name, o, r, dtype)


@pytest.mark.parametrize("cell,H,dtype", [("lstm", 1024, torch.float32), ("gru", 1024, torch.float16),
                                          ("lstm", 1024, torch.bfloat16), ("rnn_relu", 1024, torch.float32),
                                          ("gru", 771, torch.float64)])
def test_large_hidden_sizes_backward(cell, H, dtype):
    """H = 1024: a (G*H, 8) column slice of W_hh per block and G*H-long dgates rows staged a few
    at a time (B = 70: at least two chunks); gradients against the step-wise backward."""
    T, B, I = 5, 70, 16
    with _persistent.forced(True):
        plan = _persistent.plan(cell, dtype, T, B, H, training=True)["backward"]
    assert plan["use"], plan["reason"]
    assert plan["batch_chunk"] < B
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=4)
    params = [p.detach() for p in layer.parameters()]
    persistent = split_run(cell, dtype, x, h0, c0, params, out_weights, False, True)
    step_wise = split_run(cell, dtype, x, h0, c0, params, out_weights, False, False)
    for k, (a, b) in enumerate(zip(persistent, step_wise)):
        check(f"gradient {k}", a, b, dtype)


def test_plan_refuses_what_it_cannot_run():
    # A W_hh slice far beyond any GPU's shared memory: float32 LSTM with H = 8192 (128 units x 4
    # gates x 8192 x 4 bytes = 16 MiB per block on 64 SMs, 2 MiB on 132).
    with _persistent.forced(True):
        plan = _persistent.plan("lstm", torch.float32, 10, 4, 8192)
    for p in (plan, plan["backward"]):
        assert not p["use"] and "shared memory" in p["reason"]
    with _persistent.forced(False):
        plan = _persistent.plan("lstm", torch.float32, 10, 4, 64)
        for p in (plan, plan["backward"]):
            assert not p["use"] and "disabled" in p["reason"]
        assert not _persistent.enabled()
    plan = _persistent.plan("lstm", torch.float32, 10, 4, 64)
    assert plan["use"] == plan["backward"]["use"] == _persistent.enabled()


def test_proj_size_falls_back():
    kwargs = dict(input_size=7, hidden_size=37, proj_size=5)
    _, _, got, expected = module_run("LSTM", kwargs, torch.float32, T=6, B=3, seed=0, context=persistent_forced)
    for k, (o, r) in enumerate(zip(got, expected)):
        check(f"output {k}", o, r, torch.float32)


SUBPROCESS = r"""
import json, sys, torch
import fastrnn.functional as F
from fastrnn import _persistent
torch.manual_seed(0)
layer = torch.nn.LSTM(11, 129)
w = [p.detach().cuda() for p in layer.parameters()]
x = torch.randn(12, 9, 11, device="cuda")
h0 = torch.randn(9, 129, device="cuda")
c0 = torch.randn(9, 129, device="cuda")
w = [t.requires_grad_() for t in w]
y, h, c = F.lstm(x, h0, c0, *w)
dw = torch.autograd.grad((y * y).sum() + h.sum(), w[1])[0]
plan = _persistent.plan("lstm", torch.float32, 12, 9, 129)
print(json.dumps({"enabled": _persistent.enabled(), "use": plan["use"], "backward": plan["backward"]["use"],
                  "y": y.double().cpu().flatten().tolist()[:4000], "c": c.double().cpu().flatten().tolist(),
                  "dw": dw.double().cpu().flatten().tolist()[:4000]}))
"""


def test_environment_variable_switches_the_persistent_path():
    """FASTRNN_CUDA_PERSISTENT=0 forces the step-wise path (forward and backward) for the whole
    process; =1 (or unset) allows the persistent one; both give the same results."""
    results = {}
    for value in ("0", "1"):
        env = dict(os.environ, FASTRNN_CUDA_PERSISTENT=value)
        out = subprocess.run([sys.executable, "-c", SUBPROCESS], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        results[value] = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["0"]["enabled"] is False and results["0"]["use"] is False and results["0"]["backward"] is False
    assert results["1"]["enabled"] is True and results["1"]["use"] is True and results["1"]["backward"] is True
    for key in ("y", "c", "dw"):
        a, b = torch.tensor(results["0"][key]), torch.tensor(results["1"][key])
        check(key, a, b, torch.float32)


def test_grid_barrier_floor():
    us = _persistent.grid_barrier_us(steps=2000)
    assert math.isfinite(us) and 0 < us < 100
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert 0 < _persistent.grid_barrier_us(blocks=sms // 2, steps=2000) < 100
    with pytest.raises(ValueError):
        _persistent.grid_barrier_us(blocks=1_000_000, steps=10)
