"""Two builds of the extension against each other, in one process: is a kernel change faster?

On a shared machine the speed drifts by 10-30% between processes and even between minutes, far
more than most kernel changes are worth, so timing each build in its own process decides
nothing. Here both builds are loaded side by side and fastrnn's recurrent layers call one, then
the other, alternately (the order flips every round); the answer is the median and quartiles of
the per-round time ratios, which drift hits alike.

    # the build to compare against, e.g. from a clean checkout of the previous commit:
    git worktree add /tmp/base HEAD~1 && cmake -S /tmp/base -B /tmp/base/build ... && ninja -C /tmp/base/build
    python bench/ab_builds.py --base /tmp/base/build/_C.cpython-311-x86_64-linux-gnu.so \\
        lstm:64:512:inference:10 gru:16:256:train:40

Each case is op:batch:hidden:mode:rounds (T=100, input size = hidden size, one layer). Only the
recurrent layers switch builds (the _C of fastrnn.ops' runtime, rnn and cell modules); conv, pooling
and the optimizers keep the build fastrnn was imported with.
"""

import argparse
import importlib.util
import statistics
import time

import numpy as np
import torch

import fastrnn.nn
import fastrnn.ops as ops
from rnn_cases import MODULE_NAMES


def load_build(path):
    """A second copy of the extension, from another build's shared library."""
    spec = importlib.util.spec_from_file_location("fastrnn_base._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use(build):
    for module in (ops._runtime, ops.rnn, ops.cell):
        module._C = build
    ops.rnn.sizes_of.cache_clear()  # workspace sizes are the build's own answer


def run_case(spec, builds):
    op, batch, hidden, mode, rounds = spec.split(":")
    batch, hidden, rounds = int(batch), int(hidden), int(rounds)
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be train or inference, got {mode!r}")
    module = getattr(fastrnn.nn, MODULE_NAMES[op])(hidden, hidden)
    x = torch.randn(100, batch, hidden, requires_grad=mode == "train")

    def step():
        if mode == "inference":
            with torch.no_grad():
                module(x)
        else:
            y, _ = module(x)
            y.sum().backward()

    for build in builds.values():  # warm-up, and each build's first-call costs
        use(build)
        step()
    times = {name: [] for name in builds}
    for r in range(rounds):
        for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
            use(builds[name])
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    ratios = np.array(times["base"]) / np.array(times["new"])
    q1, q3 = np.quantile(ratios, [0.25, 0.75])
    print(f"{op} B{batch} H{hidden} {mode}: base {statistics.median(times['base']) * 1e3:.2f} ms, "
          f"new {statistics.median(times['new']) * 1e3:.2f} ms, new is {statistics.median(ratios):.3f}x as fast "
          f"(quartiles {q1:.3f}-{q3:.3f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the other build's _C shared library")
    parser.add_argument("cases", nargs="+", help="op:batch:hidden:mode:rounds, e.g. lstm:64:512:inference:10")
    args = parser.parse_args()
    builds = {"base": load_build(args.base), "new": ops._C}
    torch.manual_seed(0)
    for spec in args.cases:
        run_case(spec, builds)
    use(builds["new"])


if __name__ == "__main__":
    main()
