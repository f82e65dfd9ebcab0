"""Differential fuzzing against torch: hypothesis draws cases over every public entry (nn modules,
functional, fastrnn.numpy, optimizers, clipping, utils), a child process runs each case with torch
and with fastrnn (tests/fuzz_cases.py) and reports whether they agree.

* Results: outputs and gradients (for RNNs the input's, h0/c0's and every weight's) within a
  tolerance chosen from the dtype (float64 1e-10, float32 2e-5, times the time steps or the
  reduction length). Errors: torch's exception type, and its message for the nn modules and the
  optimizers' constructors.
* Cases: sizes 0 and 1 in every dimension and sizes past the vector widths, float32/float64 and
  the dtypes the CPU kernels refuse, memory layouts (transposed, strided, offset, stride-0,
  channels-last, batch_first, packed), bad arguments, transforms (jit.trace, torch.func.grad,
  double backward, meta device), and now and then a lower instruction set's kernels (avx2, generic).
* Crashes: the cases run in a child python, many per child; a segfault, abort or hang (no answer
  in FASTRNN_FUZZ_TIMEOUT seconds, 120 by default) fails the test with the case, and a fresh child
  takes the next case.
* Reports: every case that disagrees is kept (hypothesis does not stop at the first); a test fails
  at the end with all of them, grouped by what went wrong, each group with its count, its
  smallest case and a line that reproduces it: ``python tests/fuzz_cases.py '<case>'``.

The tests are marked slow: a plain ``python3 -m pytest`` leaves them out, CI runs them
(``python3 -m pytest -m "slow or not slow"``; ``-m slow tests/test_fuzz.py`` runs these alone).

Profiles (hypothesis settings applied to these tests only, never loaded globally):

* default: a bounded, derandomized run (the same cases every time, about a minute on two cores);
* ``FASTRNN_FUZZ=long``: 25 times the examples, a fresh random seed each run (nightly);
  ``FASTRNN_FUZZ_EXAMPLES=n`` sets the examples per test in either profile, and
  ``FASTRNN_FUZZ_VERBOSE=1`` prints each test's counts (with ``pytest -rP``).
"""

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "fuzz_cases.py"
LONG = os.environ.get("FASTRNN_FUZZ", "") == "long"
TIMEOUT = float(os.environ.get("FASTRNN_FUZZ_TIMEOUT", "120"))

_common = dict(deadline=None, database=None, print_blob=False, phases=(Phase.explicit, Phase.generate),
               suppress_health_check=list(HealthCheck))
settings.register_profile("fastrnn-fuzz", derandomize=True, **_common)
settings.register_profile("fastrnn-fuzz-long", derandomize=False, **_common)
PROFILE = settings.get_profile("fastrnn-fuzz-long" if LONG else "fastrnn-fuzz")


def examples(default):
    """Examples per test: the default profile's count, 25x in the long profile, or FASTRNN_FUZZ_EXAMPLES."""
    if os.environ.get("FASTRNN_FUZZ_EXAMPLES"):
        return int(os.environ["FASTRNN_FUZZ_EXAMPLES"])
    return default * 25 if LONG else default


# ---- the child ---------------------------------------------------------------------------------------

class Child:
    """A python running tests/fuzz_cases.py --serve: one case in, one verdict out; restarted after a
    crash or a hang (the case in flight is the culprit)."""

    def __init__(self, timeout=TIMEOUT):
        self.proc = None
        self.stderr = None
        self.timeout = timeout

    def start(self):
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("FASTRNN_FUZZ_THREADS", "2"), PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, cwd=str(HERE), env=env, text=True,
                                     bufsize=1)
        ready = self._read(TIMEOUT)
        if ready is None or not ready.startswith("{"):
            detail = self._died()
            self.stop()
            raise RuntimeError(f"the fuzz child did not start: {detail}")

    def _read(self, timeout):
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return None
        return self.proc.stdout.readline()

    def _stderr(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def _side(self):
        """The side (torch or fastrnn) the child was running last: it names it on stderr."""
        sides = re.findall(r"fuzz_cases: the (\w+) side", self._stderr())
        return sides[-1] if sides else "?"

    def _died(self):
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "no exit"
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        return f"{how}; its stderr ends: {self._stderr()[-2500:].strip()}"

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # only the child this object started
                self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.stderr.close()
        self.proc = None

    def run(self, case):
        """{"problems": [...]} (empty: agree), or {"harness": traceback} for a bug in fuzz_cases.py."""
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._read(self.timeout)
        if line is None:
            side = self._side()
            self.stop()
            return {"problems": [f"hang: no answer in {self.timeout:.0f} s, in the {side} side (child killed)"]}
        if not line:
            side, detail = self._side(), self._died()
            self.stop()
            if side == "torch" and not case.get("oracle_crashed"):
                # torch itself crashed: no oracle; fastrnn's side alone must not crash
                return {**self.run({**case, "oracle_crashed": True}), "torch": "crashed"}
            return {"problems": [f"crash: the child died in the {side} side ({detail})"]}
        return json.loads(line)


@pytest.fixture(scope="module")
def child():
    c = Child()
    yield c
    c.stop()


# ---- findings ----------------------------------------------------------------------------------------

def _signature(text):
    """What a problem is, without its numbers (sizes, errors, indices) and tensor indices."""
    text = re.sub(r"0x[0-9a-f]+", "#", text)
    text = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)
    return text[:200]


