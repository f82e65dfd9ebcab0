"""The differential fuzz cases of tests/test_fuzz.py: what one case does with torch (the oracle)
and with fastrnn, and how the two outcomes are compared.

A case is a JSON object; ``case["family"]`` names the function below that runs it. Each side
(torch, fastrnn) runs in phases (construct, forward, backward, step, ...) and either returns
named values (outputs, gradients, parameters, state) or raises; the comparison says where the
two differ, in words: "" when they agree.

This module runs in a child process, so a segfault, abort or hang fails the test instead of
killing pytest:

    python tests/fuzz_cases.py --serve     # one JSON case per line in, one JSON result per line out
    python tests/fuzz_cases.py '<case>'    # one case by hand: both sides' outcomes and the verdict

Oracles. Results: torch's module/function on the same values (float64 tight, float32 scaled by
the work along the reduction/time). Errors: the same exception type as torch; the same message
too for the nn modules and the optimizers, which promise torch's words (except where torch's
words are a backend's internals, e.g. oneDNN's "get_mkldnn_dtype": BACKEND_MESSAGES). fastrnn.functional has no
torch twin: its refusals follow torch.nn's exception types, written out per mistake below
(`EXPECTED_LAYER_ERRORS`). fastrnn.numpy: the same results and exception types, and for
arguments torch could not even take (lists, None, float16), a Python exception, never a crash.
Documented refusals (dtypes fastrnn's CPU kernels lack) are accepted where torch computes.
"""

import contextlib
import json
import math
import os
import sys
import traceback
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
import fastrnn.functional as FF
import fastrnn.nn as fnn
import fastrnn.numpy as frn
import fastrnn.ops
import fastrnn.optim as foptim
import fastrnn.utils as futils
from reference import layer_ops, poisoned_empty, poisoned_numpy_empty  # this script's folder: tests/

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "int32": torch.int32, "int64": torch.int64, "bool": torch.bool, "complex64": torch.complex64}
KERNEL_DTYPES = ("float32", "float64")
# Largest error allowed per unit of work (time steps, reduction length), relative to the
# largest magnitude of the reference (at least 1).
TOLERANCE = {"float64": 1e-10, "float32": 2e-5}
# torch messages that name a backend's internals rather than the user's mistake (oneDNN's, or the
# packed-sequence path's, which checks a state's size only through the weights' count): fastrnn
# must raise the same type, in its own words.
BACKEND_MESSAGES = ("get_mkldnn_dtype", "mkldnn", "onednn", "Expected more weights in stacked_rnn",
                    "incorrect number of RNN parameters")
# torch failures that are a gap in torch's op, not a mistake (an internal assert, an infinity norm
# of an empty tensor): fastrnn may raise its own words, or compute.
TORCH_GAPS = ("Could this error message be improved", "does not have an identity")


# ---- values ----------------------------------------------------------------------------------------

def decode(v):
    """JSON -> Python: {"tuple": [...]} is a tuple, {"object": 1} a plain object(), lists stay lists."""
    if isinstance(v, dict):
        if set(v) == {"tuple"}:
            return tuple(decode(e) for e in v["tuple"])
        if set(v) == {"object"}:
            return object()
        return {k: decode(e) for k, e in v.items()}
    if isinstance(v, list):
        return [decode(e) for e in v]
    return v


def _seed(case, tag):
    return (int(case.get("seed", 0)) * 1000003 + sum((i + 1) * ord(c) for i, c in enumerate(tag))) % (2 ** 62)


def values(case, tag, shape, dtype="float64", special=None, integers=False):
    """Deterministic values in [-1, 1) of `shape` (float64), the same on both sides for the same tag.
    special: "nan" / "inf" puts one there; integers: small integers (ties for max pooling)."""
    gen = torch.Generator().manual_seed(_seed(case, tag))
    shape = tuple(int(s) for s in shape)
    if integers:
        t = torch.randint(-3, 4, shape, generator=gen).to(torch.float64)
    else:
        t = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    if special and t.numel():
        flat = t.view(-1)
        k = int(torch.randint(0, t.numel(), (1,), generator=gen))
        flat[k] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[special]
    return t


def cast(t, dtype):
    dt = DTYPES[dtype]
    if dt == torch.bool:
        return t > 0
    if dt in (torch.int32, torch.int64):
        return (t * 4).round().to(dt)
    return t.to(dt)


def layout(t, how):
    """The same values in another memory layout (a fresh tensor each call)."""
    if how in (None, "contiguous") or t.dim() == 0:
        return t.clone()
    if how == "transposed" and t.dim() >= 2:  # the first two dims swapped in memory
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if how == "strided":  # every other element of a wider last dim
        big = torch.zeros(t.shape[:-1] + (2 * t.shape[-1] + 1,), dtype=t.dtype)
        big[..., 1::2] = t
        return big[..., 1::2]
    if how == "offset":  # a view one element into its storage
        flat = torch.zeros(t.numel() + 1, dtype=t.dtype)
        flat[1:] = t.reshape(-1)
        return flat[1:].view(t.shape)
    if how == "expanded":  # stride 0 along the first dim of size > 1 (values repeat along it)
        for d, s in enumerate(t.shape):
            if s > 1:
                return t.narrow(d, 0, 1).expand(t.shape)
        return t.clone()
    if how == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if how == "flipped":  # torch has no negative strides: .flip copies (NumPy gets a real view)
        return t.flip(0).flip(0)
    return t.clone()


def tensor(case, tag, shape, dtype, how=None, grad=False, special=None, integers=False):
    t = layout(cast(values(case, tag, shape, special=special, integers=integers), dtype), how)
    if grad and t.dtype.is_floating_point or grad and t.is_complex():
        t = t.detach().requires_grad_()
    return t


def other_float(dtype):
    return "float64" if dtype == "float32" else "float32"


# ---- outcomes and their comparison ---------------------------------------------------------------

class Raised:
    """A side's outcome when it raised: the exception and the phase it was raised in."""

    def __init__(self, phase, exc):
        self.phase, self.exc = phase, exc

    def text(self):
        return f"raised {type(self.exc).__name__} in {self.phase}: {_short(str(self.exc))}"


def _short(s, n=300):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[:n] + "..."


class Side:
    """One side's run: `phase` names the step it is in, `out` collects what it returns."""

    def __init__(self, lib):
        self.lib, self.phase, self.out = lib, "setup", {}
        self.torch = lib == "torch"

    def at(self, phase):
        self.phase = phase


# Set for a case whose torch side crashed the child: the rerun runs fastrnn's side alone (it must
# not crash; with no oracle its outcome is not compared).
ORACLE_CRASHED = {"now": False}
SERVING = {"now": False}  # in the child (--serve): each side is named on stderr before it runs


class OracleCrashed:
    """The torch side's outcome when torch itself crashed on the case."""


def run_side(fn, lib):
    if lib == "torch" and ORACLE_CRASHED["now"]:
        return OracleCrashed()
    if SERVING["now"]:  # the test reads the last name after a crash or hang
        print(f"fuzz_cases: the {lib} side", file=sys.stderr, flush=True)
    side = Side(lib)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(side)
    except Exception as e:  # noqa: BLE001 - any exception is an outcome to compare
        return Raised(side.phase, e)
    return side.out


