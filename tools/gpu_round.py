#!/usr/bin/env python3
"""The GPU round: what a session lent a GPU runs, as two commands (a third is optional).

    python3 tools/gpu_round.py tests      # preflight, build for this GPU only, the CUDA tests
    python3 tools/gpu_round.py bench      # the CUDA benchmarks (rebuilds only if the build is gone)
    python3 tools/gpu_round.py sanitize   # optional: compute-sanitizer memcheck + racecheck,
                                          # the first CUDA test of each test file

Through the device tool, each as one `run` with timeout_s=540, in this order, on the same warm
machine (a second command a fresh machine gets rebuilds first, inside its own budget):
    run(command="python3 tools/gpu_round.py tests", timeout_s=540)
    run(command="python3 tools/gpu_round.py bench", timeout_s=540)
(timeout_s above the budget, so the round's own guard, not the tool's kill, ends a command.)

Limits this is built for (issue 26): 15 minutes of device time in all, each machine start (1-2
minutes) included; 10 minutes a command; at most 8 files back from $OUT, at most 2 folders down.
So each command has a deadline, --budget seconds from its start, at most 480 (8 minutes: 2 of
the 10 left as margin), and every step it starts gets a timeout that ends before that deadline,
keeping a floor of 30 s for each step after it; a step killed at its timeout is recorded as such
and the round goes on. Default budgets: tests 420 s, bench 330 s: with a 2-minute start that is
2 + 7 + 5.5 = 14.5 minutes at the very worst, inside the 15. If the tests command ends early,
give the bench command what is left (--budget, up to 480).

Build time (estimated, never measured on the GPU machine): the build for one architecture
(FASTRNN_CUDA_ARCHS=90, Release, ninja -j2) took 474 s of wall time with 2 cores here, measured
with another CI build running beside it: 16 .cu files, 372 s of nvcc in all, the longest one
(csrc/cuda/conv.cu) 79 s; 562 s of C++ compiles. With 16 cores the jobs run side by side, so the
build is bounded by the longest file and (934 s / 16 =) 58 s of work: about 1.5-2 minutes with
pip's overhead. The build's own timeout is what is left of the budget less the tests' floors.

Faults: a device fault (illegal address, trap) poisons its process's CUDA context, so every CUDA
test file runs in its own pytest process, with CUDA_LAUNCH_BLOCKING=1 (the fault is reported by
the launch that made it) and, where pytest-timeout is installed (it is on the GPU machine), a
per-test timeout that ends the process (a hung kernel blocks in C, where a signal cannot reach).
tests/test_cuda_rnn.py runs a second time with FASTRNN_CUDA_PERSISTENT=0 (the step-wise path),
last, as the least important.

What comes back in $OUT (rewritten after each step, so a command killed at the limit still
brings back whatever had run; without $OUT the files go to build/gpu-round/out):
    tests:    round-tests.json (per file: passed, failed, skipped, errors, first failure;
              versions, build), round-tests.log (all output), junit.xml (all files), build.log
    bench:    round-bench.json (versions, TF32 state, each step's status and the rows of
              conv_cuda.py and cuda_persistent.py), round-bench.log, and bench/run.py's
              bench/results/<gpu>-<date>.json and .md
    sanitize: round-sanitize.json, round-sanitize.log
Commit them under bench/results/ (round-*.json renamed <gpu>-<date>-<command>.json).

--dry-run (no GPU needed): the same steps, with every CUDA test skipped and the benchmarks
only parsing their options; tests/test_gpu_round.py runs it in CI so this script cannot rot.
--no-build (or FASTRNN_ROUND_NO_BUILD=1) uses the fastrnn already importable instead of building.
"""

import argparse
import datetime
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

STARTED = time.monotonic()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build", "gpu-round")  # the build and the benchmarks' scratch files
SITE = os.path.join(WORK, "site")  # fastrnn installed here, first on PYTHONPATH
DEFAULT_BUDGET_S = {"tests": 420, "bench": 330, "sanitize": 300}
MAX_BUDGET_S = 480  # 8 minutes: 2 minutes of margin under the device tool's 10-minute kill
MIN_STEP_S = 30  # what a test file or a benchmark step is guaranteed before the deadline
END_RESERVE_S = 5  # for the last summary write
TEST_TIMEOUT_S = 90  # per test, where pytest-timeout is present

