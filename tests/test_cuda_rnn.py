"""The CUDA RNN kernels against torch on the same GPU (cuDNN) and against the CPU float64 result
(skipped without a GPU): every cell, both directions, all dtypes, odd sizes, variable lengths,
gradients, the drop-in modules, stream semantics and device-mismatch errors."""

import copy

import pytest
import torch

import fastrnn.functional as F
import fastrnn.nn
from fastrnn import ops
from fastrnn._checks import CELLS as CELL_CODES
from reference import CELLS, twins
from cuda_references import (fastrnn_run, grad_names, make_layer, module_outputs, module_run, parametrize_modules,
                             problem, relative_error, rnn_reference)

pytestmark = pytest.mark.cuda

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# Largest error allowed against the float64 reference, relative to its largest magnitude (at
# least 1). float32 runs true fp32 products; the GPU's expf/tanhf and summation order differ
# from the CPU's by a few ulps per step. Half precision rounds the inputs of every product
# (like cuDNN); there the bound is also calibrated by cuDNN's own error on the same problem.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 5e-5, torch.float16: 1e-2, torch.bfloat16: 6e-2}
TF32_TOLERANCE = 5e-3


@pytest.fixture(autouse=True)
def exact_fp32():
    """True fp32 on both sides unless a test asks for TF32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check(name, ours, reference, dtype, cudnn=None, tolerance=None):
    """ours within the dtype's tolerance of the float64 reference; for half precision also no
    worse than 4x cuDNN's error on the same rounded problem, whichever bound is larger."""
    err = relative_error(ours, reference)
    bound = tolerance or TOLERANCE[dtype]
    if cudnn is not None and dtype in (torch.float16, torch.bfloat16):
        bound = max(bound, 4 * relative_error(cudnn, reference))
    assert err <= bound, f"{name}: relative error {err:.3e} > {bound:.1e} ({dtype})"


