"""bench/ab_builds.py runs end to end (here with the same build on both sides)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastrnn

# Each runs the benchmark scripts in subprocesses: left out of the default run, run by CI.
pytestmark = pytest.mark.slow

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_ab_builds_compares_two_loaded_versions(tmp_path):
    """The same package on both sides: one case of every suite runs and reports a ratio."""
    python_dir = pathlib.Path(fastrnn.__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(python_dir)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    rows_file = tmp_path / "rows.json"
    match = "rnn inference T100 B1 |RNNCell inference B1 |mnist_conv1_3x3 train|max2x2 train|sgd step"
    result = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "--base", str(python_dir),
                             "--seconds", "0", "--min-rounds", "2", "--match", match, "--json", str(rows_file)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads(rows_file.read_text())
    assert [r["suite"] for r in rows] == ["rnn", "cell", "conv", "pool", "optim"]
    for r in rows:
        assert r["rounds"] == 2 and r["base_ms"] > 0 and r["new_ms"] > 0 and r["q1"] <= r["ratio"] <= r["q3"]
    assert re.search(r"^rnn   rnn inference T100 B1 I128 H128 +base +\d+\.\d+ ms  new +\d+\.\d+ ms  "
                     r"new is \d+\.\d+x as fast", result.stdout, re.M)


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
