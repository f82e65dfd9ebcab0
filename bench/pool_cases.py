"""Pooling benchmarks: fastrnn.functional's max_pool2d / avg_pool2d against
torch.nn.functional's, timed alternately in one process (timing.compare).

Pooling streams through memory, so each case also reports GB/s over the bytes the operation
must move at least (the same count for both sides):
* inference: read the input, write the output;
* train (forward saving indices + backward): forward reads the input and writes the output
  (and, for max pool, int64 indices); backward reads grad_output (and the indices) and writes
  grad_input.

    python bench/pool_cases.py                  # every case, both modes, CPU
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn.functional as FF  # noqa: E402
from timing import compare  # noqa: E402

# name: (op, input shape (N, C, H, W), keyword arguments)
CASES = {
    "max2x2": ("max", (64, 32, 28, 28), dict(kernel_size=2, stride=2)),
    "max3x3s2": ("max", (32, 64, 56, 56), dict(kernel_size=3, stride=2, padding=1)),  # ResNet stem
    "avg2x2": ("avg", (64, 32, 28, 28), dict(kernel_size=2, stride=2)),
    "avg3x3s2": ("avg", (32, 64, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
    "max3x3s1": ("max", (32, 64, 28, 28), dict(kernel_size=3, stride=1, padding=1)),  # the portable path
}
MODES = ("inference", "train")


def _functions(op, package=None):
    functional = FF if package is None else package.functional
    return (functional.max_pool2d, F.max_pool2d) if op == "max" else (functional.avg_pool2d, F.avg_pool2d)


def bytes_moved(op, shape, out_shape, mode, element_size):
    n_in, n_out = 1, 1
    for s in shape:
        n_in *= s
    for s in out_shape:
        n_out *= s
    if mode == "inference":
        return (n_in + n_out) * element_size
    index = 8 if op == "max" else 0
    forward = (n_in + n_out) * element_size + n_out * index
    backward = n_out * (element_size + index) + n_in * element_size
    return forward + backward


def build(name, mode="inference", dtype=torch.float32, device="cpu", package=None):
    """(fastrnn_fn, torch_fn, setup, bytes moved) for case `name`; `package` is the fastrnn to time."""
    op, shape, kwargs = CASES[name]
    ours_fn, torch_fn = _functions(op, package)
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, device=device)
    with torch.no_grad():
        out_shape = torch_fn(x, **kwargs).shape
    moved = bytes_moved(op, shape, out_shape, mode, x.element_size())
    if mode == "inference":
        def step(fn):
            def call():
                with torch.no_grad():
                    fn(x, **kwargs)
            return call
        return step(ours_fn), step(torch_fn), None, moved
    xg = x.clone().requires_grad_()
    grad = torch.randn(out_shape, dtype=dtype, device=device)

    def step(fn):
        def call():
            fn(xg, **kwargs).backward(grad)
        return call

    def setup():
        xg.grad = None
    return step(ours_fn), step(torch_fn), setup, moved


def run(names=None, mode="inference", dtype=torch.float32, device="cpu", budget_s=2.0, min_repeats=10):
    """Times each case in `names` (default: all) in `mode`; returns one dict per case with op,
    mode, shape, fastrnn_ms, torch_ms, speedup (torch / fastrnn), fastrnn_gbps, torch_gbps."""
    results = []
    for name in names or CASES:
        ours, theirs, setup, moved = build(name, mode, dtype, device)
        ours_s, torch_s = compare(ours, theirs, device, min_repeats=min_repeats, budget_s=budget_s, setup=setup)
        results.append({
            "op": name, "mode": mode, "shape": "x".join(map(str, CASES[name][1])), "fastrnn_ms": ours_s * 1e3,
            "torch_ms": torch_s * 1e3, "speedup": torch_s / ours_s, "fastrnn_gbps": moved / ours_s / 1e9,
            "torch_gbps": moved / torch_s / 1e9,
        })
    return results


if __name__ == "__main__":
    print(f"threads: torch {torch.get_num_threads()}, fastrnn {FF.ops._C.build_info()['omp_max_threads']}")
    for mode in MODES:
        for r in run(mode=mode):
            print(f"{r['op']:>9} {r['mode']:>9} {r['shape']:>12}  fastrnn {r['fastrnn_ms']:8.3f} ms "
                  f"({r['fastrnn_gbps']:5.1f} GB/s)  torch {r['torch_ms']:8.3f} ms ({r['torch_gbps']:5.1f} GB/s)"
                  f"  x{r['speedup']:.2f}")