# (T, B, I, H) of test_functional_matches_float64_and_cudnn.
FUNCTIONAL_CASES = [(7, 5, 13, 37), (13, 3, 70, 97)]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", FUNCTIONAL_CASES)
def test_functional_matches_float64_and_cudnn(cell, reverse, dtype, T, B, I, H):
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed=T + H)
    params = [p.detach() for p in layer.parameters()]
    ref_out, ref_grads = rnn_reference(layer, cell, x, h0, c0, out_weights, reverse)  # float64, CPU
    ours_out, ours_grads = fastrnn_run(cell, "cuda", dtype, x, h0, c0, params, out_weights, reverse)
    for o in ours_out:
        assert o is None or (o.device.type == "cuda" and o.dtype == dtype)
    # torch (cuDNN) on the same GPU, in the same dtype, on the same problem.
    cudnn_layer = copy.deepcopy(layer).to("cuda", dtype)
    cudnn_out, cudnn_grads = rnn_reference(cudnn_layer, cell, x, h0, c0, out_weights, reverse)

    exact = dtype in (torch.float32, torch.float64)
    for name, o, r, c in zip(["y", "h_n", "c_n"], ours_out, ref_out, cudnn_out):
        if o is not None:
            check(name, o, r, dtype, c)
            if exact:
                check(name + " vs cuDNN", o, c, dtype, tolerance=2 * TOLERANCE[dtype])
    names = grad_names(cell)
    assert len(ours_grads) == len(ref_grads) == len(cudnn_grads) == len(names)
    for name, o, r, c in zip(names, ours_grads, ref_grads, cudnn_grads):
        check(name, o, r, dtype, c)
        if exact:
            check(name + " vs cuDNN", o, c, dtype, tolerance=2 * TOLERANCE[dtype])


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_float64_on_cuda(cell):
    layer = make_layer(cell, 5, 6, True, torch.float64, seed=3)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    h0 = torch.randn(3, 6, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    c0 = torch.randn(3, 6, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    weights = [p.detach().cuda().requires_grad_() for p in layer.parameters()]
    for reverse in (False, True):
        if cell == "lstm":
            fn = lambda *a: F.lstm(*a, reverse=reverse)  # noqa: E731
            args = (x, h0, c0, *weights)
        elif cell == "gru":
            fn = lambda *a: F.gru(*a, reverse=reverse)  # noqa: E731
            args = (x, h0, *weights)
        else:
            nl = cell.split("_")[1]
            fn = lambda *a: F.rnn(*a, nonlinearity=nl, reverse=reverse)  # noqa: E731
            args = (x, h0, *weights)
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_opcheck_on_cuda(dtype, training):
    layer = make_layer("lstm", 5, 4, True, dtype, seed=0)
    x = torch.randn(4, 3, 5, device="cuda", dtype=dtype, requires_grad=training)
    h0 = torch.randn(3, 4, device="cuda", dtype=dtype, requires_grad=training)
    c0 = torch.randn(3, 4, device="cuda", dtype=dtype, requires_grad=training)
    params = [p.detach().to("cuda", dtype).requires_grad_(training) for p in layer.parameters()]
    args = (x, h0, c0, *params, None, None, CELL_CODES["lstm"], False, training)
    torch.library.opcheck(torch.ops.fastrnn.rnn_forward.default, args)


MODULE_CASES = [
    ("LSTM", dict(input_size=13, hidden_size=37, num_layers=2, bidirectional=True)),
    ("LSTM", dict(input_size=13, hidden_size=37, proj_size=7, num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(input_size=13, hidden_size=29, num_layers=2, bidirectional=True, batch_first=True)),
    ("RNN", dict(input_size=13, hidden_size=29, num_layers=3, nonlinearity="relu")),
    ("RNN", dict(input_size=13, hidden_size=29, bidirectional=True)),
]


@parametrize_modules(MODULE_CASES, ALL_DTYPES)
def test_modules_on_cuda(kind, kwargs, dtype):
    """fastrnn.nn.X(...).cuda() against torch.nn.X in float64 on the CPU and on the GPU (cuDNN)."""
    reference, x, got, expected = module_run(kind, kwargs, dtype, T=11, B=5, seed=5)
    # The float64 reference's weights hold values representable in dtype: cuDNN gets the same.
    theirs = module_outputs(copy.deepcopy(reference).to("cuda", dtype), x, dtype, "cuda", dtype)
    assert len(got) == len(theirs)
    for k, (o, r, c) in enumerate(zip(got, expected, theirs)):
        assert o.device.type == "cuda"
        check(f"output {k}", o, r, dtype, c)


PACKED_LENGTHS = [9, 9, 6, 3, 1]


def packed_kwargs(kind):
    kwargs = dict(input_size=7, hidden_size=19, num_layers=2, bidirectional=True)
    if kind == "LSTM":
        kwargs["proj_size"] = 5
    return kwargs


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_packed_variable_lengths_on_cuda(kind, dtype):
    """Each sequence stops at its own length; padding is never computed on."""
    _, _, got, expected = module_run(kind, packed_kwargs(kind), dtype, T=9, B=5, seed=8,
                                     lengths=torch.tensor(PACKED_LENGTHS))
    for k, (o, r) in enumerate(zip(got, expected)):
        check(f"output {k}", o, r, dtype)


CELL_KINDS = ["LSTMCell", "GRUCell", "RNNCell"]


def cell_pair(kind):
    """(fastrnn.nn cell in float32 on the CPU, torch.nn cell in float64, float64 input)."""
    reference, ours = twins(kind, 6, 9, seed=2)
    x = torch.randn(4, 6, dtype=torch.float64)
    return ours.float(), reference, x


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cells_on_cuda(kind):
    ours, reference, x = cell_pair(kind)
    got, expected = as_list(ours.cuda()(x.float().cuda())), as_list(reference(x))
    assert len(got) == len(expected)
    for o, r in zip(got, expected):
        assert o.device.type == "cuda"
        check(kind, o, r, torch.float32)


# (cell, dtype, T, B, I, H, seed) of the float32 problems checked against fastrnn's CPU kernels
# in float64: products of several tiles in every direction (rows, gates, K), and TF32's problem.
LARGER_PROBLEM = ("lstm", torch.float32, 20, 70, 130, 150, 1)
TF32_PROBLEM = ("gru", torch.float32, 8, 16, 64, 96, 2)


def test_larger_sizes_span_many_tiles():
    """Products of several tiles in every direction (rows, gates, K), float32 against float64."""
    cell, dtype, T, B, I, H, seed = LARGER_PROBLEM
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed)
    params = [p.detach() for p in layer.parameters()]
    ref_out, ref_grads = fastrnn_run(cell, "cpu", torch.float64, x, h0, c0, params, out_weights, False)
    ours_out, ours_grads = fastrnn_run(cell, "cuda", dtype, x, h0, c0, params, out_weights, False)
    for name, o, r in zip(["y", "h_n", "c_n"] + grad_names(cell), ours_out + ours_grads, ref_out + ref_grads):
        check(name, o, r, dtype)


def test_tf32_follows_torch_switch():
    """float32 products use TF32 tensor cores exactly when torch.backends.cuda.matmul.allow_tf32
    says so: a TF32 run is within TF32's error and measurably less exact than the default."""
    cell, dtype, T, B, I, H, seed = TF32_PROBLEM
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed)
    params = [p.detach() for p in layer.parameters()]
    (reference, *_), _ = fastrnn_run(cell, "cpu", torch.float64, x, h0, c0, params, out_weights, False,
                                     training=False)
    errors = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        (y, *_), _ = fastrnn_run(cell, "cuda", dtype, x, h0, c0, params, out_weights, False, training=False)
        errors[tf32] = relative_error(y, reference)
    assert errors[False] <= TOLERANCE[torch.float32]
    assert errors[True] <= TF32_TOLERANCE
    assert errors[True] > 10 * errors[False]


def test_runs_on_the_callers_stream():
    """The kernels queue on the current stream: an input that a side stream is still producing
    is read only once it is ready (a launch on another stream would read the poison)."""
    layer = make_layer("lstm", 9, 17, True, torch.float32, seed=4)
    weights = [p.detach().float().cuda() for p in layer.parameters()]
    source = torch.randn(12, 6, 9, device="cuda")
    h0 = torch.zeros(6, 17, device="cuda")
    expected = F.lstm(source, h0, h0, *weights)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x = torch.full_like(source, float("nan"))
        torch.cuda._sleep(100_000_000)  # keeps the side stream busy well past the launches below
        x.copy_(source)
        got = F.lstm(x, h0, h0, *weights)
    torch.cuda.current_stream().wait_stream(side)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_no_host_synchronisation():
    layer = make_layer("gru", 9, 17, True, torch.float32, seed=4)
    weights = [p.detach().float().cuda().requires_grad_() for p in layer.parameters()]
    x = torch.randn(12, 6, 9, device="cuda", requires_grad=True)
    h0 = torch.zeros(6, 17, device="cuda")
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y, h_n = F.gru(x, h0, *weights)
        y.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_half_precision_is_cuda_only():
    layer = make_layer("lstm", 4, 5, True, torch.float32, seed=0)
    x = torch.randn(3, 2, 4, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="dtype"):
        F.lstm(x, None, None, *[p.detach().half() for p in layer.parameters()])


def test_device_mismatch_errors():
    layer = make_layer("lstm", 4, 5, True, torch.float32, seed=0)
    cpu_weights = [p.detach().float() for p in layer.parameters()]
    x = torch.randn(3, 2, 4, device="cuda")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        F.lstm(x, None, None, *cpu_weights)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        F.lstm(x, torch.zeros(2, 5), torch.zeros(2, 5), *[w.cuda() for w in cpu_weights])

    # The modules raise what torch.nn raises: CPU parameters with a CUDA input, CPU states.
    for kind in ("LSTM", "GRU", "RNN"):
        reference, ours = twins(kind, 4, 5, dtype=torch.float32)
        with pytest.raises(RuntimeError) as torch_error:
            reference(x)
        with pytest.raises(RuntimeError, match="not at the same device") as our_error:
            ours(x)
        assert type(our_error.value) is type(torch_error.value)
        reference, ours = reference.cuda(), ours.cuda()
        h = torch.zeros(1, 2, 5)
        hx = (h, h) if kind == "LSTM" else h
        with pytest.raises(RuntimeError) as torch_error:
            reference(x, hx)
        with pytest.raises(RuntimeError, match="not at the same device"):
            ours(x, hx)
    cell = fastrnn.nn.LSTMCell(4, 5)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        cell(torch.randn(2, 4, device="cuda"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_two_gpus():
    layer = make_layer("gru", 4, 5, True, torch.float32, seed=0)
    x = torch.randn(3, 2, 4, device="cuda:0")
    weights = [p.detach().float().to("cuda:1") for p in layer.parameters()]
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        F.gru(x, None, *weights)
    # On the second GPU alone it runs there, on that device's current stream.
    y, h_n = F.gru(x.to("cuda:1"), None, *weights)
    assert y.device == torch.device("cuda:1")
    ref, _ = F.gru(x.cpu().double(), None, *[w.cpu().double() for w in weights])
    check("y", y, ref, torch.float32)


def test_kernel_errors_become_exceptions():
    """The core's own checks on a direct call (a workspace too small) raise, never abort."""
    layer = make_layer("lstm", 4, 5, True, torch.float32, seed=0)
    w = [p.detach().float().cuda() for p in layer.parameters()]
    x = torch.randn(3, 2, 4, device="cuda")
    h0 = torch.zeros(2, 5, device="cuda")
    y = torch.empty(3, 2, 5, device="cuda")
    outs = [torch.empty(2, 5, device="cuda") for _ in range(2)]
    view = ops._runtime.view
    call = {"x": view(x), "h0": view(h0), "c0": view(h0), "weight_ih": view(w[0]),
            "weight_hh": view(w[1]), "y": view(y), "h_n": view(outs[0]), "c_n": view(outs[1]),
            "workspace": view(torch.empty(16, dtype=torch.uint8, device="cuda"))}
    with pytest.raises(RuntimeError, match="workspace"):
        fastrnn._C.rnn_forward(CELL_CODES["lstm"], False, [call])
