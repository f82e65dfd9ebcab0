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


def example_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(fastrnn.__file__).parent.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


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