# (name, arguments after python3, seconds at most): the order is the order of importance.
BENCH_STEPS = [
    ("run", ["bench/run.py", "--device", "cuda", "--quick", "--tf32", "off,on", "--budget-s", "{budget}"], 150),
    ("cuda_persistent", ["bench/cuda_persistent.py", "--dtypes", "float32", "float16", "--repeats", "10",
                         "--json", "{json}"], 60),
    ("cuda_persistent_training", ["bench/cuda_persistent.py", "--training", "--dtypes", "float32",
                                  "--repeats", "5", "--json", "{json}"], 40),
    ("conv_cuda_float16", ["bench/conv_cuda.py", "--dtype", "float16", "--repeats", "20", "--json", "{json}"], 30),
    ("conv_cuda_float32_tf32_off", ["bench/conv_cuda.py", "--dtype", "float32", "--tf32", "off",
                                    "--repeats", "20", "--json", "{json}"], 30),
    ("conv_cuda_float32_tf32_on", ["bench/conv_cuda.py", "--dtype", "float32", "--tf32", "on",
                                   "--repeats", "20", "--json", "{json}"], 30),
]
RUN_PY_RESERVE_S = 50  # bench/run.py's start, limit measurements and save, outside its --budget-s


def step_timeout(remaining, steps_left, floor=MIN_STEP_S):
    """Seconds the next of steps_left steps may take when `remaining` seconds are left: all of
    it but a floor for each later step, or None when not even the floor is left (the step and
    those after it are recorded as not run)."""
    if remaining < floor:
        return None
    return max(floor, remaining - floor * (steps_left - 1))


def cuda_test_files():
    """The test files with tests marked `cuda`, in name order."""
    files = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py"))):
        with open(path) as f:
            if re.search(r"\bmark\.cuda\b", f.read()):
                files.append(os.path.relpath(path, ROOT))
    return files


def test_runs():
    """(file, environment) of each pytest process: every CUDA test file, then the CUDA RNN
    tests again with the persistent recurrence off, so the step-wise path runs too."""
    return [(f, {}) for f in cuda_test_files()] + [("tests/test_cuda_rnn.py", {"FASTRNN_CUDA_PERSISTENT": "0"})]


class Round:
    """One command's log, summary file and deadline."""

    def __init__(self, command, args):
        self.command, self.args = command, args
        self.deadline = STARTED + args.budget
        self.out = os.environ.get("OUT") or os.path.join(WORK, "out")
        os.makedirs(self.out, exist_ok=True)
        self.log_file = open(os.path.join(self.out, f"round-{command}.log"), "w")
        self.summary = {"command": command, "dry_run": args.dry_run, "budget_s": args.budget,
                        "started": datetime.datetime.now().isoformat(timespec="seconds")}

    def remaining(self):
        return self.deadline - time.monotonic() - END_RESERVE_S

    def log(self, message):
        line = f"[gpu_round {self.command} {time.monotonic() - STARTED:5.0f} s] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self):
        self.summary["elapsed_s"] = round(time.monotonic() - STARTED, 1)
        self.summary["within_budget"] = self.summary["elapsed_s"] <= self.args.budget
        write_json(os.path.join(self.out, f"round-{self.command}.json"), self.summary)

    def run(self, argv, timeout, env=None, log_path=None):
        """Runs argv from the repository root, its output to the console and the log (or to
        log_path alone); kills its process group at the timeout. Returns (exit code or None if
        killed, seconds, output)."""
        start = time.monotonic()
        sink = open(log_path, "w") if log_path else self.log_file
        # Its own process group, so a kill at the timeout takes its children too; not its own
        # session, so the device tool still ends it if this script is killed.
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", process_group=0)
        lines = []

        def pump():
            for line in proc.stdout:
                lines.append(line)
                sink.write(line)
                sink.flush()
                if not log_path:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        reader.join(timeout=10)
        if log_path:
            sink.close()
        return code, round(time.monotonic() - start, 1), "".join(lines)


def write_json(path, document):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(document, f, indent=1)
    os.replace(tmp, path)