def flatten(obj, prefix, into):
    """Named leaves of an output structure: tensors, packed sequences, tuples, arrays, numbers."""
    if isinstance(obj, PackedSequence):
        for name in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
            flatten(getattr(obj, name), f"{prefix}.{name}", into)
    elif isinstance(obj, (tuple, list)):
        into[f"{prefix}.type"] = type(obj).__name__ + str(len(obj))
        for k, o in enumerate(obj):
            flatten(o, f"{prefix}[{k}]", into)
    elif isinstance(obj, dict):
        for k, o in obj.items():
            flatten(o, f"{prefix}.{k}", into)
    elif isinstance(obj, np.ndarray):
        into[prefix] = ("ndarray", obj.copy())
    else:
        into[prefix] = obj
    return into


def _as_float64(t):
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.to(torch.float64)


def compare_tensor(name, a, e, tol, oracle="torch"):
    """'' if fastrnn's `a` matches the oracle's `e`: shape, dtype, device, requires_grad, NaN/Inf
    positions, values within tol (relative to the largest magnitude of `e`, at least 1)."""
    if tuple(a.shape) != tuple(e.shape):
        return f"{name}: shape {tuple(e.shape)} ({oracle}) vs {tuple(a.shape)} (fastrnn)"
    if a.dtype != e.dtype:
        return f"{name}: dtype {e.dtype} ({oracle}) vs {a.dtype} (fastrnn)"
    if a.device != e.device:
        return f"{name}: device {e.device} ({oracle}) vs {a.device} (fastrnn)"
    if e.requires_grad != a.requires_grad:
        return f"{name}: requires_grad {e.requires_grad} ({oracle}) vs {a.requires_grad} (fastrnn)"
    if e.device.type == "meta" or e.numel() == 0:
        return ""
    if not (e.dtype.is_floating_point or e.is_complex()):
        if torch.equal(a, e):
            return ""
        k = int((a != e).flatten().nonzero()[0])
        return (f"{name}: differs at flat index {k}: {oracle} {e.flatten()[k].item()} vs fastrnn "
                f"{a.flatten()[k].item()} ({int((a != e).sum())} of {e.numel()} elements)")
    a64, e64 = _as_float64(a), _as_float64(e)
    nan_a, nan_e = a64.isnan(), e64.isnan()
    if not torch.equal(nan_a, nan_e):
        k = int((nan_a != nan_e).flatten().nonzero()[0])
        return (f"{name}: NaN positions differ ({int(nan_e.sum())} in {oracle}, {int(nan_a.sum())} in fastrnn; "
                f"first at flat index {k}: {oracle} {e64.flatten()[k].item()} vs fastrnn {a64.flatten()[k].item()})")
    inf = e64.isinf() | a64.isinf()
    if not torch.equal(a64[inf], e64[inf]):
        return f"{name}: infinities differ"
    fin = ~(inf | nan_e)
    if fin.any():
        ea, ee = a64[fin], e64[fin]
        scale = max(1.0, ee.abs().max().item())
        err = (ea - ee).abs()
        if err.max().item() > tol * scale:
            k = int(err.argmax())
            return (f"{name}: max error {err.max().item():.3e} > {tol:.1e} x {scale:.3g} "
                    f"({oracle} {ee[k].item():.10g} vs fastrnn {ea[k].item():.10g})")
    return ""


# How torch's side of the last case ended ("returned" or "raised"), for the test's tally.
LAST = {}


def compare_outcomes(t, f, tol, messages, refusal=None, oracle="torch"):
    """The list of differences between the oracle's outcome `t` (torch's, or a reference's) and
    fastrnn's `f`; empty: they agree. messages: compare exception messages too. refusal: an
    exception type fastrnn may raise, by design, where torch computes (a dtype its kernels lack)."""
    if isinstance(t, OracleCrashed):
        LAST["torch"] = "crashed"
        return []
    LAST["torch"] = "raised" if isinstance(t, Raised) else "returned"
    if refusal is not None and isinstance(f, Raised) and isinstance(f.exc, refusal) and f.phase != "backward":
        return []  # a documented refusal, whatever torch made of the same call
    if isinstance(t, Raised) and isinstance(f, Raised):
        problems = []
        if type(t.exc) is not type(f.exc):
            problems.append(f"exception type: {oracle} {t.text()} | fastrnn {f.text()}")
        elif (messages and str(t.exc) != str(f.exc) and t.phase != "backward"
              and not any(m in str(t.exc) for m in BACKEND_MESSAGES + TORCH_GAPS)):
            # (a backward's message names autograd's nodes, which differ by construction)
            problems.append(f"message: {oracle} {t.text()} | fastrnn {f.text()}")
        elif t.phase != f.phase:
            problems.append(f"phase: {oracle} {t.text()} | fastrnn {f.text()}")
        return problems
    if isinstance(t, Raised):
        if any(m in str(t.exc) for m in TORCH_GAPS):
            return []
        return [f"{oracle} {t.text()} | fastrnn returned"]
    if isinstance(f, Raised):
        return [f"{oracle} returned | fastrnn {f.text()}"]
    problems = []
    for name in [n for n in t if n not in f] + [n for n in f if n not in t]:
        problems.append(f"{name}: {'missing from' if name in t else 'only in'} fastrnn's outcome")
    for name in (n for n in t if n in f):
        e, a = t[name], f[name]
        if isinstance(e, tuple) and e and e[0] == "ndarray":
            e = torch.from_numpy(e[1])
        if isinstance(a, tuple) and a and a[0] == "ndarray":
            a = torch.from_numpy(a[1])
        if isinstance(e, torch.Tensor) and isinstance(a, torch.Tensor):
            p = compare_tensor(name, a, e, tol, oracle)
        elif isinstance(e, torch.Tensor) or isinstance(a, torch.Tensor):
            p = f"{name}: {oracle} {_short(repr(e), 80)} vs fastrnn {_short(repr(a), 80)}"
        elif isinstance(e, float) and isinstance(a, float):
            same = (math.isnan(e) and math.isnan(a)) or e == a or abs(e - a) <= tol * max(1.0, abs(e))
            p = "" if same else f"{name}: {oracle} {e!r} vs fastrnn {a!r}"
        else:
            same = e == a or (e != e and a != a)
            p = "" if same else f"{name}: {oracle} {_short(repr(e), 80)} vs fastrnn {_short(repr(a), 80)}"
        if p:
            problems.append(p)
    # What differs in the outputs says most: first; then gradients; then missing or extra entries.
    return sorted(problems, key=lambda p: (not p.startswith("out"), "fastrnn's outcome" in p))


def loss_of(case, outputs):
    """sum(output * w) over the floating outputs, w fixed per output name (the same on both sides)."""
    total = None
    for name, o in outputs.items():
        if isinstance(o, torch.Tensor) and o.requires_grad and (o.dtype.is_floating_point or o.is_complex()):
            w = values(case, "dy:" + name, o.shape).to(o.dtype)
            term = (o * w).sum()
            term = term.real if term.is_complex() else term
            total = term if total is None else total + term
    return total


