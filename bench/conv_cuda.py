"""fastrnn's CUDA convolutions against torch (cuDNN) on the same GPU: forward, backward, and the
fused conv + bias + ReLU + 2x2 max pool against torch's three ops. Timed with CUDA events,
alternating fastrnn and torch, median of the repeats.

    python bench/conv_cuda.py [--dtype float16] [--repeats 50] [--tf32 off|on] [--json PATH]

float32 convolutions use TF32 tensor cores on both sides when --tf32 on (fastrnn follows
torch.backends.cudnn.allow_tf32, as cuDNN does); the default is torch's setting as it is
(cuDNN convolutions: on). --json rewrites PATH after each row, with the TF32 state and the CUDA
kernels torch's side launched (torch names no cuDNN algorithm; the kernel names show it).
"""

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

from fastrnn.ops import conv as conv_ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402
from timing import CUDNN_ALGORITHM_NOTE, cuda_kernels, set_tf32, tf32_state  # noqa: E402

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
    parser.add_argument("--tf32", choices=["off", "on"], default=None, help="default: torch's setting as it is")
    parser.add_argument("--json", default=None, help="write the rows here (rewritten after each row)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/conv_cuda.py needs a CUDA GPU (none found); nothing was measured.")
    dtype = getattr(torch, args.dtype)
    if args.tf32 is not None:
        set_tf32(args.tf32 == "on")
    document = {"bench": "conv_cuda", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "cudnn": torch.backends.cudnn.version(), "dtype": args.dtype, "tf32": tf32_state(),
                "cudnn_benchmark": True, "cudnn_algorithm": CUDNN_ALGORITHM_NOTE, "rows": []}
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
        z, argmax = conv_ops.cuda_conv_relu_pool_forward(x, w, b, **geo)
        dz = torch.randn_like(z)
        zr = F.max_pool2d(F.relu(F.conv2d(xr, wr, br, **geo)), 2)
        rows = [
            ("forward", flops, lambda: conv_ops.cuda_forward(x, w, b, **geo), lambda: F.conv2d(x, w, b, **geo)),
            ("backward", 2 * flops, lambda: conv_ops.cuda_backward(dy, x, w, **geo),
             lambda: torch.autograd.grad(yr, (xr, wr, br), dy, retain_graph=True)),
            ("fused fwd", flops, lambda: conv_ops.cuda_conv_relu_pool_forward(x, w, b, **geo),
             lambda: F.max_pool2d(F.relu(F.conv2d(x, w, b, **geo)), 2, return_indices=True)),
            ("fused bwd", 2 * flops, lambda: conv_ops.cuda_conv_relu_pool_backward(dz, z, argmax, x, w, **geo),
             lambda: torch.autograd.grad(zr, (xr, wr, br), dz, retain_graph=True)),
        ]
        for op, f, ours, theirs in rows:
            a, t = compare(ours, theirs, args.repeats)
            print(f"{name:24s} {op:10s} {a:11.3f} {t:9.3f} {t / a:7.2f}x {f / a / 1e9:8.1f}")
            if args.json:
                document["rows"].append({"shape": name, "op": op, "fastrnn_ms": round(a, 4), "torch_ms": round(t, 4),
                                         "speedup": round(t / a, 3), "tflops": round(f / a / 1e9, 1),
                                         "torch_kernels": cuda_kernels(theirs)})
                report.write_json(args.json, document)


if __name__ == "__main__":
    main()
