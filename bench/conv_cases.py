"""Convolution benchmarks: fastrnn.functional.conv2d and the fused conv + ReLU + 2x2 max-pool
block against torch (oneDNN) on the same machine, timed alternately in one process.

    python bench/conv_cases.py                 # every case, inference and train, fp32
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn.functional as FF  # noqa: E402

from timing import compare, cuda_kernels  # noqa: E402

# name: (op, batch, C_in, C_out, H, W, kernel, padding)
CASES = {
    "mnist_conv1_5x5": ("conv2d", 64, 1, 32, 28, 28, 5, 0),
    "mnist_conv1_3x3": ("conv2d", 64, 1, 32, 28, 28, 3, 1),
    "mnist_conv2_3x3": ("conv2d", 64, 32, 64, 14, 14, 3, 1),
    "resnet_3x3_64": ("conv2d", 8, 64, 64, 56, 56, 3, 1),
    "fused_conv1_5x5": ("conv_relu_pool2d", 64, 1, 32, 28, 28, 5, 0),
    "fused_conv2_3x3": ("conv_relu_pool2d", 64, 32, 64, 14, 14, 3, 1),
}


def _flops(batch, c_in, c_out, H, W, k, pad):
    oh, ow = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    return 2 * batch * c_out * oh * ow * c_in * k * k


def _torch_block(x, w, b, pad):
    return F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=pad)), 2, 2)


def build(name, mode="inference", dtype=torch.float32, device="cpu", package=None):
    """(fastrnn_fn, torch_fn): zero-argument callables running one step of case `name` on each
    side (train: forward and every gradient); `package` is the fastrnn to time."""
    functional = FF if package is None else package.functional
    op, batch, c_in, c_out, H, W, k, pad = CASES[name]
    torch.manual_seed(0)
    train = mode == "train"
    x = torch.randn(batch, c_in, H, W, dtype=dtype, device=device, requires_grad=train)
    w = (torch.randn(c_out, c_in, k, k, dtype=dtype, device=device) * 0.1).requires_grad_(train)
    b = torch.randn(c_out, dtype=dtype, device=device).requires_grad_(train)
    if op == "conv2d":
        ours_fn = lambda: functional.conv2d(x, w, b, padding=pad)  # noqa: E731
        torch_fn = lambda: F.conv2d(x, w, b, padding=pad)  # noqa: E731
    else:
        ours_fn = lambda: functional.conv_relu_pool2d(x, w, b, padding=pad)  # noqa: E731
        torch_fn = lambda: _torch_block(x, w, b, pad)  # noqa: E731

    def step(fn):
        def call():
            if train:
                y = fn()
                torch.autograd.grad(y, (x, w, b), torch.ones_like(y))
            else:
                with torch.no_grad():
                    fn()
        return call
    return step(ours_fn), step(torch_fn)


def run(names=None, mode="inference", dtype=torch.float32, budget_s=2.0, min_repeats=5, device="cpu"):
    """Times each case; returns one dict per case: op, mode, shape, fastrnn_ms, torch_ms,
    speedup (torch time / fastrnn time), fastrnn_gflops, torch_gflops (the conv's FLOPs; train
    counts forward + backward as 3x the forward)."""
    results = []
    for name in names or list(CASES):
        op, batch, c_in, c_out, H, W, k, pad = CASES[name]
        ours_call, torch_call = build(name, mode, dtype, device)
        ours_s, torch_s = compare(ours_call, torch_call, device, budget_s=budget_s, min_repeats=min_repeats)
        flops = _flops(batch, c_in, c_out, H, W, k, pad) * (3 if mode == "train" else 1)
        results.append({
            "op": op, "name": name, "mode": mode,
            "shape": f"N{batch} {c_in}->{c_out} {H}x{W} k{k} p{pad}",
            "fastrnn_ms": ours_s * 1e3, "torch_ms": torch_s * 1e3, "speedup": torch_s / ours_s,
            "fastrnn_gflops": flops / ours_s / 1e9, "torch_gflops": flops / torch_s / 1e9,
        })
        if device == "cuda":
            results[-1]["torch_kernels"] = cuda_kernels(torch_call)
    return results


if __name__ == "__main__":
    print(f"threads {torch.get_num_threads()}")
    for mode in ("inference", "train"):
        for r in run(mode=mode):
            print(f"{r['name']:18s} {r['mode']:9s} {r['shape']:26s} fastrnn {r['fastrnn_ms']:8.3f} ms "
                  f"torch {r['torch_ms']:8.3f} ms  x{r['speedup']:.2f}  "
                  f"{r['fastrnn_gflops']:6.1f} vs {r['torch_gflops']:6.1f} GFLOP/s")
