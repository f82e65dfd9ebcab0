"""The persistent recurrence's plan cache (csrc/cuda/rnn_persistent_cache.h): the CUDA queries
behind a plan run once per (kernel, device, sizes). Its logic (hits, failures not kept, the
shared-memory limit raised per device and never lowered, the bound, threads) is checked on the
host everywhere; the `cuda` tests check that repeated and concurrent calls hit the cache and
still match torch.nn in float64 on the CPU."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from fastrnn import _C, _persistent
from reference import CELLS, twins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As test_rnn_persistent_cuda.py: relative to the float64 reference's largest magnitude (>= 1).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 5e-5}
KINDS = {"lstm": ("LSTM", {}), "gru": ("GRU", {}), "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
         "rnn_relu": ("RNN", {"nonlinearity": "relu"})}


# ---- checks that run everywhere ----------------------------------------------------------------

@pytest.mark.slow
def test_cache_logic_on_host(tmp_path):
    """Hits, misses, failed queries not kept, limits per device and only raised, the bound,
    eight threads making each key once; under ThreadSanitizer too where the compiler has it."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    source = os.path.join(REPO, "tests", "cuda_host", "persistent_plan_cache_check.cpp")
    build = [compiler, "-std=c++17", "-O1", "-pthread", "-I", os.path.join(REPO, "csrc"), source]
    exe = tmp_path / "plan_cache_check"
    subprocess.run(build + ["-o", str(exe)], check=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    tsan = tmp_path / "plan_cache_check_tsan"
    if subprocess.run(build + ["-g", "-fsanitize=thread", "-o", str(tsan)], capture_output=True).returncode != 0:
        return  # no ThreadSanitizer runtime here
    result = subprocess.run([str(tsan)], capture_output=True, text=True, timeout=300)
    assert "data race" not in result.stderr, result.stderr
    if "FATAL: ThreadSanitizer" not in result.stderr:  # some kernels' memory layouts refuse TSan
        assert result.returncode == 0, result.stdout + result.stderr


def test_miss_counter_exists_everywhere():
    assert _C.cuda_rnn_persistent_plan_misses() >= 0


# ---- on a GPU ----------------------------------------------------------------------------------

def layer_pair(cell, I, H, dtype, seed=0, device="cuda"):
    """torch.nn's layer in float64 on the CPU (weights rounded to dtype) and fastrnn.nn's on `device`."""
    kind, kwargs = KINDS[cell]
    reference, ours = twins(kind, I, H, seed=seed, round_to=dtype, **kwargs)
    return ours.to(device, dtype), reference


def outputs(module, x, device, dtype):
    """y, the final states, and the gradients of a fixed random loss w.r.t. x and every parameter."""
    xi = x.to(device, dtype).requires_grad_()
    y, hidden = module(xi)
    hidden = hidden if isinstance(hidden, tuple) else (hidden,)
    gen = torch.Generator().manual_seed(3)
    loss = sum((t.double().cpu() * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(dtype).double()).sum()
               for t in (y, *hidden))
    grads = torch.autograd.grad(loss, [xi] + list(module.parameters()))
    return [t.detach() for t in (y, *hidden, *grads)]


def check_against(ours, reference, dtype):
    for a, e in zip(ours, reference):
        a, e = a.to("cpu", torch.float64), e.to("cpu", torch.float64)
        assert not a.isnan().any()
        err = (a - e).abs().max().item() / max(1.0, e.abs().max().item())
        assert err <= TOLERANCE[dtype], f"relative error {err:.3e} ({dtype})"


def run_case(cell, dtype, T, B, I, H, device="cuda:0"):
    ours, reference = layer_pair(cell, I, H, dtype, device=device)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(4)).to(dtype).double()
    with torch.cuda.device(device) if device != "cpu" else contextlib.nullcontext():
        got = outputs(ours, x, device, dtype)
    return got, outputs(reference, x, "cpu", torch.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_side_on_cpu(cell):
    """The GPU tests' helpers, with fastrnn on the CPU: a broken reference fails here."""
    got, reference = run_case(cell, torch.float64, 5, 3, 11, 37, device="cpu")
    assert len(got) == len(reference) == 2 + (cell == "lstm") + 1 + 4  # y, states, dx, 4 parameters
    check_against(got, reference, torch.float64)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_repeated_calls_hit_the_cache(cell, dtype):
    """The same sizes twice: no new plan, identical results; another length T: no new plan
    either (T is not in the key); other H and B: the plans plan() made are the ones the calls
    use (no new one), and the results are right."""
    T, B, I, H = 5, 3, 11, 37
    plan = _persistent.plan(cell, dtype, T, B, H, training=True)
    assert plan["use"] and plan["backward"]["use"], plan
    first, reference = run_case(cell, dtype, T, B, I, H)
    check_against(first, reference, dtype)
    misses = _C.cuda_rnn_persistent_plan_misses()
    second, _ = run_case(cell, dtype, T, B, I, H)
    assert _C.cuda_rnn_persistent_plan_misses() == misses
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    longer, reference = run_case(cell, dtype, 9, B, I, H)
    assert _C.cuda_rnn_persistent_plan_misses() == misses
    check_against(longer, reference, dtype)
    for T, B, H in [(4, 70, 129), (3, 17, 53)]:  # two chunks of rows; an odd hidden size
        assert _persistent.plan(cell, dtype, T, B, H, training=True)["use"]
        before = _C.cuda_rnn_persistent_plan_misses()
        got, reference = run_case(cell, dtype, T, B, I, H)
        assert _C.cuda_rnn_persistent_plan_misses() == before, "plan() and the call share the cached plan"
        check_against(got, reference, dtype)


@pytest.mark.cuda
def test_plan_after_a_larger_one_matches_a_fresh_process():
    """A kernel's shared-memory limit is only ever raised: a small plan made after a large one
    of the same kernel (limit already above its need) must equal the plan a fresh process makes,
    and both must run."""
    big, small = (3, 64, 515), (3, 5, 37)  # (T, B, H)
    fresh = subprocess.run(
        [sys.executable, "-c",
         "import json; from fastrnn import _persistent; "
         f"print(json.dumps(_persistent.plan('lstm', 'float32', *{small}, training=True)))"],
        capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    fresh = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert _persistent.plan("lstm", torch.float32, *big, training=True)["use"]
    got, reference = run_case("lstm", torch.float32, big[0], big[1], 13, big[2])
    check_against(got, reference, torch.float32)
    assert _persistent.plan("lstm", torch.float32, *small, training=True) == fresh
    got, reference = run_case("lstm", torch.float32, small[0], small[1], 13, small[2])
    check_against(got, reference, torch.float32)


@pytest.mark.cuda
def test_threads_share_the_cache():
    """Eight Python threads (the GIL released in the kernels) on four shapes: each gets what
    it gets alone, and no plan is made twice. Modules and inputs are made up front: torch's
    global generator is not for threads."""
    shapes = [("lstm", 5, 3, 11, 37), ("gru", 4, 9, 7, 97), ("rnn_tanh", 6, 1, 5, 13), ("lstm", 3, 70, 9, 129)]
    alone = {s: run_case(s[0], torch.float32, *s[1:])[0] for s in shapes}
    misses = _C.cuda_rnn_persistent_plan_misses()

    def inputs(s):
        cell, T, B, I, H = s
        x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(4)).to(torch.float32).double()
        return layer_pair(cell, I, H, torch.float32)[0], x

    work_lists = [[(s, *inputs(s)) for s in (shapes[(k + i) % len(shapes)] for i in range(4))] for k in range(8)]
    errors = []

    def work(items):
        try:
            for s, module, x in items:
                got = outputs(module, x, "cuda", torch.float32)
                torch.cuda.synchronize()
                assert all(torch.equal(a, b) for a, b in zip(got, alone[s])), s
        except Exception as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(items,)) for items in work_lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert _C.cuda_rnn_persistent_plan_misses() == misses


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_second_device_makes_its_own_plan():
    """A plan cached on device 0 is not reused on device 1: device 1 queries (and raises its
    own shared-memory limit) before its first launch, and its results are right."""
    case = ("lstm", torch.float32, 4, 70, 11, 515)  # > 48 KiB of shared memory per block
    assert _persistent.plan("lstm", torch.float32, 4, 70, 515, training=True, device=0)["smem_bytes"] > 48 * 1024
    got, reference = run_case(*case, device="cuda:0")
    check_against(got, reference, torch.float32)
    misses = _C.cuda_rnn_persistent_plan_misses()
    got, reference = run_case(*case, device="cuda:1")
    assert _C.cuda_rnn_persistent_plan_misses() > misses
    check_against(got, reference, torch.float32)
