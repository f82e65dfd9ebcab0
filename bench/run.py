"""fastrnn against PyTorch, side by side on this machine.

    python bench/run.py                      # every RNN configuration, CPU
    python bench/run.py --quick --plot       # a short run, with a chart
    python bench/run.py --ops lstm,gru --sizes default,b1_h128 --device cuda
    python bench/run.py --ops adam,sgd,adam+clip   # optimizer steps only
    python bench/run.py --ops conv,pool            # Conv2d (and the fused block) and pooling only
    python bench/run.py --ops cell                 # LSTMCell, GRUCell and RNNCell only

Each recurrent configuration times fastrnn.nn and torch.nn (same weights) alternately in one
process, after warm-up, and reports the medians, the speedup, the GFLOP/s fastrnn achieves and
that as a fraction of the matmul peak (measured at the start and again at the end, the higher
of the two). Each optimizer op times one step over the parameters of an LSTM language model (~14.4M) against torch.optim's fastest setting
here, in GB/s against the measured memory bandwidth. `conv` times fastrnn.functional.conv2d and
the fused conv_relu_pool2d on the layers of a small MNIST-like CNN and a ResNet-style 3x3 block
against torch (the fused block against torch's conv2d + relu + max_pool2d), in GFLOP/s; `pool`
times max and average pooling, in GB/s; `cell` times one call of each cell at batch 1, 16 and 64,
in GFLOP/s. Results go to
bench/results/<device>-<date>.json.

On CUDA, float32 products and convolutions may use TF32 tensor cores when torch's flags allow
(torch's defaults: cuDNN convolutions and RNNs yes, matmul no); fastrnn's kernels read the same
flags. `--tf32 off,on` times every case affected with both flags off, then on, for both sides,
and each row records the state; the torch side's CUDA kernel names record the cuDNN algorithm.
`--budget-s` starts no case after that many seconds (tools/gpu_round.py's time cap) and lists
the cases left out in the result file.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cell_cases  # noqa: E402
import conv_cases  # noqa: E402
import optim_cases  # noqa: E402
import pool_cases  # noqa: E402
import report  # noqa: E402
import rnn_cases  # noqa: E402
import time  # noqa: E402

from timing import (CUDNN_ALGORITHM_NOTE, compare, cuda_kernels, matmul_peak_gflops,  # noqa: E402
                    memory_bandwidth_gbps, set_tf32, tf32_state)

RNN_OPS = ["lstm", "gru", "rnn"]
OPS = RNN_OPS + list(optim_cases.OPTIMIZERS) + ["cell", "conv", "pool"]
MODES = ["train", "inference"]
TF32_OPS = RNN_OPS + ["cell", "conv"]  # the ops whose float32 work TF32 tensor cores may do


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer configurations and repeats")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {','.join(OPS)}")
    p.add_argument("--sizes", default=None, help=f"comma-separated, from {','.join(rnn_cases.SIZES)}")
    p.add_argument("--modes", default=",".join(MODES), help="train (forward + backward) and/or inference")
    p.add_argument("--plot", action="store_true", help="also write a PNG chart of the speedups")
    p.add_argument("--no-save", action="store_true", help="print only; write no result files")
    p.add_argument("--tf32", default=None, help="cuda: off, on or off,on: TF32 flags for both sides "
                   "(default: torch's settings as they are)")
    p.add_argument("--budget-s", type=float, default=None, help="start no case after this many seconds")
    args = p.parse_args(argv)
    args.tf32 = [t for t in (args.tf32 or "").split(",") if t]
    if any(t not in ("off", "on") for t in args.tf32):
        p.error(f"--tf32 takes off, on or off,on; got {','.join(args.tf32)}")
    args.ops = [o for o in args.ops.split(",") if o]
    args.modes = [m for m in args.modes.split(",") if m]
    default_sizes = rnn_cases.QUICK_SIZES if args.quick else list(rnn_cases.SIZES)
    args.sizes = args.sizes.split(",") if args.sizes else default_sizes
    for value, allowed, what in ((args.ops, OPS, "op"), (args.modes, MODES, "mode"),
                                 (args.sizes, list(rnn_cases.SIZES), "size")):
        unknown = [v for v in value if v not in allowed]
        if unknown:
            p.error(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return args


def optimizer_result(op, args, budget, bandwidth):
    fast_s, torch_s, setting, numel = optim_cases.run(op, args.device, budget, 3 if args.quick else 5)
    moved = optim_cases.bytes_per_step(op, numel)
    torch_setting = ", ".join(f"{k}={v}" for k, v in setting.items())
    return {
        "op": op, "mode": "step", "dtype": "float32", "params": numel,
        "config": f"{numel / 1e6:.1f}M params (torch {torch_setting})", "torch_setting": torch_setting,
        "fastrnn_ms": round(fast_s * 1e3, 4), "torch_ms": round(torch_s * 1e3, 4),
        "speedup": round(torch_s / fast_s, 3), "gbps": round(moved / fast_s / 1e9, 1),
        "torch_gbps": round(moved / torch_s / 1e9, 1), "bandwidth_fraction": round(moved / fast_s / 1e9 / bandwidth, 3),
    }


def layer_results(op, mode, args, budget, peak, bandwidth):
    """The cell, conv or pooling cases in one mode, in the suite's result format."""
    repeats = 3 if args.quick else 5
    if op == "conv":
        rows = conv_cases.run(mode=mode, budget_s=budget, min_repeats=repeats, device=args.device)
    elif op == "cell":
        rows = cell_cases.run(mode=mode, budget_s=budget, min_repeats=repeats, device=args.device)
    else:
        rows = pool_cases.run(mode=mode, budget_s=budget, min_repeats=repeats, device=args.device)
    out = []
    for r in rows:
        result = {"op": r["op"], "mode": mode, "dtype": "float32", "config": f"{r.get('name', r['op'])} {r['shape']}",
                  "fastrnn_ms": round(r["fastrnn_ms"], 4), "torch_ms": round(r["torch_ms"], 4),
                  "speedup": round(r["speedup"], 3)}
        if op in ("conv", "cell"):
            result.update(gflops=round(r["fastrnn_gflops"], 1), torch_gflops=round(r["torch_gflops"], 1),
                          peak_fraction=round(r["fastrnn_gflops"] / peak, 3))
        else:
            result.update(gbps=round(r["fastrnn_gbps"], 1), torch_gbps=round(r["torch_gbps"], 1),
                          bandwidth_fraction=round(r["fastrnn_gbps"] / bandwidth, 3))
        if "torch_kernels" in r:
            result["torch_kernels"] = r["torch_kernels"]
        out.append(result)
    return out