def environment(site):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if site:
        env["PYTHONPATH"] = os.pathsep.join([site] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def hide_gpu(rnd):
    """A dry run is the CPU's run even on a machine with a GPU."""
    return {"CUDA_VISIBLE_DEVICES": ""} if rnd.args.dry_run else {}


PREFLIGHT = r"""
import json, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["gpu"] = torch.cuda.get_device_name()
    info["arch"] = "%d%d" % torch.cuda.get_device_capability()
    info["torch_tf32_defaults"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                   "cudnn": torch.backends.cudnn.allow_tf32}
print(json.dumps(info))
"""


def tool_version(name, flag="--version"):
    if not shutil.which(name):
        return None
    try:
        lines = subprocess.run([name, flag], capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (lines[-1] if name == "nvcc" else lines[0]) if lines else "?"


def preflight(rnd, need_build, need_sanitizer=False):
    """Versions of everything the round uses, into the summary; stops at once when one is
    missing (in a dry run only what the dry run itself uses must be there)."""
    info = {}
    code, _, output = rnd.run([sys.executable, "-c", PREFLIGHT], timeout=120, log_path=os.path.join(WORK, "preflight.log"))
    if code == 0:
        info.update(json.loads(output.strip().splitlines()[-1]))
    info["nvcc"] = tool_version("nvcc")
    info["cmake"] = tool_version("cmake")
    info["ninja"] = tool_version("ninja")
    info["nvidia_smi"] = tool_version("nvidia-smi", "-L")
    info["compute_sanitizer"] = tool_version("compute-sanitizer")
    info["pytest_timeout"] = importlib.util.find_spec("pytest_timeout") is not None
    info["cores"] = os.cpu_count()
    rnd.summary["preflight"] = info
    for key, value in info.items():
        rnd.log(f"preflight: {key}: {value}")
    missing = [] if code == 0 else ["torch (python3 -c 'import torch' failed)"]
    if need_build:
        missing += [name for name in ("nvcc", "cmake", "ninja") if not info[name]]
    if not rnd.args.dry_run:
        if code == 0 and not info["cuda_available"]:
            missing.append("a CUDA device visible to torch")
        if need_sanitizer and not info["compute_sanitizer"]:
            missing.append("compute-sanitizer")
    if missing:
        rnd.summary["status"] = "preflight failed: missing " + ", ".join(missing)
        rnd.log("PREFLIGHT FAILED: missing " + ", ".join(missing))
        rnd.save()
        sys.exit(2)
    return info


BUILD_INFO = "import fastrnn, json; print(json.dumps(fastrnn.build_info()))"


def installed_build(rnd, site):
    code, _, output = rnd.run([sys.executable, "-c", BUILD_INFO], timeout=120, env=environment(site),
                              log_path=os.path.join(WORK, "build_info.log"))
    return json.loads(output.strip().splitlines()[-1]) if code == 0 else None


def build(rnd, info, floor_after):
    """Installs fastrnn with the CUDA kernels for this GPU's architecture only into SITE (kept,
    with the CMake build folder, for the next command on the same machine). Returns the site
    to import from (None: the fastrnn already importable)."""
    if rnd.args.no_build:
        rnd.summary["build"] = {"status": "skipped (--no-build)", "build_info": installed_build(rnd, None)}
        rnd.log(f"build skipped (--no-build): {rnd.summary['build']['build_info']}")
        return None
    arch = os.environ.get("FASTRNN_CUDA_ARCHS") or info.get("arch") or "90"
    if rnd.command != "tests" and os.path.isdir(os.path.join(SITE, "fastrnn")):
        existing = installed_build(rnd, SITE)
        if existing and existing.get("cuda_compiled") and existing.get("cuda_archs") == arch.replace(";", ","):
            rnd.summary["build"] = {"status": "reused", "arch": arch, "build_info": existing}
            rnd.log(f"reusing the build in {SITE} (sm_{arch})")
            return SITE
    shutil.rmtree(SITE, ignore_errors=True)
    timeout = rnd.remaining() - floor_after
    rnd.log(f"building fastrnn (FASTRNN_CUDA=ON, archs {arch}, {os.cpu_count()} jobs) into {SITE}, "
            f"timeout {timeout:.0f} s; log: build.log")
    env = dict(environment(None), FASTRNN_CUDA="ON", FASTRNN_CUDA_ARCHS=arch,
               CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count()))
    # --no-build-isolation: the GPU machine has the build tools and no registry to fetch them from.
    argv = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-cache-dir",
            "--target", SITE, "--config-settings", f"build-dir={os.path.join(WORK, 'cmake')}", "-v", ROOT]
    code, seconds, output = rnd.run(argv, timeout=max(timeout, 1), env=env, log_path=os.path.join(rnd.out, "build.log"))
    status = "ok" if code == 0 else ("killed at its timeout" if code is None else f"failed (exit {code})")
    rnd.summary["build"] = {"status": status, "arch": arch, "seconds": seconds}
    if code != 0:
        rnd.log(f"BUILD {status.upper()} after {seconds} s; the end of build.log:\n" + "".join(output.splitlines(True)[-40:]))
        rnd.summary["status"] = "build " + status
        rnd.save()
        sys.exit(1)
    rnd.summary["build"]["build_info"] = installed_build(rnd, SITE)
    rnd.log(f"built in {seconds} s: {rnd.summary['build']['build_info']}")
    rnd.save()
    return SITE