def _size(case):
    """How big a case is (smaller ones make better repros)."""
    total = 0
    for k, v in case.items():
        if k != "seed" and isinstance(v, int) and not isinstance(v, bool):
            total += abs(v)
        elif isinstance(v, list):
            total += len(json.dumps(v)) // 4
    return (total, len(json.dumps(case)))


class Findings:
    def __init__(self, name):
        self.name, self.cases, self.groups = name, 0, {}
        self.torch_raised = 0  # cases where torch refused the call (the rest computed results)
        self.torch_crashed = []  # cases where torch itself crashed (fastrnn's side ran alone)

    def add(self, case, result):
        self.cases += 1
        self.torch_raised += result.get("torch") == "raised"
        if result.get("torch") == "crashed":
            self.torch_crashed.append(case)
        if "harness" in result:
            lines = result["harness"].strip().splitlines()
            problems = [f"harness error (a bug in tests/fuzz_cases.py): {lines[-1]}"]
        else:
            problems = result["problems"]
        if not problems:
            return
        key = _signature(problems[0])
        group = self.groups.setdefault(key, {"count": 0, "case": case, "problems": problems})
        group["count"] += 1
        if _size(case) < _size(group["case"]):
            group["case"], group["problems"] = case, problems

    def report(self):
        failing = sum(g["count"] for g in self.groups.values())
        lines = [f"{self.name}: {failing} of {self.cases} cases ({self.torch_raised} refused by torch) disagree "
                 f"with torch, in {len(self.groups)} groups"]
        if self.torch_crashed:  # not a failure: told so that torch's own crashes are seen
            lines[0] += (f"; torch itself crashed on {len(self.torch_crashed)}, e.g. "
                         f"{json.dumps(self.torch_crashed[0])}")
        for k, g in enumerate(sorted(self.groups.values(), key=lambda g: -g["count"]), 1):
            case = g["case"]
            summary = " ".join(f"{key}={json.dumps(v)}" for key, v in case.items() if key not in ("family", "seed"))
            lines.append(f"\n[{k}] {g['count']} case(s): {g['problems'][0]}")
            for p in g["problems"][1:4]:
                lines.append(f"      also: {p}")
            lines.append(f"    smallest case: {summary}")
            lines.append(f"    repro: python tests/fuzz_cases.py '{json.dumps(case)}'")
        return "\n".join(lines)


def fuzz(child, strategy, n, name, pinned=()):
    """Runs the pinned cases and n drawn ones through the child; fails with every disagreement."""
    findings = Findings(name)
    for case in pinned:
        findings.add(case, child.run(case))

    @settings(PROFILE, max_examples=examples(n))
    @given(strategy)
    def each(case):
        findings.add(case, child.run(case))

    each()
    if os.environ.get("FASTRNN_FUZZ_VERBOSE"):  # counts for a passing test too (pytest -rP shows them)
        print(findings.report().splitlines()[0])
    assert not findings.groups, findings.report()


# ---- strategies -----------------------------------------------------------------------------------------
# Each strategy draws one case in one of a few branches: "result" (valid arguments, results and
# gradients compared), "edge" (degenerate sizes: 0 and 1 in a dimension), "mistake" (a bad
# argument: the exception compared). Rare choices are drawn with sampled_from lists whose first,
# simplest element is the common one, since hypothesis favours simple choices.

seeds = st.integers(0, 2 ** 31 - 1)
FLOATS = ["float64", "float32"]
REFUSED = ["float16", "bfloat16", "int32", "bool", "complex64"]
TENSOR_LAYOUTS = ["contiguous", "contiguous", "transposed", "strided", "offset", "expanded"]


def pick(draw, *options):
    return draw(st.sampled_from(options))


def chance(draw, one_in):
    """True about once in `one_in` draws."""
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))


def rarely(draw, value, default, one_in=8):
    return value if chance(draw, one_in) else default


def dtype_choice(draw, refused=True):
    """Mostly the kernels' dtypes; now and then one the CPU kernels must refuse."""
    if refused and chance(draw, 16):
        return pick(draw, *REFUSED)
    return pick(draw, *FLOATS)


def with_isa(draw, case):
    """Now and then the kernels of a lower instruction set (where the CPU has it): the case's "isa"."""
    if chance(draw, 4):
        case["isa"] = pick(draw, "avx2", "generic")
    return case


def special(draw, one_in=12, values=("nan", "inf")):
    return pick(draw, *values) if chance(draw, one_in) else None


def pair(draw, choices):
    """(the argument as a case holds it: an int or {"tuple": [a, b]}, (a, b))."""
    a = pick(draw, *choices)
    if chance(draw, 3):
        b = pick(draw, *choices)
        return {"tuple": [a, b]}, (a, b)
    return a, (a, a)


RNN_MISTAKES = ["x_features", "x_rank1", "x_rank4", "x_dtype", "x_none", "hx_batch", "hx_layers", "hx_hidden",
                "hx_rank", "hx_dtype", "hx_int"]
LSTM_MISTAKES = ["hx_three", "hx_single", "hx_list", "cx_hidden"]
RNN_CTOR_MISTAKES = [{"num_layers": 0}, {"num_layers": -1}, {"num_layers": 1.5}, {"dropout": -0.1},
                     {"dropout": 1.5}, {"dropout": "0.5"}, {"dropout": None}, {"dropout": True}, {"bias": None},
                     {"bidirectional": "yes"}, {"batch_first": 2}, {"nonlinearity": "sigmoid"}]