def gradients(side, case, outputs, inputs):
    """The gradients of loss_of(outputs) w.r.t. the named inputs that require grad, into side.out."""
    wanted = {n: t for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    if not wanted or not torch.is_grad_enabled():
        return
    side.at("backward")
    loss = loss_of(case, outputs)
    if loss is None:  # (the outputs' requires_grad flags are compared: that says what went wrong)
        side.out["backward"] = "skipped: no output requires grad"
        return
    grads = torch.autograd.grad(loss, list(wanted.values()), allow_unused=True)
    for n, g in zip(wanted, grads):
        side.out[f"grad.{n}"] = g


def tol_for(dtype, work=1):
    return TOLERANCE.get(dtype, 1e-2) * max(1.0, float(work))


def prepared(module, case):
    """The module in the case's dtype, its parameters frozen when the case says so."""
    module = module.to(DTYPES[case["dtype"]])
    if not case.get("params_grad", True):
        for p in module.parameters():
            p.requires_grad_(False)
    return module


# ---- recurrent layers (torch.nn.RNN/LSTM/GRU) ------------------------------------------------------

def _layer_class(lib, mode):
    name = {"LSTM": "LSTM", "GRU": "GRU"}.get(mode, "RNN")
    return getattr(torch.nn if lib == "torch" else fnn, name)


def rnn_module(case):
    """An nn.RNN/LSTM/GRU: construct (maybe with bad arguments), forward (batched or not, packed,
    with or without hx, in a layout), backward (input, hx and every weight), or a transform
    (jit.trace, torch.func.grad, double backward, meta device)."""
    mode, I, H, L = case["mode"], case["I"], case["H"], case["L"]
    T, B, dtype = case["T"], case["B"], case["dtype"]
    bidir, bf, proj = case.get("bidirectional", False), case.get("batch_first", False), case.get("proj", 0)
    D = 2 if bidir else 1
    lstm = mode == "LSTM"
    out_size = proj if proj else H
    bad = case.get("bad")
    ctor = decode(case.get("ctor", {}))
    extra = decode(case.get("extra", {}))  # fastrnn-only constructor arguments
    transform = case.get("transform")
    xdtype = other_float(dtype) if bad == "x_dtype" else dtype

    def run(side):
        side.at("construct")
        kw = dict(num_layers=L, bias=case.get("bias", True), batch_first=bf, bidirectional=bidir,
                  dropout=case.get("dropout", 0.0))
        if mode.startswith("RNN"):
            kw["nonlinearity"] = mode[4:].lower()
        if proj:
            kw["proj_size"] = proj
        kw.update(ctor)
        torch.manual_seed(case.get("seed", 0))
        cls = _layer_class(side.lib, mode)
        if side.torch:
            module = cls(I, H, **kw)
            # fastrnn's extra dropouts are checked after torch's arguments, as torch checks `dropout`.
            for name, p in extra.items():
                try:
                    torch.nn.LSTM(1, 1, dropout=p)
                except Exception as e:  # noqa: BLE001
                    raise type(e)(str(e).replace("dropout", name)) from None
        else:
            module = cls(I, H, **kw, **extra)
        module = prepared(module, case)
        module.train(case.get("train", True))
        side.at("inputs")
        batched = case.get("batched", True)
        feat = I + 1 if bad == "x_features" else I
        shape = ((B, T, feat) if bf else (T, B, feat)) if batched else (T, feat)
        if bad == "x_rank1":
            shape = (feat,)
        elif bad == "x_rank4":
            shape = (1,) + shape
        x = tensor(case, "x", shape, xdtype, case.get("layout_x"), case.get("x_grad", False), case.get("special"))
        xin = x
        if case.get("lengths") is not None:
            xin = pack_padded_sequence(x, torch.tensor(case["lengths"]), batch_first=bf,
                                       enforce_sorted=case.get("enforce_sorted", True))
        hx = None
        states = {}
        if case.get("hx", False):
            hshape = [L * D, B, out_size] if batched else [L * D, out_size]
            cshape = hshape[:-1] + [H]
            if bad == "hx_batch" and batched:
                hshape[1] += 1
            if bad == "hx_layers":
                hshape[0] += 1
            if bad == "hx_hidden":
                hshape[-1] += 1
            if bad == "cx_hidden":
                cshape[-1] += 1
            if bad == "hx_rank":
                hshape = hshape[1:]
                cshape = cshape[1:]
            hdtype = {"hx_dtype": other_float(dtype), "hx_int": "int64"}.get(bad, dtype)
            g = case.get("hx_grad", False)
            h0 = tensor(case, "h0", hshape, hdtype, case.get("layout_h"), g)
            states["h0"] = h0
            if lstm:
                c0 = tensor(case, "c0", cshape, dtype, case.get("layout_h"), g)
                states["c0"] = c0
                hx = (h0, c0)
                if bad == "hx_three":
                    hx = (h0, c0, c0)
                elif bad == "hx_single":
                    hx = h0
                elif bad == "hx_list":
                    hx = [h0, c0]
            else:
                hx = (h0,) if bad == "hx_tuple" else h0
        if bad == "x_none":
            xin = None
        inputs = {"x": x, **states, **dict(module.named_parameters())}

        side.at("forward")
        if transform == "meta":
            module = module.to("meta")
            xm = x.detach().to("meta")
            hm = None if hx is None else (tuple(h.detach().to("meta") for h in hx) if lstm else hx.detach().to("meta"))
            with torch.no_grad():
                flatten(module(xm, hm), "out", side.out)
            return
        if transform == "func_grad":
            def loss(x_):
                y = module(x_, hx)[0]
                return (y * values(case, "dy", y.shape).to(y.dtype)).sum()
            side.out["grad.x"] = torch.func.grad(loss)(x.detach())
            return
        if transform == "jit_trace":
            args = (xin,) if hx is None else (xin, hx)
            module = torch.jit.trace(module, args, check_trace=False)
        grad_mode = torch.no_grad() if case.get("no_grad") else contextlib.nullcontext()
        with grad_mode:
            out = module(xin) if hx is None else module(xin, hx)
        outputs = flatten(out, "out", {})
        side.out.update({n: (o.detach().clone().requires_grad_(o.requires_grad) if isinstance(o, torch.Tensor) else o)
                         for n, o in outputs.items()})
        if transform == "inplace_output":  # the output changed in place before the backward
            side.at("inplace")
            y = out[0].data if isinstance(out[0], PackedSequence) else out[0]
            y.mul_(2)
        if transform == "double_backward":
            side.at("double_backward")
            wanted = [t for t in inputs.values() if t.requires_grad]
            if not wanted:
                return
            gs = torch.autograd.grad(loss_of(case, outputs), wanted, create_graph=True, allow_unused=True)
            total = sum((g * g).sum() for g in gs if g is not None and g.requires_grad)
            if isinstance(total, torch.Tensor):
                grads2 = torch.autograd.grad(total, wanted, allow_unused=True)
                for n, g in zip([n for n, t in inputs.items() if t.requires_grad], grads2):
                    side.out[f"grad2.{n}"] = g
            return
        gradients(side, case, outputs, inputs)
        # The outputs as they stand after the backward (a kernel must not have reused them).
        for n, o in outputs.items():
            if isinstance(o, torch.Tensor) and o.is_floating_point():
                side.out[n + "@after_backward"] = o.detach().clone()
        if case.get("x_grad", False) and bad is None:
            side.out["x@after"] = x.detach().clone()

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    # torch.nn checks none of a packed LSTM's arguments: a state of another size is taken (or
    # crashes it) and a wrong input width meets the first matmul, in its internal words. fastrnn
    # refuses both with torch.nn's words for the same mistake unpacked (tests/test_errors.py).
    packed_lstm = mode == "LSTM" and case.get("lengths") is not None and bad is not None
    refusal = RuntimeError if dtype not in KERNEL_DTYPES or (packed_lstm and bad.startswith("hx_")) else None
    return compare_outcomes(t, f, tol_for(dtype, T * L * (2 if transform == "double_backward" else 1)),
                            messages=not packed_lstm, refusal=refusal)


# ---- cells -------------------------------------------------------------------------------------------

def rnn_cell(case):
    """nn.RNNCell (tanh/relu), LSTMCell, GRUCell: one step, batched or not, hx or none."""
    mode, I, H, B, dtype = case["mode"], case["I"], case["H"], case["B"], case["dtype"]
    bad = case.get("bad")
    lstm = mode == "LSTMCell"

    def run(side):
        side.at("construct")
        torch.manual_seed(case.get("seed", 0))
        lib = torch.nn if side.torch else fnn
        kw = decode(case.get("ctor", {}))
        if mode.startswith("RNNCell"):
            module = lib.RNNCell(I, H, bias=case.get("bias", True), nonlinearity=mode.split("_")[1], **kw)
        else:
            module = getattr(lib, mode)(I, H, bias=case.get("bias", True), **kw)
        module = prepared(module, case)
        side.at("inputs")
        batched = case.get("batched", True)
        feat = I + 1 if bad == "x_features" else I
        shape = (B, feat) if batched else (feat,)
        if bad == "x_rank3":
            shape = (1,) + shape
        xdtype = other_float(dtype) if bad == "x_dtype" else dtype
        x = tensor(case, "x", shape, xdtype, case.get("layout_x"), case.get("x_grad", False), case.get("special"))
        inputs = {"x": x, **dict(module.named_parameters())}
        hx = None
        if case.get("hx", False):
            hshape = [B, H] if batched else [H]
            if bad == "hx_batch" and batched:
                hshape[0] += 1
            if bad == "hx_hidden":
                hshape[-1] += 1
            if bad == "hx_rank3":
                hshape = [1] + hshape
            hdtype = other_float(dtype) if bad == "hx_dtype" else dtype
            g = case.get("hx_grad", False)
            h0 = tensor(case, "h0", hshape, hdtype, case.get("layout_h"), g)
            inputs["h0"] = h0
            hx = h0
            if lstm:
                c0 = tensor(case, "c0", hshape, dtype, case.get("layout_h"), g)
                inputs["c0"] = c0
                hx = (h0, c0) if bad != "hx_three" else (h0, c0, c0)
        side.at("forward")
        grad_mode = torch.no_grad() if case.get("no_grad") else contextlib.nullcontext()
        with grad_mode:
            out = module(x, hx)
        outputs = flatten(out, "out", {})
        side.out.update({n: (o.detach().clone().requires_grad_(o.requires_grad) if isinstance(o, torch.Tensor) else o)
                         for n, o in outputs.items()})
        gradients(side, case, outputs, inputs)

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    # An unbatched input with a 2-D state: torch's cells compute on a broadcast by accident (an
    # (H, H) result, or a crash of LSTMCell); fastrnn refuses in the words of torch's layers.
    unbatched_2d_state = not case.get("batched", True) and bad == "hx_rank3"
    refusal = RuntimeError if dtype not in KERNEL_DTYPES or unbatched_2d_state else None
    return compare_outcomes(t, f, tol_for(dtype, 2), messages=True, refusal=refusal)


# ---- one layer as a function: fastrnn.functional and fastrnn.numpy ---------------------------------

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

# The exception each mistake in a functional/NumPy layer call raises: torch.nn's type for the same
# mistake (a wrong input rank and an input/weight dtype mismatch are ValueErrors in torch.nn, shape
# and other dtype mistakes RuntimeErrors, a missing tensor a TypeError).
EXPECTED_LAYER_ERRORS = {
    "x_rank2": ValueError, "x_rank4": ValueError, "x_features": RuntimeError, "w_ih_rows": RuntimeError,
    "w_hh_rows": RuntimeError, "w_hh_cols": RuntimeError, "w_ih_rank1": RuntimeError, "b_ih_size": RuntimeError,
    "b_hh_size": RuntimeError, "h0_batch": RuntimeError, "h0_hidden": RuntimeError, "h0_rank3": RuntimeError,
    "c0_hidden": RuntimeError, "x_dtype": ValueError, "h0_dtype": RuntimeError, "b_dtype": RuntimeError,
    "w_hh_dtype": RuntimeError, "all_float16": RuntimeError, "all_int": RuntimeError, "all_bfloat16": RuntimeError,
    "empty_seq": RuntimeError, "empty_batch": RuntimeError, "hidden0": RuntimeError,
    "x_none": TypeError, "w_ih_none": TypeError, "w_hh_none": TypeError,
    "nonlinearity": ValueError,
}


def _layer_tensors(case):
    """Shapes and dtypes of one layer call after the case's mistake: {name: (shape, dtype)} and T, B, H."""
    cell, T, B, I, H, dtype = case["cell"], case["T"], case["B"], case["I"], case["H"], case["dtype"]
    bad = case.get("bad")
    G = GATES[cell]
    if bad == "empty_seq":
        T = 0
    if bad == "empty_batch":
        B = 0
    if bad == "hidden0":
        H = 0
    shapes = {"x": [T, B, I + (bad == "x_features")], "h0": [B + (bad == "h0_batch"), H + (bad == "h0_hidden")],
              "c0": [B, H + (bad == "c0_hidden")], "weight_ih": [G * H + (bad == "w_ih_rows"), I],
              "weight_hh": [G * H + (bad == "w_hh_rows"), H + (bad == "w_hh_cols")],
              "bias_ih": [G * H + (bad == "b_ih_size")], "bias_hh": [G * H + (bad == "b_hh_size")]}
    if bad == "x_rank2":
        shapes["x"] = shapes["x"][1:]
    if bad == "x_rank4":
        shapes["x"] = [1] + shapes["x"]
    if bad == "w_ih_rank1":
        shapes["weight_ih"] = [G * H * I]
    if bad == "h0_rank3":
        shapes["h0"] = [1] + shapes["h0"]
    all_dtype = {"all_float16": "float16", "all_int": "int32", "all_bfloat16": "bfloat16"}.get(bad, dtype)
    dtypes = {n: all_dtype for n in shapes}
    if bad == "x_dtype":
        dtypes["x"] = other_float(dtype)
    if bad == "h0_dtype":
        dtypes["h0"] = other_float(dtype)
    if bad == "b_dtype":
        dtypes["bias_ih"] = other_float(dtype)
    if bad == "w_hh_dtype":
        dtypes["weight_hh"] = other_float(dtype)
    present = {"x": True, "h0": case.get("h0", True), "c0": cell == "lstm" and case.get("c0", True),
               "weight_ih": True, "weight_hh": True, "bias_ih": case.get("bias_ih", True),
               "bias_hh": case.get("bias_hh", True)}
    if bad in ("x_none", "w_ih_none", "w_hh_none"):
        present[{"x_none": "x", "w_ih_none": "weight_ih", "w_hh_none": "weight_hh"}[bad]] = False
    return shapes, dtypes, present, T, B, H


def functional_layer(case):
    """fastrnn.functional.lstm/gru/rnn against torch's layer ops; mistakes against EXPECTED_LAYER_ERRORS."""
    cell, dtype, bad = case["cell"], case["dtype"], case.get("bad")
    reverse = case.get("reverse", False)
    shapes, dtypes, present, T, B, H = _layer_tensors(case)
    grads = case.get("grads", True)

    def make():
        out = {}
        for n in shapes:
            if present[n]:
                how = case.get("layout_x") if n == "x" else case.get("layout_w") if n.startswith("w") else None
                out[n] = tensor(case, n, shapes[n], dtypes[n], how, grads and dtypes[n] in KERNEL_DTYPES,
                                case.get("special") if n == "x" else None)
            else:
                out[n] = None
        return out

    def run(side):
        side.at("forward")
        a = make()
        if side.torch:
            if bad is not None:
                raise EXPECTED_LAYER_ERRORS[bad]("(expected refusal)")
            out = layer_ops(cell, a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                            a["bias_hh"], reverse)
        elif cell == "lstm":
            out = FF.lstm(a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
                          reverse=reverse)
        elif cell == "gru":
            out = FF.gru(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"], reverse=reverse)
        else:
            nl = "sigmoid" if bad == "nonlinearity" else cell[4:]
            out = FF.rnn(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
                         nonlinearity=nl, reverse=reverse)
        outputs = flatten(tuple(out), "out", {})
        side.out.update({n: o.detach().clone().requires_grad_(o.requires_grad) for n, o in outputs.items()
                         if isinstance(o, torch.Tensor)})
        gradients(side, case, outputs, a)

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    return compare_outcomes(t, f, tol_for(dtype, T), messages=False)


def _np(t):
    return None if t is None else t.detach().numpy()


def numpy_layer(case):
    """fastrnn.numpy's forward (training) and backward against torch's layer ops and gradients.
    Bad arguments: torch.nn's exception type (EXPECTED_LAYER_ERRORS); where NumPy takes what torch
    would not (lists, flipped views), the results must still be right."""
    cell, dtype, bad = case["cell"], case["dtype"], case.get("bad")
    reverse = case.get("reverse", False)
    shapes, dtypes, present, T, B, H = _layer_tensors(case)
    lstm = cell == "lstm"

    def make():
        return {n: tensor(case, n, shapes[n], dtypes[n], None, dtypes[n] in KERNEL_DTYPES) if present[n] else None
                for n in shapes}

    def run(side):
        side.at("forward")
        a = make()
        if side.torch:
            if bad in EXPECTED_LAYER_ERRORS:
                raise EXPECTED_LAYER_ERRORS[bad]("(expected refusal)")
            outs = layer_ops(cell, a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                             a["bias_hh"], reverse)
            names = ["y", "h_n", "c_n"][:len(outs)]
            outputs = dict(zip(names, outs))
            for n, o in outputs.items():
                side.out["out." + n] = o.detach().clone()
            side.at("backward")
            wanted = {n: t for n, t in a.items() if t is not None}
            loss = loss_of(case, outputs)
            gs = torch.autograd.grad(loss, list(wanted.values()), allow_unused=True)
            for n, g in zip(wanted, gs):
                side.out["grad." + n] = g if g is not None else torch.zeros_like(wanted[n])
            return
        arrays = {n: _np(t) for n, t in a.items()}
        how = case.get("layout_x")
        if how == "flipped" and arrays["x"] is not None:  # a negative-stride view with the same values
            arrays["x"] = np.flip(np.flip(arrays["x"], 0).copy(), 0)
        elif how == "transposed" and arrays["x"] is not None:
            arrays["x"] = np.swapaxes(np.swapaxes(arrays["x"], 0, 1).copy(), 0, 1)
        elif how == "strided" and arrays["x"] is not None:
            big = np.zeros(arrays["x"].shape[:-1] + (2 * arrays["x"].shape[-1],), arrays["x"].dtype)
            big[..., ::2] = arrays["x"]
            arrays["x"] = big[..., ::2]
        elif how == "list" and arrays["x"] is not None and arrays["x"].size and arrays["x"].dtype == np.float64:
            # (an empty list loses its shape; a list has no dtype: NumPy reads its floats as float64,
            # so an x of another dtype stays an array and its refusal stays expected)
            arrays["x"] = arrays["x"].tolist()
        if how == "fortran":
            arrays = {n: None if v is None else np.asfortranarray(v) for n, v in arrays.items()}
        kw = dict(reverse=reverse, training=True)
        if lstm:
            res = frn.lstm(arrays["x"], arrays["h0"], arrays["c0"], arrays["weight_ih"], arrays["weight_hh"],
                           arrays["bias_ih"], arrays["bias_hh"], **kw)
        elif cell == "gru":
            res = frn.gru(arrays["x"], arrays["h0"], arrays["weight_ih"], arrays["weight_hh"], arrays["bias_ih"],
                          arrays["bias_hh"], **kw)
        else:
            nl = "sigmoid" if bad == "nonlinearity" else cell[4:]
            res = frn.rnn(arrays["x"], arrays["h0"], arrays["weight_ih"], arrays["weight_hh"], arrays["bias_ih"],
                          arrays["bias_hh"], nonlinearity=nl, **kw)
        *outs, ctx = res
        names = ["y", "h_n", "c_n"][:len(outs)]
        for n, o in zip(names, outs):
            side.out["out." + n] = torch.from_numpy(np.array(o))
        side.at("backward")
        dys = [values(case, "dy:" + n, o.shape).numpy().astype(o.dtype) for n, o in zip(names, outs)]
        if case.get("bad_ctx"):  # a context from another cell, None, or not a context at all
            ctx = {"wrong_kind": ctx, "none": None, "dict": {}}[case["bad_ctx"]]
            if case["bad_ctx"] == "wrong_kind" and cell != "gru":
                grads = frn.gru_backward(ctx, dys[0], dys[1])
            else:
                grads = frn.lstm_backward(ctx, dys[0], dys[1], dys[1])
        elif lstm:
            grads = frn.lstm_backward(ctx, *dys)
        elif cell == "gru":
            grads = frn.gru_backward(ctx, *dys)
        else:
            grads = frn.rnn_backward(ctx, *dys)
        for n in a:
            if a[n] is None:
                continue
            side.out["grad." + n] = torch.from_numpy(np.array(grads[n]))

    t = run_side(run, "torch")
    if case.get("bad_ctx"):
        t = Raised("backward", {"wrong_kind": ValueError, "none": TypeError, "dict": TypeError}[case["bad_ctx"]](""))
    f = run_side(run, "fastrnn")
    return compare_outcomes(t, f, tol_for(dtype, T), messages=False)


# ---- convolution ------------------------------------------------------------------------------------

def conv(case):
    """conv2d / Conv2d / conv_relu_pool2d / ConvReLUPool2d against torch.nn.functional.conv2d (then
    relu and max_pool2d(2, 2) for the fused ones)."""
    api, dtype = case["api"], case["dtype"]
    N, C, O, G = case["N"], case["C"], case["O"], case.get("groups", 1)
    Hs, Ws, kh, kw = case["H"], case["W"], case["kh"], case["kw"]
    stride, padding, dilation = decode(case.get("stride", 1)), decode(case.get("padding", 0)), decode(
        case.get("dilation", 1))
    bias = case.get("bias", True)
    bad = case.get("bad")
    fused = "pool" in api.lower()
    module = api in ("Conv2d", "ConvReLUPool2d")

    def run(side):
        side.at("inputs")
        batched = case.get("batched", True)
        xshape = (N, C, Hs, Ws) if batched else (C, Hs, Ws)
        if bad == "x_rank5":
            xshape = (1,) + xshape
        wdtype = other_float(dtype) if bad == "w_dtype" else dtype
        grads = case.get("grads", True)
        x = tensor(case, "x", xshape, dtype, case.get("layout_x"), grads, case.get("special"), case.get("ties", False))
        inputs = {"x": x}
        if module:
            side.at("construct")
            torch.manual_seed(case.get("seed", 0))
            cls = torch.nn.Conv2d if side.torch else getattr(fnn, api)
            m = cls(C, O, (kh, kw), stride=stride, padding=padding, dilation=dilation, groups=G, bias=bias,
                    padding_mode=case.get("padding_mode", "zeros"))
            m = m.to(DTYPES[dtype])
            if not grads:
                for p in m.parameters():
                    p.requires_grad_(False)
            with torch.no_grad():  # the case's own values, so special values and ties reach the weights too
                m.weight.copy_(cast(values(case, "w", m.weight.shape), dtype))
            inputs.update(dict(m.named_parameters()))
            side.at("forward")
            if side.torch:
                y = m(x)
                if fused:
                    y = F.max_pool2d(F.relu(y), 2, 2)
            else:
                y = m(x)
        else:
            wshape = (O, C // max(G, 1) + (bad == "w_channels"), kh, kw)
            w = tensor(case, "w", wshape, wdtype, case.get("layout_w"), grads)
            b = tensor(case, "b", (O + (bad == "b_size"),), dtype, None, grads) if bias else None
            inputs.update({"w": w, "b": b})
            side.at("forward")
            if side.torch:
                y = F.conv2d(x, w, b, stride, padding, dilation, G)
                if fused:
                    y = F.max_pool2d(F.relu(y), 2, 2)
            else:
                fn = FF.conv_relu_pool2d if fused else FF.conv2d
                y = fn(x, w, b, stride, padding, dilation, G)
        outputs = {"out": y}
        side.out["out"] = y.detach().clone().requires_grad_(y.requires_grad)
        gradients(side, case, outputs, inputs)

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    work = max(1, C // max(G, 1) * kh * kw) ** 0.5 * max(1, N * Hs * Ws) ** 0.25
    return compare_outcomes(t, f, tol_for(dtype, work), messages=module)


# ---- pooling ----------------------------------------------------------------------------------------

def _pair_of(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def padding_only_windows(shape, kwargs):
    """Whether a max pooling has a window lying wholly in the padding (a dilation can step over the
    input). torch's backward is undefined there: it scatters to the -inf's index, which can lie
    outside the plane (heap corruption). Such cases compare the forward only."""
    try:
        k = _pair_of(kwargs["kernel_size"])
        st = _pair_of(kwargs.get("stride") or kwargs["kernel_size"])
        p, d = _pair_of(kwargs.get("padding", 0)), _pair_of(kwargs.get("dilation", 1))
        for size, k_, s_, p_, d_ in zip(shape[-2:], k, st, p, d):
            span = d_ * (k_ - 1) + 1
            n = (size + 2 * p_ - span + (s_ - 1 if kwargs.get("ceil_mode") else 0)) // s_ + 1
            if kwargs.get("ceil_mode") and (n - 1) * s_ >= size + p_:
                n -= 1
            for o in range(max(n, 0)):
                if all(not 0 <= o * s_ - p_ + j * d_ < size for j in range(k_)):
                    return True
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        pass
    return False


def pool(case):
    """max_pool2d / avg_pool2d, functional and modules, against torch's."""
    api, dtype = case["api"], case["dtype"]
    kwargs = decode(case.get("kwargs", {}))
    shape = tuple(case["shape"])
    module = api in ("MaxPool2d", "AvgPool2d")
    grad = case.get("grad", True) and dtype in KERNEL_DTYPES
    if "max" in api.lower() and padding_only_windows(shape, kwargs):
        grad = False

    def run(side):
        side.at("inputs")
        x = tensor(case, "x", shape, dtype, case.get("layout_x"), grad, case.get("special"), case.get("ties", False))
        if module:
            side.at("construct")
            m = getattr(torch.nn if side.torch else fnn, api)(**kwargs)
            side.at("forward")
            y = m(x)
        else:
            lib = F if side.torch else FF
            side.at("forward")
            y = getattr(lib, api)(x, **kwargs)
        outputs = flatten(y, "out", {})
        side.out.update({n: o.detach().clone().requires_grad_(o.requires_grad) if isinstance(o, torch.Tensor) else o
                         for n, o in outputs.items()})
        gradients(side, case, outputs, {"x": x})

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    refusal = NotImplementedError if dtype not in KERNEL_DTYPES else None
    return compare_outcomes(t, f, tol_for(dtype, 4), messages=module, refusal=refusal)


# ---- optimizers ---------------------------------------------------------------------------------------

# fastrnn.optim's additions and the values they take.
EXTRA_HYPER = {"l1_decay": lambda v: v >= 0, "max_grad_norm": lambda v: v is None or v > 0}


def optimizer(case):
    """A few steps of fastrnn.optim.X against torch.optim.X from the same parameters and gradients:
    parameters after each step and the final state_dict; bad hyperparameters and state dicts."""
    name, dtype = case["opt"], case["dtype"]
    hyper = decode(case.get("hyper", {}))
    shapes = [tuple(s) for s in case["shapes"]]
    steps, bad = case.get("steps", 2), case.get("bad")

    def run(side):
        side.at("setup")
        params = []
        for k, s in enumerate(shapes):
            p = tensor(case, f"p{k}", s, dtype, case.get("layout") if k == 0 else None)
            params.append(torch.nn.Parameter(p))
        side.at("construct")
        cls = getattr(torch.optim if side.torch else foptim, name)
        if side.torch:  # fastrnn's additions done by hand around torch's step, checked as fastrnn words them
            kw = {k: v for k, v in hyper.items() if k not in EXTRA_HYPER}
            opt = cls(params, **kw)
            for key, valid in EXTRA_HYPER.items():
                if key in hyper and not valid(hyper[key]):
                    raise ValueError(f"Invalid {key} value: {hyper[key]}")
        else:
            opt = cls(params, **hyper)
        for step in range(steps):
            side.at(f"step {step}")
            for k, p in enumerate(params):
                if (step + k) % 5 == 4 and case.get("sparse_grads"):
                    p.grad = None  # a parameter without a gradient this step
                else:
                    p.grad = cast(values(case, f"g{k}.{step}", p.shape, special=case.get("special")
                                         if k == 0 and step == 0 else None), dtype)
            if step == 1 and bad == "amsgrad_later":
                for g in opt.param_groups:
                    g["amsgrad"] = True
            if step == 1 and bad == "state_shape":
                sd = opt.state_dict()
                for st in sd["state"].values():
                    for key, v in st.items():
                        if isinstance(v, torch.Tensor) and v.dim() > 0:
                            st[key] = torch.zeros(v.numel() + 1, dtype=v.dtype)
                side.at("load_state_dict")
                opt.load_state_dict(sd)
                side.at(f"step {step}")
            if step == 1 and bad == "empty_state":
                side.at("load_state_dict")
                sd = opt.state_dict()
                sd["state"] = {0: {}}
                opt.load_state_dict(sd)
                side.at(f"step {step}")
            if step == 1 and bad == "torch_state":  # a torch optimizer's state dict into either
                other = getattr(torch.optim, name)([torch.nn.Parameter(p.detach().clone()) for p in params], **hyper)
                for p, q in zip(other.param_groups[0]["params"], params):
                    p.grad = q.grad.clone() if q.grad is not None else None
                other.step()
                side.at("load_state_dict")
                opt.load_state_dict(other.state_dict())
                side.at(f"step {step}")
            if side.torch and any(k in hyper for k in EXTRA_HYPER):
                # fastrnn clips the gradients (norm over all of them), then adds the L1 penalty's
                # gradient l1_decay * sign(p); like weight_decay it shrinks p under maximize too
                # (torch negates the gradient first, then adds weight_decay * p).
                if hyper.get("max_grad_norm") is not None:
                    torch.nn.utils.clip_grad_norm_(params, hyper["max_grad_norm"])
                sign = -1.0 if hyper.get("maximize") else 1.0
                for p in params:
                    if p.grad is not None and hyper.get("l1_decay"):
                        p.grad = p.grad + sign * hyper["l1_decay"] * torch.sign(p.detach())
            opt.step()
            for k, p in enumerate(params):
                side.out[f"param{k}@step{step}"] = p.detach().clone()
        side.at("state_dict")
        sd = opt.state_dict()
        if not side.torch:  # fastrnn's documented additions are not a difference
            for g in sd["param_groups"]:
                for key in EXTRA_HYPER:
                    g.pop(key, None)
        flatten(sd, "state_dict", side.out)

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    # torch's words are promised for the constructor's checks; a failing step's message is torch's
    # arithmetic on the wrong state (a broadcast error), so there the types are compared.
    construct = isinstance(t, Raised) and t.phase == "construct"
    return compare_outcomes(t, f, {"float64": 1e-12, "float32": 1e-5}.get(dtype, 1e-3) * steps, messages=construct)


# ---- gradient clipping ----------------------------------------------------------------------------

def clip(case):
    """fastrnn.optim.clip_grad_norm_ against torch.nn.utils.clip_grad_norm_: the returned norm and
    the gradients after."""
    specs = case["grads"]  # [shape, dtype, layout or None] or None for a parameter without grad
    kwargs = decode(case.get("kwargs", {}))

    def run(side):
        side.at("setup")
        params = []
        for k, spec in enumerate(specs):
            if spec is None:
                params.append(torch.nn.Parameter(torch.zeros(2)))
                continue
            shape, dt, how = spec
            p = torch.nn.Parameter(torch.zeros(shape, dtype=DTYPES[dt]))
            p.grad = tensor(case, f"g{k}", shape, dt, how, special=case.get("special") if k == 0 else None)
            params.append(p)
        side.at("clip")
        fn = torch.nn.utils.clip_grad_norm_ if side.torch else foptim.clip_grad_norm_
        arg = params[0] if case.get("single") and params else params
        norm = fn(arg, **kwargs)
        side.out["norm"] = norm
        for k, p in enumerate(params):
            if p.grad is not None:
                side.out[f"grad{k}"] = p.grad.clone()

    t = run_side(run, "torch")
    f = run_side(run, "fastrnn")
    dtypes = [s[1] for s in specs if s is not None]
    tol = 1e-5 if "float32" in dtypes or "float16" in dtypes or "bfloat16" in dtypes else 1e-12
    if "float16" in dtypes or "bfloat16" in dtypes:
        tol = 1e-2
    return compare_outcomes(t, f, tol, messages=True)


# ---- fastrnn.utils ------------------------------------------------------------------------------------

def _ref_shift_split(x, length, shift, target_shift, axis, targets=None):
    length, shift, target_shift = int(length), int(shift), int(target_shift)
    if length < 1 or shift < 1 or target_shift < 0:
        raise ValueError("bad length/shift/target_shift")
    source = x if targets is None else targets
    axis = axis % x.ndim if x.ndim else 0
    n = x.shape[axis]
    if source.shape[axis] != n:
        raise ValueError("targets length")
    if n < length + target_shift:
        raise ValueError("too short")
    count = (n - target_shift - length) // shift + 1
    xs = np.moveaxis(np.asarray(x), axis, 0)
    ts = np.moveaxis(np.asarray(source), axis, 0)
    ins = np.stack([xs[i * shift:i * shift + length] for i in range(count)])
    outs = np.stack([ts[i * shift + target_shift:i * shift + target_shift + length] for i in range(count)])
    return _place(ins, axis), _place(outs, axis)


def _place(w, axis):
    """(count, length, *rest) with rest the other axes in order -> count at axis, length at axis+1."""
    order = list(range(2, w.ndim))
    perm = order[:axis] + [0, 1] + order[axis:]
    return np.transpose(w, perm)


def _ref_sliding(x, length, step, axis):
    length, step = int(length), int(step)
    if length < 1 or step < 1:
        raise ValueError("length and step must be positive")
    if x.ndim == 0:
        raise ValueError("no axis")
    axis = axis % x.ndim
    if x.shape[axis] < length:
        raise ValueError("too short")
    n = (x.shape[axis] - length) // step + 1
    xs = np.moveaxis(np.asarray(x), axis, 0)
    return _place(np.stack([xs[i * step:i * step + length] for i in range(n)]).reshape(
        (n, length) + xs.shape[1:]), axis)


def _ref_tbptt(data, k, target_shift, dim):
    k = int(k)
    if k < 1:
        raise ValueError("k must be positive")
    if target_shift is not None and int(target_shift) < 0:
        raise ValueError("target_shift must be non-negative")
    dim = dim % data.ndim
    shift = 0 if target_shift is None else int(target_shift)
    xs = np.moveaxis(np.asarray(data), dim, 0)
    steps = xs.shape[0] - shift
    if steps < 1:  # as shift_split: at least one chunk with its targets
        raise ValueError("too short for one chunk")
    out = []
    for start in range(0, max(steps, 0), k):
        stop = min(start + k, steps)
        chunk = np.moveaxis(xs[start:stop], 0, dim)
        out.append(chunk if target_shift is None else (chunk, np.moveaxis(xs[start + shift:stop + shift], 0, dim)))
    return out


def _ref_batchify(seq, batch_size, batch_first):
    batch_size = int(batch_size)
    steps = seq.shape[0] // batch_size if batch_size > 0 else 0
    if steps == 0:
        raise ValueError("too short")
    streams = np.asarray(seq)[:steps * batch_size].reshape((batch_size, steps) + seq.shape[1:])
    return streams if batch_first else np.swapaxes(streams, 0, 1)


def utils(case):
    """fastrnn.utils against its documented semantics (windows, chunks, batchify), torch's
    clip_grad_value_, sum-of-|p| / sum-of-p^2 penalties, per-gate initialiser properties."""
    fn, args = case["fn"], decode(case.get("args", {}))
    shape = tuple(case.get("shape", ()))
    kind = case.get("kind", "numpy")

    def data():
        v = values(case, "data", shape)
        if case.get("dtype") == "int64":
            v = (v * 10).round().to(torch.int64)
        if case.get("layout"):
            v = layout(v, case["layout"])
        return v if kind == "torch" else v.numpy()

    def out_of(res, side):
        flatten(res, "out", side.out)
        for n, o in list(side.out.items()):
            if isinstance(o, torch.Tensor):
                side.out[n] = ("ndarray", o.numpy().copy())

    def run(side):
        side.at("call")
        if fn in ("sliding_windows", "shift_split", "reshape_split", "batchify", "tbptt_chunks", "stateful_len"):
            x = data()
            if side.torch:
                xn = np.asarray(x)
                if fn == "sliding_windows":
                    res = _ref_sliding(xn, args["length"], args.get("step", 1), args.get("axis", 0))
                elif fn == "shift_split":
                    res = _ref_shift_split(xn, args["length"], args.get("shift", 1), args.get("target_shift", 1),
                                           args.get("axis", 0))
                elif fn == "reshape_split":
                    res = _ref_shift_split(xn, args["length"], args["length"], args.get("target_shift", 1),
                                           args.get("axis", 0))
                elif fn == "batchify":
                    res = _ref_batchify(xn, args["batch_size"], args.get("batch_first", False))
                elif fn == "tbptt_chunks":
                    res = _ref_tbptt(xn, args["k"], args.get("target_shift"), args.get("dim", 0))
                else:
                    res = len(_ref_tbptt(xn, args["k"], args.get("target_shift"), args.get("dim", 0)))
            else:
                if fn == "tbptt_chunks":
                    res = list(futils.tbptt_chunks(x, **args))
                elif fn == "stateful_len":
                    res = len(futils.StatefulBatches(x, **args))
                else:
                    res = getattr(futils, fn)(x, **args)
                if kind == "torch":
                    res = _to_numpy(res)
            out_of(res, side)
        elif fn == "clip_grad_value_":
            params = []
            for k, s in enumerate(case["shapes"]):
                p = torch.nn.Parameter(torch.zeros(s))
                p.grad = values(case, f"g{k}", s, special=case.get("special") if k == 0 else None).float() * 3
                params.append(p)
            (torch.nn.utils.clip_grad_value_ if side.torch else futils.clip_grad_value_)(params, **args)
            for k, p in enumerate(params):
                side.out[f"grad{k}"] = p.grad
        elif fn in ("l1_penalty", "l2_penalty"):
            ts = [values(case, f"t{k}", s).requires_grad_() for k, s in enumerate(case["shapes"])]
            if side.torch:
                if not ts:
                    res = torch.tensor(0.0)
                else:
                    terms = [(t.abs() if fn == "l1_penalty" else t.pow(2)).sum() for t in ts]
                    res = torch.stack(terms).sum()
            else:
                res = getattr(futils, fn)(ts)
            side.out["value"] = float(res)
            if ts and res.requires_grad:
                side.out["grads"] = torch.autograd.grad(res, ts, allow_unused=True)
                side.out["grads"] = [g.numpy().tolist() if g is not None else None for g in side.out["grads"]]
        elif fn == "initialiser":
            name, gates = args["name"], args.get("gates", 1)
            w = torch.empty(shape, dtype=torch.float64)
            if side.torch:
                side.out["properties"] = _init_expected(name, w, gates)
            else:
                getattr(futils, name)(w, gates)
                side.out["properties"] = _init_properties(name, w, gates)

    t = run_side(run, "torch")  # (the reference side: documented semantics, torch for clip_grad_value_)
    f = run_side(run, "fastrnn")
    return compare_outcomes(t, f, 1e-6, messages=False, oracle="torch" if fn == "clip_grad_value_" else "reference")


def _to_numpy(res):
    if isinstance(res, torch.Tensor):
        return res.numpy()
    if isinstance(res, (tuple, list)):
        return type(res)(_to_numpy(r) for r in res)
    return res


def _init_expected(name, w, gates):
    """What an initialiser's result must satisfy per gate block, or the error it must raise."""
    if w.dim() != 2 or gates < 1 or w.shape[0] % gates:
        raise ValueError("expected a 2-D weight of stacked gate blocks")
    return _init_properties(name, None, gates, shape=tuple(w.shape))


def _init_properties(name, w, gates, shape=None):
    """A summary both sides can agree on: finite, within bounds, orthonormal/identity blocks."""
    shape = tuple(w.shape) if w is not None else shape
    rows, cols = shape[0] // max(gates, 1), shape[1]
    if w is None:  # the expected summary
        ok = {"shape": list(shape), "finite": True}
        if name in ("orthogonal_", "identity_"):
            ok["structure"] = True
        if name in ("xavier_uniform_", "he_uniform_"):
            ok["bounded"] = True
        return ok
    out = {"shape": list(w.shape), "finite": bool(torch.isfinite(w).all())}
    blocks = w.chunk(gates, 0) if gates > 1 and w.shape[0] else [w]
    if name == "orthogonal_":
        good = True
        for b in blocks:
            m = b if b.shape[0] >= b.shape[1] else b.T
            if m.numel():
                good &= bool(torch.allclose(m.T @ m, torch.eye(m.shape[1], dtype=m.dtype), atol=1e-8))
        out["structure"] = good
    if name == "identity_":
        out["structure"] = all(torch.equal(b, torch.eye(*b.shape, dtype=b.dtype)) for b in blocks)
    if name in ("xavier_uniform_", "he_uniform_"):
        fan_in, fan_out = cols, rows
        bound = (math.sqrt(6.0 / (fan_in + fan_out)) if name == "xavier_uniform_" else math.sqrt(2.0) * math.sqrt(
            3.0 / fan_in)) if (fan_in + fan_out) and fan_in else math.inf
        out["bounded"] = bool((w.abs() <= bound).all())
    return out


def _harness_check(case):
    """The harness's own test: one side aborts (a crash) or sleeps (a hang)."""
    import time
    what = {"abort": os.abort, "hang": lambda: time.sleep(3600), "none": lambda: None}
    t = run_side(lambda side: what[case.get("torch", "none")](), "torch")
    f = run_side(lambda side: what[case.get("fastrnn", "none")](), "fastrnn")
    return compare_outcomes(t, f, 0.0, messages=False)


FAMILIES = {"__harness__": _harness_check, "rnn_module": rnn_module, "rnn_cell": rnn_cell,
            "functional_layer": functional_layer, "numpy_layer": numpy_layer, "conv": conv, "pool": pool,
            "optimizer": optimizer, "clip": clip, "utils": utils}


# ---- the child process -----------------------------------------------------------------------------

def poison_buffers():
    """As tests/conftest.py does in the test process: every buffer fastrnn hands its kernels starts
    as NaN (integers: an impossible value), so an element a kernel forgets to write shows."""
    torch_empty, numpy_empty = poisoned_empty, poisoned_numpy_empty  # tests/reference.py

    fastrnn.ops._runtime.empty = torch_empty
    fastrnn.ops._runtime.recycled = lambda t: t.fill_(float("nan"))
    if hasattr(frn, "_empty"):
        frn._empty = numpy_empty


def run_case(case):
    """{"problems": [...]} (empty: torch and fastrnn agree) or {"harness": traceback}."""
    best = fastrnn._C.get_isa()
    ORACLE_CRASHED["now"] = bool(case.get("oracle_crashed"))
    try:
        LAST.clear()
        if case.get("isa") in fastrnn._C.supported_isas():  # a lower instruction set's kernels
            fastrnn._C.set_isa(case["isa"])
        problems = FAMILIES[case["family"]](case)
        return {"problems": problems, "torch": LAST.get("torch", "")}
    except Exception:  # noqa: BLE001 - a bug in this file, not in fastrnn: reported as such
        return {"harness": traceback.format_exc()}
    finally:
        fastrnn._C.set_isa(best)


def serve():
    # Results go out on a private copy of stdout; anything the library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    SERVING["now"] = True
    poison_buffers()
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        result = run_case(json.loads(line))
        out.write(json.dumps(result) + "\n")


def main(argv):
    import faulthandler
    import resource
    faulthandler.enable()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash is a finding, not a core file
    torch.set_num_threads(int(os.environ.get("FASTRNN_FUZZ_THREADS", "2")))
    if argv[1:] == ["--serve"]:
        serve()
        return
    poison_buffers()
    for text in argv[1:]:
        case = json.loads(text)
        fn = FAMILIES[case["family"]]
        result = run_case(case)
        print(json.dumps(case))
        print("  verdict:", "agree" if result.get("problems") == [] else result)
        del fn


if __name__ == "__main__":
    main(sys.argv)
