"""Cell benchmarks: one step of fastrnn.nn's LSTMCell, GRUCell and RNNCell against torch.nn's
(same weights), timed alternately in one process (timing.compare).

A cell call is a single step, so its fixed costs (Python, argument checks, allocations, the
autograd graph) are most of it at small sizes: the case a decoder loop at batch 1 meets. Each
timed sample runs CALLS calls back to back (one call is tens of microseconds) and reports the
time per call; GFLOP/s count the products (two per gate block in the forward, three times that
for a training step).

    python bench/cell_cases.py                  # every case, both modes, CPU
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn  # noqa: E402
import fastrnn.nn  # noqa: E402
from timing import compare  # noqa: E402

CELLS = {"lstm_cell": ("LSTMCell", 4), "gru_cell": ("GRUCell", 3), "rnn_cell": ("RNNCell", 1)}
SIZES = [(1, 128), (16, 256), (64, 512)]  # (batch, hidden = input size)
MODES = ("inference", "train")
CALLS = 50


def flops(gates, batch, hidden, mode):
    forward = 2 * batch * gates * hidden * (hidden + hidden)
    return forward * (3 if mode == "train" else 1)


def build(name, batch, hidden, mode, device="cpu", package=fastrnn):
    """(fastrnn_fn, torch_fn, setup): each fn runs CALLS cell calls (training: forward and backward);
    `package` is the fastrnn to time."""
    torch.manual_seed(0)
    reference = getattr(torch.nn, name)(hidden, hidden).to(device)
    ours = getattr(package.nn, name)(hidden, hidden).to(device)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(batch, hidden, device=device, requires_grad=mode == "train")

    def step(module):
        if mode == "inference":
            def run():
                with torch.no_grad():
                    for _ in range(CALLS):
                        module(x)
        else:
            def run():
                for _ in range(CALLS):
                    out = module(x)
                    (out[0] if isinstance(out, tuple) else out).sum().backward()
        return run

    def setup():
        x.grad = None
        for module in (reference, ours):
            module.zero_grad(set_to_none=True)

    return step(ours), step(reference), (setup if mode == "train" else None)


def run(mode, budget_s=2.0, min_repeats=5, device="cpu"):
    rows = []
    for op, (name, gates) in CELLS.items():
        for batch, hidden in SIZES:
            fast, ref, setup = build(name, batch, hidden, mode, device)
            fast_s, torch_s = compare(fast, ref, device, budget_s=budget_s, setup=setup, min_repeats=min_repeats)
            fast_s, torch_s = fast_s / CALLS, torch_s / CALLS
            work = flops(gates, batch, hidden, mode)
            rows.append({"op": op, "name": name, "shape": f"B{batch} I{hidden} H{hidden}", "B": batch, "H": hidden,
                         "fastrnn_ms": fast_s * 1e3, "torch_ms": torch_s * 1e3, "speedup": torch_s / fast_s,
                         "fastrnn_gflops": work / fast_s / 1e9, "torch_gflops": work / torch_s / 1e9})
    return rows


if __name__ == "__main__":
    for m in MODES:
        for r in run(m):
            print(f"{r['op']:10s} {m:9s} {r['shape']:16s} fastrnn {r['fastrnn_ms'] * 1e3:8.1f} us  "
                  f"torch {r['torch_ms'] * 1e3:8.1f} us  {r['speedup']:.2f}x")