EXTRA_VALUES = [None, -0.1, 1.5, "0.5", True, 0.0, 0.25, 1.0, float("nan")]
# jit.trace, torch.func.grad, double backward, the meta device (under no_grad), and the output
# changed in place between forward and backward.
TRANSFORMS = ["func_grad", "meta", "double_backward", "inplace_output"] * 2 + ["jit_trace"]  # (a trace costs ~1 s)


@st.composite
def rnn_module_cases(draw):
    mode = pick(draw, "RNN_TANH", "RNN_RELU", "LSTM", "GRU")
    wide = chance(draw, 5)  # sizes past the kernels' vector widths and row panels, split over threads
    case = {"family": "rnn_module", "mode": mode, "seed": draw(seeds),
            "I": pick(draw, 16, 31) if wide else rarely(draw, 0, pick(draw, 1, 2, 3, 5), 25),
            "H": pick(draw, 17, 33) if wide else rarely(draw, pick(draw, 0, -1), pick(draw, 1, 2, 3, 5), 25),
            "L": pick(draw, 1, 1, 2, 3),
            "T": pick(draw, 9, 4) if wide else rarely(draw, 0, pick(draw, 1, 1, 2, 3, 5, 8), 25),
            "B": pick(draw, 13, 27) if wide else pick(draw, 1, 1, 2, 3, 5, 0), "dtype": dtype_choice(draw),
            "bias": draw(st.booleans()),
            "bidirectional": draw(st.booleans()), "batch_first": draw(st.booleans()),
            "batched": rarely(draw, False, True, 5), "hx": draw(st.booleans()), "x_grad": draw(st.booleans()),
            "hx_grad": draw(st.booleans()), "params_grad": rarely(draw, False, True, 6),
            "train": rarely(draw, False, True, 4), "no_grad": rarely(draw, True, False, 10),
            "layout_x": pick(draw, *TENSOR_LAYOUTS), "layout_h": pick(draw, *TENSOR_LAYOUTS), "special": special(draw)}
    if mode == "LSTM" and case["H"] > 1 and chance(draw, 4):
        case["proj"] = draw(st.integers(1, case["H"] - 1))
    if chance(draw, 10):  # dropout between layers: only where torch and fastrnn draw no masks
        case["dropout"] = 0.5
        if case["L"] > 1:
            case["train"] = False
    if case["batched"] and case["B"] > 0 and case["T"] > 0 and chance(draw, 6):
        lengths = [draw(st.integers(1, case["T"])) for _ in range(case["B"])]
        case["enforce_sorted"] = draw(st.booleans())
        case["lengths"] = sorted(lengths, reverse=True) if case["enforce_sorted"] else lengths
    branch = pick(draw, "result", "result", "result", "mistake", "mistake", "constructor", "transform")
    if branch == "mistake":
        case["bad"] = pick(draw, *RNN_MISTAKES, *(LSTM_MISTAKES if mode == "LSTM" else ["hx_tuple"]))
        case["hx"] = case["hx"] or case["bad"].startswith(("hx", "cx"))
        if case["bad"] in ("x_rank1", "x_rank4", "x_none"):  # (no PackedSequence of those)
            case.pop("lengths", None)
            case.pop("enforce_sorted", None)
    elif branch == "constructor" and draw(st.booleans()):
        case["ctor"] = pick(draw, *RNN_CTOR_MISTAKES,
                            *([{"proj_size": 5}, {"proj_size": -1}] if mode == "LSTM" else [{"proj_size": 1}]))
    elif branch == "constructor":
        case["extra"] = {pick(draw, "recurrent_dropout", "input_dropout"): pick(draw, *EXTRA_VALUES)}
        case["train"] = False  # a valid probability draws masks only in training
    elif branch == "transform":
        case.pop("lengths", None)
        case.pop("enforce_sorted", None)
        case["transform"] = pick(draw, *TRANSFORMS)
        case["x_grad"] = case["transform"] not in ("meta", "jit_trace") or case["x_grad"]
        case["no_grad"] = case["transform"] == "meta"
    return with_isa(draw, case)


@st.composite
def rnn_cell_cases(draw):
    mode = pick(draw, "RNNCell_tanh", "RNNCell_relu", "LSTMCell", "GRUCell")
    wide = chance(draw, 5)
    case = {"family": "rnn_cell", "mode": mode, "seed": draw(seeds),
            "I": pick(draw, 16, 31) if wide else pick(draw, 1, 2, 3, 5, 0),
            "H": pick(draw, 17, 33) if wide else rarely(draw, 0, pick(draw, 1, 2, 3, 5), 12),
            "B": pick(draw, 13, 27) if wide else pick(draw, 1, 1, 2, 3, 5, 0),
            "dtype": dtype_choice(draw), "bias": draw(st.booleans()), "batched": rarely(draw, False, True, 4),
            "hx": draw(st.booleans()), "x_grad": draw(st.booleans()), "hx_grad": draw(st.booleans()),
            "params_grad": rarely(draw, False, True, 6), "no_grad": rarely(draw, True, False, 10),
            "layout_x": pick(draw, *TENSOR_LAYOUTS), "layout_h": pick(draw, *TENSOR_LAYOUTS), "special": special(draw)}
    if chance(draw, 3):
        case["bad"] = pick(draw, "x_features", "x_rank3", "x_dtype", "hx_batch", "hx_hidden", "hx_rank3", "hx_dtype",
                           *(["hx_three"] if mode == "LSTMCell" else []))
        case["hx"] = case["hx"] or case["bad"].startswith("hx")
    return with_isa(draw, case)


