"""fastrnn's CUDA convolutions against torch (cuDNN) on the same GPU: forward, backward, and the
fused conv + bias + ReLU + 2x2 max pool against torch's three ops. Timed with CUDA events,
alternating fastrnn and torch, median of the repeats.

    python bench/conv_cuda.py [--dtype float16] [--repeats 50]
"""

import argparse
import statistics

import torch
import torch.nn.functional as F

from fastrnn import _conv_cuda

# (name, N, C, H, W, K, R, S, stride, padding, groups)
SHAPES = [
    ("stem 224 3->64", 64, 3, 224, 224, 64, 3, 3, 1, 1, 1),
    ("56x56 64->64", 32, 64, 56, 56, 64, 3, 3, 1, 1, 1),
    ("56x56 128->128", 32, 128, 56, 56, 128, 3, 3, 1, 1, 1),
    ("28x28 256->256", 32, 256, 28, 28, 256, 3, 3, 1, 1, 1),
    ("14x14 512->512 s2", 32, 512, 28, 28, 512, 3, 3, 2, 1, 1),
    ("1x1 256->1024", 32, 256, 28, 28, 1024, 1, 1, 1, 0, 1),
    ("depthwise 56x56 128", 32, 128, 56, 56, 128, 3, 3, 1, 1, 128),
]


def timed(fn, repeats):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def compare(ours, theirs, repeats):
    for _ in range(3):
        ours(), theirs()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours, repeats))
        b.append(timed(theirs, repeats))
    return statistics.median(a), statistics.median(b)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32", "float64"])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cuDNN {torch.backends.cudnn.version()}  {args.dtype}"
          f"  allow_tf32={torch.backends.cudnn.allow_tf32}")
    print(f"{'shape':24s} {'op':10s} {'fastrnn ms':>11s} {'torch ms':>9s} {'speed-up':>8s} {'TFLOP/s':>8s}")
    for name, N, C, H, W, K, R, S, stride, padding, groups in SHAPES:
        x = torch.randn(N, C, H, W, device="cuda", dtype=dtype)
        w = torch.randn(K, C // groups, R, S, device="cuda", dtype=dtype) / (C // groups * R * S) ** 0.5
        b = torch.randn(K, device="cuda", dtype=dtype)
        geo = dict(stride=stride, padding=padding, dilation=1, groups=groups)
        y = F.conv2d(x, w, b, **geo)
        dy = torch.randn_like(y)
        flops = 2.0 * y.numel() * (C // groups) * R * S
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        yr = F.conv2d(xr, wr, br, **geo)
        z, argmax = _conv_cuda.conv_relu_pool_forward(x, w, b, **geo)
        dz = torch.randn_like(z)
        zr = F.max_pool2d(F.relu(F.conv2d(xr, wr, br, **geo)), 2)
        rows = [
            ("forward", flops, lambda: _conv_cuda.forward(x, w, b, **geo), lambda: F.conv2d(x, w, b, **geo)),
            ("backward", 2 * flops, lambda: _conv_cuda.backward(dy, x, w, **geo),
             lambda: torch.autograd.grad(yr, (xr, wr, br), dy, retain_graph=True)),
            ("fused fwd", flops, lambda: _conv_cuda.conv_relu_pool_forward(x, w, b, **geo),
             lambda: F.max_pool2d(F.relu(F.conv2d(x, w, b, **geo)), 2, return_indices=True)),
            ("fused bwd", 2 * flops, lambda: _conv_cuda.conv_relu_pool_backward(dz, z, argmax, x, w, **geo),
             lambda: torch.autograd.grad(zr, (xr, wr, br), dz, retain_graph=True)),
        ]
        for op, f, ours, theirs in rows:
            a, t = compare(ours, theirs, args.repeats)
            print(f"{name:24s} {op:10s} {a:11.3f} {t:9.3f} {t / a:7.2f}x {f / a / 1e9:8.1f}")


if __name__ == "__main__":
    main()
