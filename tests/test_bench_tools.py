"""bench/ab_builds.py runs end to end (here with the same build on both sides)."""

import os
import pathlib
import re
import subprocess
import sys

import fastrnn
from fastrnn import _C

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_ab_builds_compares_two_loaded_builds():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(fastrnn.__file__).parent.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "--base", _C.__file__,
                             "rnn:2:16:train:2", "lstm:1:8:inference:2"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert re.match(r"rnn B2 H16 train: base \d+\.\d+ ms, new \d+\.\d+ ms, new is \d+\.\d+x as fast", lines[0])
    assert lines[1].startswith("lstm B1 H8 inference:")


def test_cell_cases_run_both_sides():
    """bench/cell_cases.py builds runnable fastrnn and torch steps for every cell and mode."""
    sys.path.insert(0, str(BENCH))
    try:
        import cell_cases
    finally:
        sys.path.remove(str(BENCH))
    for name, _gates in cell_cases.CELLS.values():
        for mode in cell_cases.MODES:
            fast, ref, setup = cell_cases.build(name, 2, 8, mode)
            if setup is not None:
                setup()
            fast()
            ref()
    assert cell_cases.flops(4, 2, 8, "train") == 3 * cell_cases.flops(4, 2, 8, "inference") == 3 * 2 * 2 * 4 * 8 * 16
