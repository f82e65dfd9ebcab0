"""tools/gpu_round.py, the GPU round, kept from rotting: its dry run (no GPU; the installed
fastrnn, not a build) runs every CUDA test file in its own process with every test skipped,
writes the summary a GPU session brings back, and stays inside its time guard; the benchmarks
still accept the options the round passes."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_round.py"
MAX_FILES_BACK = 8  # the device tool brings back at most 8 files from $OUT


def load_round():
    spec = importlib.util.spec_from_file_location("gpu_round", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dry_run(command, out, budget=None):
    env = dict(os.environ, OUT=str(out), FASTRNN_ROUND_NO_BUILD="1")
    argv = [sys.executable, str(SCRIPT), command, "--dry-run"] + (["--budget", str(budget)] if budget else [])
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    with open(out / f"round-{command}.json") as f:
        return result, json.load(f)


def test_step_timeout_keeps_a_floor_for_every_later_step():
    gpu_round = load_round()
    assert gpu_round.step_timeout(300, 1) == 300
    assert gpu_round.step_timeout(300, 5, floor=30) == 300 - 4 * 30
    assert gpu_round.step_timeout(100, 5, floor=30) == 30  # less than the floors: each gets one
    assert gpu_round.step_timeout(29, 1, floor=30) is None  # not even the floor: not started


def test_budget_over_eight_minutes_is_refused():
    gpu_round = load_round()
    with pytest.raises(SystemExit) as exit_info:
        gpu_round.main(["tests", "--budget", str(gpu_round.MAX_BUDGET_S + 1)])
    assert exit_info.value.code == 2
    budgets = gpu_round.DEFAULT_BUDGET_S
    assert gpu_round.MAX_BUDGET_S <= 480 and max(budgets.values()) <= gpu_round.MAX_BUDGET_S
    # Both commands and a 2-minute machine start inside the 15 minutes of device time.
    assert 120 + budgets["tests"] + budgets["bench"] <= 15 * 60


def test_counts_from_the_log_of_a_killed_file():
    log = ("tests/test_a.py::test_one[7] PASSED  [ 33%]\n"
           "tests/test_a.py::test_two FAILED  [ 66%]\n"
           "tests/test_a.py::test_three \n")
    counts = load_round().counts_from_log(log)
    assert (counts["passed"], counts["failed"], counts["first_failure"]) == (1, 1, "tests/test_a.py::test_two")
    assert counts["died_in"] == "tests/test_a.py::test_three"


@pytest.mark.slow
def test_dry_run_of_the_tests_command(tmp_path):
    result, summary = dry_run("tests", tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    gpu_round = load_round()
    files = gpu_round.cuda_test_files()
    assert "tests/test_cuda_rnn.py" in files and "tests/test_conv_cuda.py" in files
    assert [(e["file"], e["env"]) for e in summary["files"]] == gpu_round.test_runs()
    for entry in summary["files"]:
        assert entry["status"] == "ok", entry
        assert entry["passed"] == entry["failed"] == entry["errors"] == 0 and entry["skipped"] > 0, entry
        assert entry["first_failure"] is None
    assert summary["status"] == "ok" and summary["total"]["skipped"] == sum(e["skipped"] for e in summary["files"])
    assert summary["within_budget"] and summary["elapsed_s"] <= summary["budget_s"]
    for key in ("python", "torch", "nvcc", "cmake", "ninja", "pytest_timeout"):
        assert key in summary["preflight"]
    suites = ET.parse(tmp_path / "junit.xml").getroot().findall("testsuite")
    assert len(suites) == len(summary["files"]) and suites[0].get("name") == files[0]
    assert (tmp_path / "round-tests.log").read_text().count("skipped") >= len(files)
    assert len(os.listdir(tmp_path)) <= MAX_FILES_BACK


@pytest.mark.slow
def test_dry_run_of_the_bench_command(tmp_path):
    result, summary = dry_run("bench", tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    names = [s["name"] for s in summary["steps"]]
    assert names == [name for name, _, _ in load_round().BENCH_STEPS]
    assert all(s["status"] == "dry run: options accepted" for s in summary["steps"]), summary["steps"]
    assert "TF32" in summary["fairness"] and "cuDNN" in summary["fairness"]
    assert summary["within_budget"]
    assert len(os.listdir(tmp_path)) <= MAX_FILES_BACK