# --- tests ----------------------------------------------------------------------------------

OUTCOME = re.compile(r"^(\S+::\S.*?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def counts_from_junit(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    count = lambda key: sum(int(s.get(key, 0)) for s in suites)  # noqa: E731
    failed, errors, skipped = count("failures"), count("errors"), count("skipped")
    first = None
    for case in root.iter("testcase"):
        for element in case:
            if element.tag in ("failure", "error"):
                first = first or f"{case.get('classname')}::{case.get('name')}: {element.get('message', '')}"[:2000]
    return {"passed": count("tests") - failed - errors - skipped, "failed": failed, "skipped": skipped,
            "errors": errors, "first_failure": first}, suites


def counts_from_log(output):
    """Counts from pytest -v's lines when there is no junit file (the process was killed or
    crashed): a test that started and never finished is the one it died in."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "first_failure": None}
    key = {"PASSED": "passed", "XFAIL": "passed", "FAILED": "failed", "XPASS": "failed", "SKIPPED": "skipped",
           "ERROR": "errors"}
    last_started = None
    for line in output.splitlines():
        match = OUTCOME.match(line)
        if match:
            counts[key[match.group(2)]] += 1
            if match.group(2) in ("FAILED", "ERROR", "XPASS") and not counts["first_failure"]:
                counts["first_failure"] = match.group(1)
            last_started = None
        elif re.match(r"^tests/\S+::\S", line):
            last_started = line.split()[0]
    if last_started:
        counts["died_in"] = last_started
    return counts


def run_tests(rnd):
    info = preflight(rnd, need_build=not rnd.args.no_build)
    runs = test_runs()
    rnd.summary["files"] = [{"file": f, "env": extra, "status": "pending"} for f, extra in runs]
    files = [f for f, _ in runs]
    site = build(rnd, info, floor_after=MIN_STEP_S * min(len(files), 3))
    env = dict(environment(site), CUDA_LAUNCH_BLOCKING="1", **hide_gpu(rnd))
    timeout_args = [f"--timeout={rnd.args.test_timeout}", "--timeout-method=thread"] if info["pytest_timeout"] else []
    rnd.summary["per_test_timeout_s"] = rnd.args.test_timeout if timeout_args else None
    junit = ET.Element("testsuites")
    for k, entry in enumerate(rnd.summary["files"]):
        timeout = step_timeout(rnd.remaining(), len(files) - k)
        if timeout is None:
            entry["status"] = "not run: time budget spent"
            rnd.log(f"{entry['file']} {entry['env'] or ''}: not run, the budget is spent")
            continue
        label = " ".join([entry["file"]] + [f"{k}={v}" for k, v in entry["env"].items()])
        xml = os.path.join(WORK, f"junit-{k}.xml")
        if os.path.exists(xml):
            os.remove(xml)
        rnd.log(f"{label}: pytest -m cuda, timeout {timeout:.0f} s")
        argv = [sys.executable, "-m", "pytest", entry["file"], "-m", "cuda", "-v", "-p", "no:cacheprovider",
                f"--junitxml={xml}", *timeout_args, *rnd.args.pytest_args]
        code, seconds, output = rnd.run(argv, timeout=timeout, env=dict(env, **entry["env"]))
        entry["seconds"], entry["exit_code"] = seconds, code
        if os.path.exists(xml):
            counts, suites = counts_from_junit(xml)
            for suite in suites:
                suite.set("name", label)
                junit.append(suite)
            ET.ElementTree(junit).write(os.path.join(rnd.out, "junit.xml"), encoding="unicode")
        else:
            counts = counts_from_log(output)
        entry.update(counts)
        bad = counts["failed"] + counts["errors"]
        if code is None:
            entry["status"] = f"killed at its timeout ({timeout:.0f} s)"
        elif code in (0, 5) and not bad:  # 5: no test collected
            entry["status"] = "ok"
        elif code in (1, 5):
            entry["status"] = "failed"
        else:
            entry["status"] = f"crashed (exit {code})" if code < 0 or code > 5 else f"pytest exit {code}"
        rnd.log(f"{label}: {entry['status']}: {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped, {counts['errors']} errors in {seconds} s"
                + (f"; first failure: {counts['first_failure'][:300]}" if counts["first_failure"] else ""))
        rnd.save()
    total = {key: sum(e.get(key, 0) for e in rnd.summary["files"]) for key in ("passed", "failed", "skipped", "errors")}
    ok = all(e["status"] == "ok" for e in rnd.summary["files"])
    rnd.summary["total"] = total
    rnd.summary["status"] = "ok" if ok else "failed"
    rnd.save()
    rnd.log(f"done: {total}, status {rnd.summary['status']}, {rnd.summary['elapsed_s']} s of {rnd.args.budget}")
    return 0 if ok else 1


# --- benchmarks ----------------------------------------------------------------------------

def device_slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_bench(rnd):
    info = preflight(rnd, need_build=not rnd.args.no_build)
    site = build(rnd, info, floor_after=MIN_STEP_S * len(BENCH_STEPS))
    env = dict(environment(site), **hide_gpu(rnd))
    rnd.summary["torch_tf32_defaults"] = info.get("torch_tf32_defaults")
    rnd.summary["fairness"] = (
        "float32: run.py times each case with TF32 off, then on, on both sides (torch.backends.cuda.matmul."
        "allow_tf32 and torch.backends.cudnn.allow_tf32 set together; fastrnn reads the same flags); "
        "conv_cuda.py runs float32 with TF32 off and on; cuda_persistent.py with TF32 off. torch exposes "
        "no cuDNN algorithm id: each row's torch_kernels names the CUDA kernels torch's side launched.")
    results = os.path.join(ROOT, "bench", "results")
    rnd.summary["steps"] = []
    before = set(glob.glob(os.path.join(results, "*.json")))
    for k, (name, template, cap) in enumerate(BENCH_STEPS):
        step = {"name": name, "status": "pending"}
        rnd.summary["steps"].append(step)
        timeout = step_timeout(rnd.remaining(), len(BENCH_STEPS) - k)
        if timeout is None:
            step["status"] = "not run: time budget spent"
            rnd.log(f"{name}: not run, the budget is spent")
            continue
        timeout = min(cap, timeout)
        json_path = os.path.join(WORK, f"{name}.json")
        if os.path.exists(json_path):
            os.remove(json_path)
        argv = [a.format(budget=max(1, timeout - RUN_PY_RESERVE_S), json=json_path) for a in template]
        step["argv"] = argv
        rnd.log(f"{name}: {' '.join(argv)} (timeout {timeout:.0f} s)")
        code, seconds, output = rnd.run([sys.executable, *argv], timeout=timeout, env=env)
        step.update(seconds=seconds, exit_code=code)
        if rnd.args.dry_run:
            # Without a GPU every benchmark stops at its device check, after its imports and its
            # options: what the dry run checks is that both still work as the round calls them.
            reached = code == 1 and re.search(r"no CUDA device|needs a CUDA GPU", output)
            step["status"] = "dry run: options accepted" if reached else f"dry run: failed (exit {code})"
        else:
            step["status"] = "ok" if code == 0 else ("killed at its timeout" if code is None else f"failed (exit {code})")
        if os.path.exists(json_path):
            with open(json_path) as f:
                step["result"] = json.load(f)
        new = sorted(set(glob.glob(os.path.join(results, "*.json"))) - before)
        for path in new:  # bench/run.py's result file and its table
            for copy in (path, path[:-len(".json")] + ".md"):
                if os.path.exists(copy):
                    shutil.copy(copy, rnd.out)
            step["result_file"] = os.path.relpath(path, ROOT)
        before |= set(new)
        rnd.log(f"{name}: {step['status']} in {seconds} s")
        if info.get("gpu"):
            stem = f"{device_slug(info['gpu'])}-{datetime.date.today().isoformat()}-round-bench.json"
            write_json(os.path.join(results, stem), rnd.summary)
        rnd.save()
    good = ("ok", "dry run: options accepted")
    ok = all(s["status"] in good for s in rnd.summary["steps"])
    rnd.summary["status"] = "ok" if ok else "incomplete"
    rnd.save()
    rnd.log(f"done: status {rnd.summary['status']}, {rnd.summary['elapsed_s']} s of {rnd.args.budget}")
    return 0 if ok else 1


# --- compute-sanitizer -----------------------------------------------------------------------

def first_cuda_tests(rnd, env):
    """The first CUDA test collected from each test file: one case per kernel family."""
    code, _, output = rnd.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda",
                               "-p", "no:cacheprovider", *cuda_test_files()], timeout=max(rnd.remaining() / 4, 1),
                              env=env, log_path=os.path.join(WORK, "collect.log"))
    first = {}
    for line in output.splitlines():
        if "::" in line and not line.startswith(" "):
            first.setdefault(line.split("::")[0], line.strip())
    return list(first.values())


def run_sanitize(rnd):
    info = preflight(rnd, need_build=not rnd.args.no_build, need_sanitizer=True)
    site = build(rnd, info, floor_after=2 * MIN_STEP_S)
    env = environment(site)
    cases = rnd.args.cases or first_cuda_tests(rnd, env)
    rnd.summary["cases"] = cases
    rnd.summary["tools"] = []
    tools = ["memcheck", "racecheck"]
    for k, tool in enumerate(tools):
        entry = {"tool": tool}
        rnd.summary["tools"].append(entry)
        timeout = step_timeout(rnd.remaining(), len(tools) - k, floor=2 * MIN_STEP_S)
        if timeout is None or rnd.args.dry_run:
            entry["status"] = "dry run: not run" if rnd.args.dry_run else "not run: time budget spent"
            rnd.log(f"{tool}: {entry['status']}")
            continue
        # Only fastrnn's kernels are checked (their mangled names hold the namespace): torch's
        # own would spend the time. One process for all cases: the sanitizer names the first fault.
        argv = ["compute-sanitizer", "--tool", tool, "--kernel-name", "kns=fastrnn", "--error-exitcode", "86",
                "--print-limit", "20", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *cases]
        rnd.log(f"{tool}: {' '.join(argv)} (timeout {timeout:.0f} s)")
        code, seconds, output = rnd.run(argv, timeout=timeout, env=env)
        summary = re.findall(r"ERROR SUMMARY: (\d+) error", output)
        entry.update(seconds=seconds, exit_code=code, errors=int(summary[-1]) if summary else None,
                     status="killed at its timeout" if code is None else ("ok" if code == 0 else "errors found"
                                                                          if code == 86 else f"failed (exit {code})"))
        entry["first_report"] = next((line for line in output.splitlines() if line.startswith("========= ") and
                                      "ERROR SUMMARY" not in line and "COMPUTE-SANITIZER" not in line), None)
        rnd.log(f"{tool}: {entry['status']} in {seconds} s")
        rnd.save()
    ok = all(e["status"] in ("ok", "dry run: not run") for e in rnd.summary["tools"])
    rnd.summary["status"] = "ok" if ok else "failed"
    rnd.save()
    rnd.log(f"done: status {rnd.summary['status']}, {rnd.summary['elapsed_s']} s of {rnd.args.budget}")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["tests", "bench", "sanitize"])
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds this command may take, from its start (at most {MAX_BUDGET_S}; "
                        f"default {DEFAULT_BUDGET_S})")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: CUDA tests skip, benchmarks parse only")
    parser.add_argument("--no-build", action="store_true", default=os.environ.get("FASTRNN_ROUND_NO_BUILD") == "1",
                        help="use the fastrnn already importable (also FASTRNN_ROUND_NO_BUILD=1)")
    parser.add_argument("--test-timeout", type=int, default=TEST_TIMEOUT_S, help="seconds per test (pytest-timeout)")
    parser.add_argument("--cases", nargs="+", default=None, help="sanitize: these test ids, not the first of each file")
    parser.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[], help="tests: passed on to pytest")
    args = parser.parse_args(argv)
    args.budget = args.budget or DEFAULT_BUDGET_S[args.command]
    if not 0 < args.budget <= MAX_BUDGET_S:
        parser.error(f"--budget must be in (0, {MAX_BUDGET_S}] seconds: the device tool kills a command at 600 s "
                     "and what runs past the kill is lost")
    os.makedirs(WORK, exist_ok=True)
    rnd = Round(args.command, args)
    return {"tests": run_tests, "bench": run_bench, "sanitize": run_sanitize}[args.command](rnd)


if __name__ == "__main__":
    sys.exit(main())
