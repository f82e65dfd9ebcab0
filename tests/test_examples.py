"""The examples run end to end in their --quick mode: exit 0, print their metric, write the PNG."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastrnn

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
# (script, extra flags, the metric line it must print)
CASES = [
    ("char_rnn.py", ["--compare-torch"], r"final val loss: (\d+\.\d+) nats/char"),
    ("sequence_classification.py", [], r"final test accuracy: (\d+\.\d+)%"),
    ("digits_cnn.py", [], r"final test accuracy: (\d+\.\d+)%"),
]


@pytest.mark.parametrize("script, flags, metric", CASES, ids=[c[0] for c in CASES])
def test_example_quick_mode(tmp_path, script, flags, metric):
    out = tmp_path / (script[:-3] + ".png")
    # The subprocess imports the same fastrnn as this test, wherever it is installed or checked out.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(fastrnn.__file__).parent.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--threads", "2", "--out", str(out),
                             *flags], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    found = re.search(metric, result.stdout)
    assert found, result.stdout[-2000:]
    assert float(found.group(1)) > 0
    assert out.exists() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if script == "char_rnn.py":
        assert re.search(r"speed-up \d+\.\d+x", result.stdout), result.stdout[-2000:]
