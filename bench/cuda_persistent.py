"""Per-step latency of the CUDA recurrence: fastrnn persistent (one cooperative launch per layer)
against fastrnn step-wise (two launches per step) and torch (cuDNN), next to the floor of a
persistent step (one grid-wide barrier, measured alone). One layer, one direction, I = H, the
inference forward (with --training: forward + backward). Timed with CUDA events, the three
alternating, median of the repeats; reported as microseconds per time step.

    python bench/cuda_persistent.py [--dtypes float32 float16] [--repeats 30] [--training] [--json PATH]

TF32 is off on both sides (float32 is float32); --json rewrites PATH after each row, with the
CUDA kernels cuDNN's side launched (torch names no cuDNN algorithm; the kernel names show it).
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402
from timing import CUDNN_ALGORITHM_NOTE, _timer, cuda_kernels, set_tf32, tf32_state  # noqa: E402

_seconds = _timer("cuda")


def timed(fn):
    return _seconds(fn) * 1e6  # microseconds


# (T, B, H): the fastrnns default, then small batches where the per-step latency is all there is.
SHAPES = [(100, 64, 512), (100, 16, 512), (100, 8, 512), (100, 1, 512),
          (100, 16, 1024), (100, 8, 1024), (100, 1, 1024)]
KINDS = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}


def alternate(fns, repeats):
    """Median microseconds per call of each fn, called in turn after a warm-up."""
    for _ in range(3):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t.append(timed(fn))
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"],
                        choices=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--training", action="store_true", help="time forward + backward")
    parser.add_argument("--json", default=None, help="write the rows here (rewritten after each row)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/cuda_persistent.py needs a CUDA GPU (none found); nothing was measured.")
    import fastrnn
    import fastrnn.nn
    from fastrnn import _persistent
    if not fastrnn.build_info()["cuda_device_available"]:
        sys.exit("this fastrnn build has no CUDA kernels (install with FASTRNN_CUDA=ON); nothing was measured.")

    torch.backends.cudnn.benchmark = True
    set_tf32(False)
    props = torch.cuda.get_device_properties(0)
    stream = torch.cuda.current_stream().cuda_stream
    floor = _persistent.grid_barrier_us(steps=20000, stream=stream)
    print(f"{props.name}  {props.multi_processor_count} SMs  torch {torch.__version__}  "
          f"cuDNN {torch.backends.cudnn.version()}  {'forward+backward' if args.training else 'inference forward'}")
    document = {"bench": "cuda_persistent", "device": props.name, "torch": torch.__version__,
                "cudnn": torch.backends.cudnn.version(), "training": args.training, "tf32": tf32_state(),
                "cudnn_algorithm": CUDNN_ALGORITHM_NOTE, "grid_barrier_us": round(floor, 3), "rows": []}
    print(f"grid barrier floor: {floor:.2f} us per barrier ({props.multi_processor_count} blocks x 256 threads)")
    print(f"{'cell':5s} {'dtype':9s} {'T':>4s} {'B':>3s} {'H':>5s} {'blocks':>6s} {'smem KiB':>8s} "
          f"{'persist us/step':>15s} {'step-wise':>9s} {'cuDNN':>7s} {'vs cuDNN':>8s} {'floor':>6s}"
          + ("  backward" if args.training else ""))
    for kind in args.kinds:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            for T, B, H in SHAPES:
                torch.manual_seed(0)
                theirs = getattr(torch.nn, kind)(H, H).to("cuda", dtype)
                ours = getattr(fastrnn.nn, kind)(H, H).to("cuda", dtype)
                ours.load_state_dict(theirs.state_dict())
                x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=args.training)
                plan = _persistent.plan(KINDS[kind], dtype, T, B, H, training=args.training)

                def run(module, persistent=None):
                    def call():
                        if persistent is None:
                            return step(module)
                        with _persistent.forced(persistent):
                            return step(module)
                    return call

                def step(module):
                    if args.training:
                        y, _ = module(x)
                        y.sum().backward()
                    else:
                        with torch.no_grad():
                            module(x)

                persist, stepwise, cudnn = alternate([run(ours, True), run(ours, False), run(theirs)], args.repeats)
                shown = f"{persist / T:15.2f}" if plan["use"] else f"{'(' + plan['reason'][:13] + ')':>15s}"
                print(f"{kind:5s} {dtype_name:9s} {T:4d} {B:3d} {H:5d} {plan['blocks']:6d} "
                      f"{plan['smem_bytes'] / 1024:8.1f} {shown} {stepwise / T:9.2f} {cudnn / T:7.2f} "
                      f"{cudnn / persist:7.2f}x {floor:6.2f}"
                      # with --training the persist column is persistent only where both plans say so
                      + (f"  {'persistent' if plan['backward']['use'] else plan['backward']['reason'][:20]}"
                         if args.training else ""))
                if args.json:
                    document["rows"].append({
                        "cell": kind, "dtype": dtype_name, "T": T, "B": B, "H": H, "blocks": plan["blocks"],
                        "persistent_us_per_step": round(persist / T, 3) if plan["use"] else None,
                        "persistent_reason": None if plan["use"] else plan["reason"],
                        "stepwise_us_per_step": round(stepwise / T, 3), "cudnn_us_per_step": round(cudnn / T, 3),
                        "backward": ("persistent" if plan["backward"]["use"] else plan["backward"]["reason"])
                        if args.training else None,
                        "torch_kernels": cuda_kernels(run(theirs))})
                    report.write_json(args.json, document)


if __name__ == "__main__":
    main()