def mark_tf32(rows, device, op):
    """Records the TF32 flags each CUDA row ran under (and tags the configuration when on)."""
    if device != "cuda":
        return
    state = tf32_state()
    for r in rows:
        r["tf32"] = state
        if op in TF32_OPS and state["matmul"] and state["cudnn"]:
            r["config"] += " tf32"


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available to torch")
    from rich.console import Console
    from rich.progress import Progress

    # Wide enough for the table when the output is a file or a pipe, not a terminal.
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(f"[bold]fastrnn benchmark[/] on {report.device_description(args.device)}, torch {torch.__version__}")
    with console.status("measuring the fp32 matmul peak"):
        peak = matmul_peak_gflops(args.device)
    console.print(f"fp32 matmul peak: {peak:.0f} GFLOP/s")
    optim_ops = [op for op in args.ops if op in optim_cases.OPTIMIZERS]
    bandwidth = None
    if optim_ops or "pool" in args.ops:
        with console.status("measuring the memory bandwidth"):
            bandwidth = memory_bandwidth_gbps(args.device)
        console.print(f"memory bandwidth (copy): {bandwidth:.0f} GB/s")

    cases = []
    for k, tf32 in enumerate(args.tf32 or [None]):
        cases += [(op, mode, rnn_cases.SIZES[s], tf32) for s in args.sizes for op in args.ops if op in RNN_OPS
                  for mode in args.modes]
        # The optimizer steps and pooling do no products: timed once, not per TF32 setting.
        cases += [(op, "step", None, tf32) for op in optim_ops if k == 0]
        cases += [(op, mode, None, tf32) for op in ("cell", "conv", "pool") if op in args.ops
                  and (k == 0 or op in TF32_OPS) for mode in args.modes]
    torch_tf32 = tf32_state() if args.device == "cuda" else None
    budget = 0.5 if args.quick else 2.0
    results, not_run = [], []
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=len(cases))
        for op, mode, size, tf32 in cases:
            if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
                not_run.append(f"{op} {mode}" + (f" {size.label()}" if size else "") + (f" tf32 {tf32}" if tf32 else ""))
                continue
            if tf32 is not None:
                set_tf32(tf32 == "on")
            count = len(results)
            if op in ("cell", "conv", "pool"):
                progress.update(task, description=f"{op} {mode}")
                results += layer_results(op, mode, args, budget, peak, bandwidth)
                progress.advance(task)
                mark_tf32(results[count:], args.device, op)
                continue
            if size is None:
                progress.update(task, description=f"{op} step")
                results.append(optimizer_result(op, args, budget, bandwidth))
                progress.advance(task)
                mark_tf32(results[count:], args.device, op)
                continue
            progress.update(task, description=f"{op} {mode} {size.label()}")
            fast, ref, setup = rnn_cases.build(op, mode, size, torch.float32, args.device)
            fast_s, torch_s = compare(fast, ref, args.device, budget_s=budget, setup=setup,
                                      min_repeats=3 if args.quick else 5)
            work = rnn_cases.flops(op, mode, size)
            results.append({
                "op": op, "mode": mode, "dtype": "float32", "T": size.T, "B": size.B, "I": size.I, "H": size.H,
                "layers": size.layers, "bidirectional": size.bidirectional, "config": size.label(),
                "fastrnn_ms": round(fast_s * 1e3, 4), "torch_ms": round(torch_s * 1e3, 4),
                "speedup": round(torch_s / fast_s, 3), "gflops": round(work / fast_s / 1e9, 1),
                "torch_gflops": round(work / torch_s / 1e9, 1), "peak_fraction": round(work / fast_s / 1e9 / peak, 3),
            })
            if args.device == "cuda":
                setup()
                results[-1]["torch_kernels"] = cuda_kernels(ref)
            mark_tf32(results[count:], args.device, op)
            progress.advance(task)
    # On a shared machine the speed drifts during a run (here by up to 2x between minutes), and a
    # ceiling measured in a slow minute would make every fraction look better than it is: the
    # limits are measured again at the end and the higher of the two is the one reported.
    with console.status("measuring the limits again"):
        peak = max(peak, matmul_peak_gflops(args.device))
        if bandwidth is not None:
            bandwidth = max(bandwidth, memory_bandwidth_gbps(args.device))
    for r in results:
        if "gflops" in r:
            r["peak_fraction"] = round(r["gflops"] / peak, 3)
        if "gbps" in r:
            r["bandwidth_fraction"] = round(r["gbps"] / bandwidth, 3)
    console.print(f"limits used (the higher of start and end): matmul {peak:.0f} GFLOP/s"
                  + (f", memory {bandwidth:.0f} GB/s" if bandwidth is not None else ""))
    report.print_table(results, peak, bandwidth, console)
    if not_run:
        console.print(f"not run (past --budget-s {args.budget_s:g} s): {len(not_run)} cases")
    extra = {"not_run": not_run} if args.budget_s is not None else {}
    if args.device == "cuda":
        extra.update(torch_tf32_defaults=torch_tf32, cudnn_algorithm=CUDNN_ALGORITHM_NOTE,
                     tf32_note="each float32 row's tf32 gives torch's two flags while it ran; fastrnn's "
                     "kernels read the same flags, so both sides ran with the same TF32 state")
    if not args.no_save:
        path = report.save(results, args.device, peak, bandwidth, extra=extra)
        console.print(f"wrote {os.path.relpath(path)}")
        if args.plot:
            png = path[:-len(".json")] + ".png"
            report.plot(results, png, f"fastrnn vs torch {torch.__version__}, {report.device_description(args.device)}")
            console.print(f"wrote {os.path.relpath(png)}")


if __name__ == "__main__":
    main()