LAYER_MISTAKES = ["x_rank2", "x_rank4", "x_features", "w_ih_rows", "w_hh_rows", "w_hh_cols", "w_ih_rank1",
                  "b_ih_size", "b_hh_size", "h0_batch", "h0_hidden", "h0_rank3", "x_dtype", "h0_dtype", "b_dtype",
                  "w_hh_dtype", "all_float16", "all_int", "all_bfloat16", "empty_seq", "empty_batch", "hidden0",
                  "x_none", "w_ih_none", "w_hh_none"]


@st.composite
def layer_cases(draw, family):
    cell = pick(draw, "lstm", "gru", "rnn_tanh", "rnn_relu")
    wide = chance(draw, 5)
    case = {"family": family, "cell": cell, "seed": draw(seeds), "T": pick(draw, 1, 1, 2, 3, 5, 8),
            "B": pick(draw, 13, 27) if wide else pick(draw, 1, 1, 2, 3, 5),
            "I": pick(draw, 16, 31) if wide else pick(draw, 1, 2, 3, 5, 0),
            "H": pick(draw, 17, 33) if wide else pick(draw, 1, 2, 3, 5),
            "dtype": pick(draw, *FLOATS), "reverse": draw(st.booleans()), "h0": draw(st.booleans()),
            "c0": draw(st.booleans()), "bias_ih": rarely(draw, False, True, 4), "bias_hh": rarely(draw, False, True, 4)}
    if family == "functional_layer":
        case["layout_x"] = pick(draw, *TENSOR_LAYOUTS)
        case["layout_w"] = pick(draw, *TENSOR_LAYOUTS)
        case["grads"] = rarely(draw, False, True, 5)
        case["special"] = special(draw)
    else:
        case["layout_x"] = pick(draw, "contiguous", "contiguous", "flipped", "transposed", "strided", "fortran",
                                *(["list"] if case["dtype"] == "float64" else []))
        if chance(draw, 16):
            case["bad_ctx"] = pick(draw, "wrong_kind", "none", "dict")
    if chance(draw, 3):
        mistakes = [m for m in LAYER_MISTAKES if family == "functional_layer" or m != "all_bfloat16"]  # (no NumPy bf16)
        bad = pick(draw, *mistakes, *(["c0_hidden"] if cell == "lstm" else []),
                   *(["nonlinearity"] if cell.startswith("rnn") else []))
        case["bad"] = bad
        case["h0"] = case["h0"] or bad.startswith("h0")
        case["c0"] = case["c0"] or bad.startswith("c0")
        case["bias_ih"] = case["bias_ih"] or bad.startswith("b_")
        case["bias_hh"] = case["bias_hh"] or bad.startswith("b_")
        case.pop("bad_ctx", None)
    return with_isa(draw, case)


CONV_MISTAKES = {"stride": [0, -1, {"tuple": [1, 2, 3]}, 1.5, {"tuple": [1.5, 1.5]}],
                 "padding": [-1, "full", {"tuple": [1, 2, 3]}, {"tuple": [1.5, 1]}],
                 "dilation": [0, -1, {"tuple": [1, 1.5]}], "groups": [0, -1], "padding_strided": ["same"],
                 "bad": ["w_dtype", "x_rank5", "b_size", "w_channels"], "kernel": [0]}


@st.composite
def conv_cases(draw):
    api = pick(draw, "conv2d", "Conv2d", "conv_relu_pool2d", "ConvReLUPool2d")
    fused = "ool" in api
    wide = chance(draw, 5)  # 16+ channels, 3x3: the Winograd and blocked direct kernels
    groups = 1 if wide else pick(draw, 1, 1, 1, 2, 3)
    kh, kw = (3, 3) if wide and draw(st.booleans()) else (pick(draw, 1, 2, 3, 5), pick(draw, 1, 2, 3))
    stride, (sh, sw) = pair(draw, [1, 1, 2, 3])
    dilation, (dh, dw) = pair(draw, [1, 1, 2])
    if sh == sw == 1 and chance(draw, 4):
        padding = pick(draw, "same", "valid")
        ph = pw = 0
    else:
        padding, (ph, pw) = pair(draw, [0, 0, 1, 2])
    # Sizes with a valid output (at least 2x2 before the fused layers' pool), plus a little more.
    least = 2 * (1 + fused)
    H = max(1, dh * (kh - 1) + 1 - 2 * ph + sh * (least - 1)) + pick(draw, 0, 1, 2, 3)
    W = max(1, dw * (kw - 1) + 1 - 2 * pw + sw * (least - 1)) + pick(draw, 0, 1, 2, 3)
    case = {"family": "conv", "api": api, "seed": draw(seeds), "N": pick(draw, 1, 2, 3), "groups": groups,
            "C": pick(draw, 16, 32) if wide else groups * pick(draw, 1, 2, 3),
            "O": pick(draw, 16, 17) if wide else groups * pick(draw, 1, 2, 3), "H": H, "W": W, "kh": kh, "kw": kw,
            "stride": stride, "padding": padding, "dilation": dilation, "dtype": dtype_choice(draw),
            "bias": draw(st.booleans()), "batched": rarely(draw, False, True, 5), "grads": rarely(draw, False, True, 5),
            "layout_x": pick(draw, *TENSOR_LAYOUTS, "channels_last", "channels_last"),
            "layout_w": pick(draw, *TENSOR_LAYOUTS, "channels_last"), "special": special(draw, 10),
            "ties": rarely(draw, True, False, 6)}
    if api in ("Conv2d", "ConvReLUPool2d"):
        case["padding_mode"] = rarely(draw, pick(draw, "reflect", "replicate", "circular"), "zeros", 5)
    branch = pick(draw, "result", "result", "result", "edge", "mistake")
    if branch == "edge":  # a 0 or a 1 where the sizes allow it
        edge = pick(draw, "N", "C", "O", "H", "W", "one", "exact")
        if edge in ("N", "C", "O", "H", "W"):
            case[edge] = 0
        elif edge == "one":  # 1x1 input and kernel
            case.update(H=1, W=1, kh=1, kw=1, padding=0, stride=1, dilation=1)
        else:  # an output of exactly one row and column (or 2x2 for the fused layers)
            case.update(padding=0, H=dh * (kh - 1) + 1 + sh * (least - 2), W=dw * (kw - 1) + 1 + sw * (least - 2))
    elif branch == "mistake":
        what = pick(draw, *CONV_MISTAKES)
        value = pick(draw, *CONV_MISTAKES[what])
        if what == "padding_strided":
            case.update(padding="same", stride=2)
        elif what == "kernel":
            case[pick(draw, "kh", "kw")] = 0
        else:
            case[what] = value
    return with_isa(draw, case)


