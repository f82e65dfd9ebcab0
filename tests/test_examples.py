"""The examples run end to end in their --quick mode: exit 0, a loss that fell, an accuracy above
chance, the PNG written."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastrnn

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
# (script, extra flags, the least fall of the loss it prints as "<what> loss: first F, last L",
# the least margin of its final test accuracy over the chance it prints, None: no accuracy).
# The bounds sit about halfway between what the quick modes reach over several seeds and what
# they print with a learning rate of zero (see bench/NOTES.md, examples), so that they never
# flake and fail when training is broken.
CASES = [
    ("char_rnn.py", ["--compare-torch"], 0.5, None),
    ("sequence_classification.py", [], 0.12, 0.15),
    ("digits_cnn.py", [], 0.4, 0.3),
]
LOSS = r"(\w+) loss: first (\d+\.\d+), last (\d+\.\d+)"
ACCURACY = r"final test accuracy: (\d+\.\d+)% \(chance: about (\d+)%\)"


def example_env():
    """The environment of an example's subprocess: it imports the same fastrnn as this test,
    wherever that is installed or checked out."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(fastrnn.__file__).parent.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


@pytest.mark.slow
@pytest.mark.parametrize("script, flags, loss_fall, over_chance", CASES, ids=[c[0] for c in CASES])
def test_example_quick_mode_learns(tmp_path, script, flags, loss_fall, over_chance):
    """Exit 0, a loss that fell, an accuracy above chance, the PNG written."""
    out = tmp_path / (script[:-3] + ".png")
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--threads", "2", "--out", str(out),
                             *flags], capture_output=True, text=True, env=example_env(), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    loss = re.search(LOSS, result.stdout)
    assert loss, result.stdout[-2000:]
    what, first, last = loss.group(1), float(loss.group(2)), float(loss.group(3))
    assert last < first - loss_fall, f"{what} loss fell from {first} to {last} only (at least {loss_fall} expected)"
    if over_chance is not None:
        accuracy = re.search(ACCURACY, result.stdout)
        assert accuracy, result.stdout[-2000:]
        got, chance = float(accuracy.group(1)) / 100, float(accuracy.group(2)) / 100
        assert got > chance + over_chance, f"test accuracy {got:.2%}, chance {chance:.0%}"
    assert out.exists() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if script == "char_rnn.py":
        assert re.search(r"speed-up \d+\.\d+x", result.stdout), result.stdout[-2000:]


# ---- Optional dependencies: checked at start, with the extra to install -----------------------------

# Runs an example with some top-level modules made unimportable, as if not installed.
BLOCKED_RUN = """
import importlib.abc, os, runpy, sys

blocked = set(sys.argv[1].split(","))


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
script = sys.argv[2]
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script, blocked", [(c[0], "matplotlib") for c in CASES] + [("char_rnn.py", "torch,matplotlib")],
                         ids=[c[0] for c in CASES] + ["char_rnn.py-torch"])
def test_missing_optional_dependency_stops_the_example_at_once(tmp_path, script, blocked):
    # digits_cnn.py used to train for minutes and die at the plot on `import matplotlib`.
    out = tmp_path / "curve.png"
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, blocked, str(EXAMPLES / script), "--quick",
                             "--out", str(out)], capture_output=True, text=True, env=example_env(), timeout=600)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout == "", result.stdout[-2000:]  # stopped before any work
    assert 'pip install "fastrnn[examples]"' in result.stderr, result.stderr[-2000:]
    assert f"{script} needs {' and '.join(blocked.split(','))}, not installed here" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_the_examples_extra_lists_what_the_examples_import():
    import ast
    import tomllib

    def required_imports(path):
        """Top-level third-party modules imported outside a `try: ... except ImportError`."""
        tree = ast.parse(path.read_text())
        optional = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                optional.update(id(inner) for statement in node.body for inner in ast.walk(statement))
        names = set()
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.partition(".")[0])
        return names - set(sys.stdlib_module_names) - {"fastrnn", "numpy", "common"}  # numpy: fastrnn's own

    imported = set().union(*(required_imports(p) for p in EXAMPLES.glob("*.py")))
    extra = tomllib.loads((EXAMPLES.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0] for dep in extra["examples"]}
    assert imported == listed  # distribution names equal module names for these
    sys.path.insert(0, str(EXAMPLES))
    try:
        import common
    finally:
        sys.path.remove(str(EXAMPLES))
    assert set(common.REQUIREMENTS) == listed
