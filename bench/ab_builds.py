"""Two versions of fastrnn against each other, in one process: is a change faster or slower?

On a shared machine the speed drifts by 10-30% between processes and even between minutes, far
more than most changes are worth, so timing each version in its own process decides nothing.
Here both versions are loaded side by side: the one on the path as `fastrnn`, the other (a whole
package: its Python code and its built extension) as `fastrnn_base`. Every case of the benchmark
suite (bench/*_cases.py: recurrent layers, cells, conv, pooling, optimizer steps) builds the same
step on each and calls one, then the other, alternately (the order flips every round). The answer
is the median and quartiles of the per-round time ratios base / new, which drift hits alike: above
1 the new version is faster.

    # the version to compare against, e.g. the previous commit, built in place:
    git worktree add /tmp/base HEAD~1
    cmake -S /tmp/base -B /tmp/base/build -G Ninja -DFASTRNN_CUDA=OFF \\
        -Dpybind11_DIR=$(python -m pybind11 --cmakedir) && ninja -C /tmp/base/build
    cp /tmp/base/build/_C*.so /tmp/base/python/fastrnn/
    python bench/ab_builds.py --base /tmp/base/python                 # every suite
    python bench/ab_builds.py --base /tmp/base/python --suites rnn,cell --match lstm

The base package is loaded from a copy in which the name `fastrnn` reads `fastrnn_base` (its
imports and its torch.library namespace), so both register their custom ops side by side.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn  # noqa: E402
import cell_cases  # noqa: E402
import conv_cases  # noqa: E402
import optim_cases  # noqa: E402
import pool_cases  # noqa: E402
import rnn_cases  # noqa: E402

SUITES = ["rnn", "cell", "conv", "pool", "optim"]
MIN_SAMPLE_S = 0.005  # a timed sample repeats a step until it lasts this long (timer resolution, noise)


def load_base(python_dir):
    """The package under python_dir/fastrnn (built extension included), imported as fastrnn_base."""
    source = pathlib.Path(python_dir) / "fastrnn"
    if not source.is_dir():
        raise SystemExit(f"--base: no fastrnn package in {python_dir}")
    target = pathlib.Path(tempfile.mkdtemp(prefix="ab_base_")) / "fastrnn_base"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.py"):
        path.write_text(re.sub(r"\bfastrnn\b", "fastrnn_base", path.read_text()))
    sys.path.insert(0, str(target.parent))
    import fastrnn_base
    import fastrnn_base.functional  # noqa: F401
    import fastrnn_base.nn  # noqa: F401
    import fastrnn_base.optim  # noqa: F401
    return fastrnn_base


def cases(suites, match):
    """(suite, label, make) for every case: make(package) -> (step, setup or None)."""
    found = []
    if "rnn" in suites:
        for size in rnn_cases.SIZES.values():
            for op in rnn_cases.MODULE_NAMES:
                for mode in ("inference", "train"):
                    found.append(("rnn", f"{op} {mode} {size.label()}", lambda p, op=op, mode=mode, size=size:
                                  _first_and_setup(rnn_cases.build(op, mode, size, torch.float32, "cpu", p))))
    if "cell" in suites:
        for name, _gates in cell_cases.CELLS.values():
            for batch, hidden in cell_cases.SIZES:
                for mode in cell_cases.MODES:
                    found.append(("cell", f"{name} {mode} B{batch} H{hidden}",
                                  lambda p, name=name, b=batch, h=hidden, mode=mode:
                                  _first_and_setup(cell_cases.build(name, b, h, mode, "cpu", p))))
    if "conv" in suites:
        for name in conv_cases.CASES:
            for mode in ("inference", "train"):
                found.append(("conv", f"{name} {mode}",
                              lambda p, name=name, mode=mode: (conv_cases.build(name, mode, package=p)[0], None)))
    if "pool" in suites:
        for name in pool_cases.CASES:
            for mode in pool_cases.MODES:
                found.append(("pool", f"{name} {mode}",
                              lambda p, name=name, mode=mode: _first_and_setup(pool_cases.build(name, mode, package=p))))
    if "optim" in suites:
        params = optim_cases.language_model_parameters()
        for op in optim_cases.OPTIMIZERS:
            found.append(("optim", f"{op} step", lambda p, op=op: (optim_cases.build(op, params, p).step, None)))
    return [c for c in found if match is None or re.search(match, f"{c[0]} {c[1]}")]


def _first_and_setup(built):
    return built[0], built[2]


def time_pair(steps, seconds, min_rounds):
    """Per-round seconds of each build's step, alternating, until both have min_rounds and the
    time is up. A sample repeats the step `repeat` times (fixed at warm-up) to last MIN_SAMPLE_S."""
    for step, setup in steps.values():  # warm-up, and each build's first-call costs
        for _ in range(2):
            if setup:
                setup()
            step()
    start = time.perf_counter()
    step, setup = steps["new"]
    if setup:
        setup()
    step()
    repeat = max(1, int(MIN_SAMPLE_S / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in steps}
    started = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - started < seconds:
        for name in (("base", "new") if rounds % 2 == 0 else ("new", "base")):
            step, setup = steps[name]
            total = 0.0
            for _ in range(repeat):
                if setup:
                    setup()
                begin = time.perf_counter()
                step()
                total += time.perf_counter() - begin
            times[name].append(total / repeat)
        rounds += 1
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the other version's python folder (holding fastrnn/ with _C built)")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated, from {','.join(SUITES)}")
    parser.add_argument("--match", default=None, help="only cases whose 'suite label' matches this regular expression")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case, both versions together")
    parser.add_argument("--min-rounds", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    suites = [s for s in args.suites.split(",") if s]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    packages = {"base": load_base(args.base), "new": fastrnn}
    print(f"new {pathlib.Path(fastrnn.__file__).parent}  base {args.base}  torch threads {torch.get_num_threads()}",
          flush=True)
    rows = []
    for suite, label, make in cases(suites, args.match):
        steps = {name: make(package) for name, package in packages.items()}
        times = time_pair(steps, args.seconds, args.min_rounds)
        ratios = np.array(times["base"]) / np.array(times["new"])
        q1, q3 = np.quantile(ratios, [0.25, 0.75])
        row = {"suite": suite, "case": label, "base_ms": statistics.median(times["base"]) * 1e3,
               "new_ms": statistics.median(times["new"]) * 1e3, "ratio": float(np.median(ratios)),
               "q1": float(q1), "q3": float(q3), "rounds": len(ratios)}
        rows.append(row)
        print(f"{suite:5s} {label:40s} base {row['base_ms']:9.3f} ms  new {row['new_ms']:9.3f} ms  "
              f"new is {row['ratio']:.3f}x as fast (quartiles {q1:.3f}-{q3:.3f}, {len(ratios)} rounds)", flush=True)
    for suite in suites:
        mine = [r["ratio"] for r in rows if r["suite"] == suite]
        if mine:
            print(f"{suite}: {len(mine)} cases, median ratio {statistics.median(mine):.3f}, "
                  f"range {min(mine):.3f}-{max(mine):.3f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