POOL_MISTAKES = {"kernel_size": [0, -1, 2.5, True, "2", {"tuple": [2, 2, 2]}, None, {"tuple": [2.5, 2]}],
                 "stride": [0, -1, 1.5, {"tuple": [1, 1.5]}], "padding": [-1, 0.5, 3, {"tuple": [1, 0.5]}],
                 "ceil_mode": ["yes"], "dilation": [0], "divisor_override": [0, -2, 2.5, "2"], "rank": [2, 5],
                 "small": [True]}


@st.composite
def pool_cases(draw):
    api = pick(draw, "max_pool2d", "avg_pool2d", "MaxPool2d", "AvgPool2d")
    is_max = "ax" in api
    kernel, (kh, kw) = pair(draw, [1, 2, 2, 3])
    kwargs = {"kernel_size": kernel}
    sh, sw = kh, kw
    if draw(st.booleans()):
        kwargs["stride"], (sh, sw) = pair(draw, [1, 2, 3])
    ph, pw = pick(draw, *range(kh // 2 + 1)), pick(draw, *range(kw // 2 + 1))
    if ph or pw:
        kwargs["padding"] = {"tuple": [ph, pw]} if ph != pw else ph
    dh = dw = 1
    if is_max and draw(st.booleans()):
        kwargs["dilation"], (dh, dw) = pair(draw, [1, 2])
    if draw(st.booleans()):
        kwargs["ceil_mode"] = draw(st.booleans())
    if is_max:
        kwargs["return_indices"] = draw(st.booleans())
    else:
        if draw(st.booleans()):
            kwargs["count_include_pad"] = draw(st.booleans())
        if chance(draw, 4):
            kwargs["divisor_override"] = pick(draw, 1, 3)
    H = max(1, dh * (kh - 1) + 1 - 2 * ph) + pick(draw, 0, 1, 2, 3, 5)
    W = max(1, dw * (kw - 1) + 1 - 2 * pw) + pick(draw, 0, 1, 2, 3, 5)
    wide = chance(draw, 5)  # more channels and larger planes: the vector loops and their tails
    shape = [pick(draw, 1, 2), pick(draw, 17, 32) if wide else pick(draw, 1, 2, 3), H + 9 * wide,
             W + 14 * wide][pick(draw, 0, 0, 1):]
    case = {"family": "pool", "api": api, "seed": draw(seeds), "shape": shape, "kwargs": kwargs,
            "dtype": dtype_choice(draw), "layout_x": pick(draw, *TENSOR_LAYOUTS, "channels_last", "channels_last"),
            "grad": rarely(draw, False, True, 5), "ties": rarely(draw, True, False, 4),
            "special": special(draw, 10, ("nan", "inf", "-inf"))}
    branch = pick(draw, "result", "result", "result", "edge", "mistake")
    if branch == "edge":
        edge = pick(draw, "batch", "channels", "exact", "one")
        if edge in ("batch", "channels"):
            shape[-3 if edge == "channels" or len(shape) == 3 else -4] = 0
        elif edge == "exact":  # one window (no padding) along each side
            kwargs.pop("padding", None)
            shape[-2:] = [dh * (kh - 1) + 1, dw * (kw - 1) + 1]
        else:
            shape[-2:] = [1, 1]
            kwargs.update(kernel_size=1, padding=0)
    elif branch == "mistake":
        what = pick(draw, *[w for w in POOL_MISTAKES if is_max or w != "dilation"
                            if not is_max or w != "divisor_override"])
        value = pick(draw, *POOL_MISTAKES[what])
        if what == "rank":
            case["shape"] = [2] * value
        elif what == "small":  # the input smaller than the window
            kwargs.update(kernel_size=3, padding=0)
            shape[-2:] = [2, pick(draw, 1, 2, 3)]
        else:
            kwargs[what] = value
    return with_isa(draw, case)


HYPER = {
    "SGD": {"lr": [0.1, 0.01], "momentum": [0, 0.9], "dampening": [0, 0.1], "nesterov": [False, True],
            "weight_decay": [0, 0.1], "maximize": [False, True]},
    "Adam": {"lr": [0.01, 0.1], "betas": [{"tuple": [0.9, 0.999]}, {"tuple": [0.5, 0.9]}], "eps": [1e-8, 1e-3],
             "weight_decay": [0, 0.1], "amsgrad": [False, True], "maximize": [False, True]},
    "AdamW": {"lr": [0.01], "betas": [{"tuple": [0.9, 0.999]}, {"tuple": [0.0, 0.5]}], "weight_decay": [0, 0.01, 0.5],
              "amsgrad": [False, True], "maximize": [False, True]},
    "RMSprop": {"lr": [0.01], "alpha": [0.99, 0.5], "eps": [1e-8, 1e-2], "weight_decay": [0, 0.1],
                "momentum": [0, 0.5], "centered": [False, True], "maximize": [False, True]},
    "Adagrad": {"lr": [0.1], "lr_decay": [0, 0.1], "weight_decay": [0, 0.1], "initial_accumulator_value": [0, 0.5],
                "eps": [1e-10, 1e-3], "maximize": [False, True]},
}
BAD_HYPER = {"lr": [-1.0, "0.1"], "momentum": [-0.5], "dampening": [-1], "betas": [{"tuple": [1.5, 0.9]},
                                                                                     {"tuple": [0.9, -0.1]}],
             "eps": [-1.0], "weight_decay": [-0.1], "alpha": [-1.0], "lr_decay": [-1.0],
             "initial_accumulator_value": [-1.0]}
# Small, past the vector widths with a tail (37, 97), scalar and empty.
PARAM_SHAPES = [[3], [2, 3], [37], [1, 1, 5], [97], [8, 16], [], [0], [4, 0]]


@st.composite
def optimizer_cases(draw):
    name = pick(draw, *sorted(HYPER))
    hyper = {k: pick(draw, *v) for k, v in HYPER[name].items() if draw(st.booleans())}
    if name == "SGD" and hyper.get("nesterov"):  # nesterov needs momentum and no dampening
        hyper.update(momentum=0.9, dampening=0)
    case = {"family": "optimizer", "opt": name, "seed": draw(seeds), "dtype": pick(draw, *FLOATS),
            "shapes": draw(st.lists(st.sampled_from(PARAM_SHAPES), min_size=1, max_size=3)),
            "hyper": hyper, "steps": pick(draw, 2, 1, 3), "sparse_grads": rarely(draw, True, False, 4),
            "layout": rarely(draw, "transposed", None, 4), "special": rarely(draw, "nan", None, 15)}
    if chance(draw, 4):  # fastrnn's additions: clipping inside the step, the L1 penalty's gradient
        case["hyper"]["max_grad_norm"] = pick(draw, 0.5, 1e3, None)
        if draw(st.booleans()):
            case["hyper"]["l1_decay"] = pick(draw, 0.01, 0.0)
    branch = pick(draw, "result", "result", "result", "hyperparameter", "state", "nesterov")
    if branch == "hyperparameter" and chance(draw, 5):
        case["hyper"][pick(draw, "l1_decay", "max_grad_norm")] = pick(draw, -1.0, 0.0)
    elif branch == "hyperparameter":
        key = pick(draw, *[k for k in BAD_HYPER if k in HYPER[name]])
        case["hyper"][key] = pick(draw, *BAD_HYPER[key])
    elif branch == "state":
        case["bad"] = pick(draw, "state_shape", "empty_state", "torch_state",
                           *(["amsgrad_later"] if name.startswith("Adam") else []))
        case["steps"] = 3
        if name == "SGD" and draw(st.booleans()):
            case["hyper"]["momentum"] = 0.9
    elif branch == "nesterov" and name == "SGD":
        case["hyper"].update(nesterov=True, momentum=pick(draw, 0, 0.9), dampening=pick(draw, 0, 0.5))
    return with_isa(draw, case)


def other(dtype):
    return "float64" if dtype == "float32" else "float32"


@st.composite
def clip_cases(draw):
    base = pick(draw, *FLOATS)
    grads = []
    for _ in range(pick(draw, 2, 1, 3, 4, 0)):
        if chance(draw, 6):
            grads.append(None)  # a parameter without a gradient
            continue
        dt = rarely(draw, pick(draw, other(base), other(base), "float16", "bfloat16"), base, 4)
        grads.append([pick(draw, *PARAM_SHAPES), dt, pick(draw, None, None, "strided", "transposed", "expanded",
                                                         "offset")])
    kwargs = {"max_norm": pick(draw, 1.0, 0.1, 100.0, 0.0, -1.0, float("inf"), float("nan"))}
    if draw(st.booleans()):
        kwargs["norm_type"] = pick(draw, 2.0, 1.0, 3.0, 0.5, float("inf"), float("-inf"), 0.0, 2)
    if draw(st.booleans()):
        kwargs["error_if_nonfinite"] = draw(st.booleans())
    if chance(draw, 4):
        kwargs["foreach"] = pick(draw, None, True, False)
    return with_isa(draw, {"family": "clip", "seed": draw(seeds), "grads": grads, "kwargs": kwargs,
                           "special": special(draw, 6), "single": rarely(draw, True, False, 8)})


@st.composite
def utils_cases(draw):
    fn = pick(draw, "sliding_windows", "shift_split", "reshape_split", "batchify", "tbptt_chunks", "stateful_len",
              "clip_grad_value_", "l1_penalty", "l2_penalty", "initialiser")
    case = {"family": "utils", "fn": fn, "seed": draw(seeds)}
    if fn in ("clip_grad_value_", "l1_penalty", "l2_penalty"):
        case["shapes"] = draw(st.lists(st.sampled_from(PARAM_SHAPES), max_size=3))
        if fn == "clip_grad_value_":
            case["args"] = {"clip_value": pick(draw, 0.5, 2.0, 0.0, 10.0)}
            if draw(st.booleans()):
                case["args"]["foreach"] = pick(draw, None, True, False)
            case["special"] = rarely(draw, "nan", None, 5)
        return case
    if fn == "initialiser":
        gates = pick(draw, 1, 3, 4, 0)
        rows = pick(draw, 1, 2, 3, 0) * max(gates, 1) + rarely(draw, 1, 0, 8)
        case["shape"] = rarely(draw, [rows], [rows, pick(draw, 1, 2, 5, 0)], 10)
        case["args"] = {"name": pick(draw, "xavier_uniform_", "xavier_normal_", "he_uniform_", "he_normal_",
                                     "orthogonal_", "identity_"), "gates": gates}
        return case
    ndim = pick(draw, 1, 2, 3)
    case["shape"] = [pick(draw, 7, 10, 5, 3, 2, 1, 0) for _ in range(ndim)]
    case["kind"] = pick(draw, "numpy", "torch")
    case["layout"] = rarely(draw, pick(draw, "transposed", "strided", "expanded"), None, 4)
    case["dtype"] = rarely(draw, "int64", "float64", 4)
    axis = draw(st.integers(-ndim, ndim - 1))
    # Mostly sizes that make at least one window or chunk; now and then 0, -1 or too many.
    size = (lambda: pick(draw, 1, 2, 3, 5, 0, -1, 11)) if chance(draw, 3) else (lambda: pick(draw, 1, 2, 3))
    if fn == "sliding_windows":
        case["args"] = {"length": size(), "step": size(), "axis": axis}
    elif fn in ("shift_split", "reshape_split"):
        case["args"] = {"length": size(), "target_shift": pick(draw, 1, 0, 2, -1), "axis": axis}
        if fn == "shift_split":
            case["args"]["shift"] = size()
    elif fn == "batchify":
        case["args"] = {"batch_size": size(), "batch_first": draw(st.booleans())}
    else:
        case["args"] = {"k": size(), "target_shift": pick(draw, None, 1, 0, 2, -1, 12), "dim": axis}
    return case


# ---- pinned cases: one small case per mistake known to have hit fastrnn, run before the drawn ones --------

def _case(family, **fields):
    return {"family": family, "seed": 1, **fields}


_RNN = dict(mode="LSTM", I=3, H=4, L=1, T=3, B=2, dtype="float32")
_CONV = dict(api="conv2d", N=1, C=2, O=2, H=5, W=5, kh=3, kw=3, dtype="float32")
PINNED = {
    "rnn_module": [
        _case("rnn_module", **{**_RNN, "hx": True, "bad": "hx_three"}),
        _case("rnn_module", **{**_RNN, "bad": "x_dtype", "lengths": [3, 2]}),  # packed float64 into float32
        _case("rnn_module", **{**_RNN, "T": 1, "B": 1, "bidirectional": True, "x_grad": True}),
        _case("rnn_module", **{**_RNN, "mode": "GRU", "B": 0, "x_grad": True}),
        _case("rnn_module", **{**_RNN, "T": 0}),
        _case("rnn_module", **{**_RNN, "extra": {"recurrent_dropout": None}, "train": False}),
        _case("rnn_module", **{**_RNN, "transform": "meta", "no_grad": True}),
        _case("rnn_module", **{**_RNN, "mode": "GRU", "transform": "func_grad", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "mode": "GRU", "transform": "double_backward", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "L": 2, "hx": True, "transform": "jit_trace", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "mode": "GRU", "transform": "inplace_output", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "B": 0, "hx": True, "bad": "hx_dtype"}),
        _case("rnn_module", **{**_RNN, "mode": "GRU", "dtype": "float64", "hx": True, "bad": "hx_int"}),
        _case("rnn_module", **{**_RNN, "B": 0, "hx": True, "hx_grad": True, "transform": "func_grad", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "B": 0, "transform": "double_backward", "x_grad": True}),
        _case("rnn_module", **{**_RNN, "ctor": {"bidirectional": "yes"}}),
    ],
    "rnn_cell": [
        _case("rnn_cell", mode="GRUCell", I=0, H=6, B=2, dtype="float32", x_grad=True),
        _case("rnn_cell", mode="LSTMCell", I=3, H=0, B=2, dtype="float32"),
        _case("rnn_cell", mode="RNNCell_tanh", I=3, H=4, B=0, dtype="float64", x_grad=True),
        _case("rnn_cell", mode="LSTMCell", I=2, H=3, B=3, dtype="float32", hx=True, bad="hx_three"),
        _case("rnn_cell", mode="RNNCell_relu", I=3, H=3, B=1, dtype="float32", hx=True, bad="hx_dtype", no_grad=True),
    ],
    "functional_layer": [_case("functional_layer", cell="gru", T=2, B=2, I=3, H=4, dtype="float32", bad=b)
                         for b in ("x_none", "w_ih_none")],
    "numpy_layer": [_case("numpy_layer", cell="lstm", T=2, B=2, I=3, H=4, dtype="float32", bad=b)
                    for b in ("x_none", "w_hh_none")],
    "conv": [
        _case("conv", **{**_CONV, "api": "Conv2d", "O": 0}),
        _case("conv", **{**_CONV, "C": 0, "O": 2}),
        _case("conv", **{**_CONV, "N": 0}),
        _case("conv", **{**_CONV, "kh": 0}),
        _case("conv", **{**_CONV, "api": "conv_relu_pool2d", "special": "nan", "padding": 1}),
        _case("conv", **{**_CONV, "api": "Conv2d", "H": 0, "W": 0, "kh": 1, "padding": 2}),  # torch refuses it
        _case("conv", **{**_CONV, "stride": {"tuple": [1.5, 1.5]}}),
        _case("conv", **{**_CONV, "api": "Conv2d", "padding": 1.5}),
    ],
    "pool": [_case("pool", api="AvgPool2d", shape=[1, 2, 6, 6], dtype="float32",
                   kwargs={"kernel_size": 2, "divisor_override": 2.5}),
             _case("pool", api="MaxPool2d", shape=[1, 2, 6, 6], dtype="float32",
                   kwargs={"kernel_size": 2, "padding": {"tuple": [1, 0.5]}}),
             # windows wholly in the padding (the dilation steps over the input): forward compared
             _case("pool", api="max_pool2d", shape=[1, 1, 1, 2], dtype="float64",
                   kwargs={"kernel_size": 2, "padding": 1, "dilation": 2, "return_indices": True})],
    "optimizer": [
        _case("optimizer", opt="Adam", dtype="float32", shapes=[[4, 0], [4]], hyper={}, steps=2),  # Linear(0, 4)
        _case("optimizer", opt="Adam", dtype="float32", shapes=[[3, 4]], hyper={}, steps=3, bad="state_shape"),
        _case("optimizer", opt="Adam", dtype="float32", shapes=[[3, 4]], hyper={}, steps=3, bad="amsgrad_later"),
        _case("optimizer", opt="SGD", dtype="float32", shapes=[[3, 4]], hyper={"momentum": 0.9}, steps=3,
              bad="empty_state"),
        # l1_decay under maximize on torch's path (a non-contiguous parameter) and the fused one
        _case("optimizer", opt="SGD", dtype="float64", shapes=[[2, 3]], hyper={"maximize": True, "l1_decay": 0.5},
              steps=1, layout="transposed"),
        _case("optimizer", opt="SGD", dtype="float64", shapes=[[2, 3]], hyper={"maximize": True, "l1_decay": 0.5},
              steps=1),
    ],
    "clip": [_case("clip", grads=[[[3, 4], "float32", None], [[5], "float64", None]], kwargs={"max_norm": 0.5})],
    "utils": [_case("utils", fn="tbptt_chunks", shape=[7], args={"k": 3, "target_shift": -1})],
}


# ---- the tests -------------------------------------------------------------------------------------------

def test_fuzz_rnn_modules(child):
    fuzz(child, rnn_module_cases(), 300, "nn.RNN/LSTM/GRU", PINNED["rnn_module"])


def test_fuzz_rnn_cells(child):
    fuzz(child, rnn_cell_cases(), 200, "nn.RNNCell/LSTMCell/GRUCell", PINNED["rnn_cell"])


def test_fuzz_functional_layers(child):
    fuzz(child, layer_cases("functional_layer"), 150, "functional.lstm/gru/rnn", PINNED["functional_layer"])


def test_fuzz_numpy_layers(child):
    fuzz(child, layer_cases("numpy_layer"), 150, "fastrnn.numpy", PINNED["numpy_layer"])


def test_fuzz_conv(child):
    fuzz(child, conv_cases(), 200, "conv2d/Conv2d/conv_relu_pool2d/ConvReLUPool2d", PINNED["conv"])


def test_fuzz_pool(child):
    fuzz(child, pool_cases(), 200, "max_pool2d/avg_pool2d/MaxPool2d/AvgPool2d", PINNED["pool"])


def test_fuzz_optimizers(child):
    fuzz(child, optimizer_cases(), 150, "optim.SGD/Adam/AdamW/RMSprop/Adagrad", PINNED["optimizer"])


def test_fuzz_clip_grad_norm(child):
    fuzz(child, clip_cases(), 100, "optim.clip_grad_norm_", PINNED["clip"])


def test_fuzz_utils(child):
    fuzz(child, utils_cases(), 150, "fastrnn.utils", PINNED["utils"])


def test_fuzz_child_reports_a_crash_and_a_hang():
    """The harness itself: a child that aborts or stops answering fails its case, not pytest, and a
    fresh child takes the next case; where torch is the one that crashed, fastrnn's side runs alone."""
    c = Child(timeout=2)
    try:
        torch_crash = c.run({"family": "__harness__", "torch": "abort"})
        assert torch_crash == {"problems": [], "torch": "crashed"}, torch_crash
        crash = c.run({"family": "__harness__", "fastrnn": "abort"})
        assert crash["problems"][0].startswith("crash: the child died in the fastrnn side (signal SIGABRT"), crash
        hang = c.run({"family": "__harness__", "fastrnn": "hang"})
        assert hang["problems"][0].startswith("hang: no answer in 2 s, in the fastrnn side"), hang
        ok = c.run({"family": "utils", "fn": "l2_penalty", "shapes": [[2]], "seed": 1})
        assert ok["problems"] == [], ok
    finally:
        c.stop()
