"""The CUDA RNN kernels against torch on the same GPU (cuDNN) and against the CPU float64 result
(skipped without a GPU): every cell, both directions, all dtypes, odd sizes, variable lengths,
gradients, the drop-in modules, stream semantics and device-mismatch errors."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn.functional as F
import fastrnn.nn
from fastrnn import ops
from fastrnn._checks import CELLS as CELL_CODES
from conftest import CELLS, torch_layer

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


def relative_error(actual, expected):
    actual = actual.detach().to("cpu", torch.float64)
    expected = expected.detach().to("cpu", torch.float64)
    assert actual.shape == expected.shape
    assert not actual.isnan().any(), "NaN in the result"
    scale = max(1.0, expected.abs().max().item())
    return (actual - expected).abs().max().item() / scale


def check(name, ours, reference, dtype, cudnn=None, tolerance=None):
    """ours within the dtype's tolerance of the float64 reference; for half precision also no
    worse than 4x cuDNN's error on the same rounded problem, whichever bound is larger."""
    err = relative_error(ours, reference)
    bound = tolerance or TOLERANCE[dtype]
    if cudnn is not None and dtype in (torch.float16, torch.bfloat16):
        bound = max(bound, 4 * relative_error(cudnn, reference))
    assert err <= bound, f"{name}: relative error {err:.3e} > {bound:.1e} ({dtype})"


def rounded(t, dtype):
    """t rounded to dtype, back in float64: the reference sees exactly the kernels' inputs."""
    return t.to(dtype).to(torch.float64)


def make_layer(cell, I, H, bias, dtype, seed, proj_size=0):
    torch.manual_seed(seed)
    if cell == "lstm":
        layer = torch.nn.LSTM(I, H, bias=bias, proj_size=proj_size)
    elif cell == "gru":
        layer = torch.nn.GRU(I, H, bias=bias)
    else:
        layer = torch.nn.RNN(I, H, bias=bias, nonlinearity=cell.split("_")[1])
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(rounded(p, dtype))
    return layer.double()


def run_layer(layer, cell, x, h0, c0):
    if cell == "lstm":
        y, (h_n, c_n) = layer(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
        return y, h_n[0], c_n[0]
    y, h_n = layer(x, h0.unsqueeze(0))
    return y, h_n[0], None


def loss_of(outputs, weights):
    return sum((o.float() * w).sum() for o, w in zip(outputs, weights) if o is not None)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", [(7, 5, 13, 37), (13, 3, 70, 97)])
def test_functional_matches_float64_and_cudnn(cell, reverse, dtype, T, B, I, H):
    layer = make_layer(cell, I, H, True, dtype, seed=T + H)
    gen = torch.Generator().manual_seed(H)
    x = rounded(torch.randn(T, B, I, generator=gen), dtype)
    h0 = rounded(0.5 * torch.randn(B, H, generator=gen), dtype)
    c0 = rounded(0.5 * torch.randn(B, H, generator=gen), dtype) if cell == "lstm" else None
    # Output gradients representable in dtype, so every side back-propagates the same values.
    out_weights = [rounded(torch.randn(shape, generator=gen), dtype).float() for shape in ((T, B, H), (B, H), (B, H))]
    params = [p.detach() for p in layer.parameters()]

    def inputs(device, dt):
        tensors = [x, h0, c0] + params
        return [None if t is None else t.to(device, dt).requires_grad_() for t in tensors]

    # The float64 reference on the CPU (time-flipped for the reverse direction).
    ref_in = inputs("cpu", torch.float64)
    ref_layer = make_layer(cell, I, H, True, dtype, seed=T + H)
    with torch.no_grad():
        for p, q in zip(ref_layer.parameters(), ref_in[3:]):
            p.copy_(q)
    xin = ref_in[0].flip(0) if reverse else ref_in[0]
    y, h_n, c_n = run_layer(ref_layer, cell, xin, ref_in[1], ref_in[2])
    ref_out = [y.flip(0) if reverse else y, h_n, c_n]
    ref_in_grads = torch.autograd.grad(loss_of(ref_out, out_weights), [xin] + [t for t in ref_in[1:] if t is not None]
                                       + list(ref_layer.parameters()))

    # fastrnn on the GPU.
    ours_in = inputs("cuda", dtype)
    xo, h0o, c0o, *weights = ours_in
    if cell == "lstm":
        ours_out = list(F.lstm(xo, h0o, c0o, *weights, reverse=reverse))
    elif cell == "gru":
        ours_out = list(F.gru(xo, h0o, *weights, reverse=reverse)) + [None]
    else:
        ours_out = list(F.rnn(xo, h0o, *weights, nonlinearity=cell.split("_")[1], reverse=reverse)) + [None]
    for o in ours_out:
        assert o is None or (o.device.type == "cuda" and o.dtype == dtype)
    ours_grads = torch.autograd.grad(loss_of(ours_out, [w.cuda() for w in out_weights]),
                                     [t for t in ours_in if t is not None])

    # torch (cuDNN) on the same GPU, in the same dtype.
    cudnn_layer = make_layer(cell, I, H, True, dtype, seed=T + H).to("cuda", dtype)
    xc = x.to("cuda", dtype)
    xc = (xc.flip(0) if reverse else xc).requires_grad_()
    yc, hc, cc = run_layer(cudnn_layer, cell, xc, h0.to("cuda", dtype), None if c0 is None else c0.to("cuda", dtype))
    cudnn_out = [yc.flip(0) if reverse else yc, hc, cc]
    cudnn_grads = torch.autograd.grad(loss_of(cudnn_out, [w.cuda() for w in out_weights]),
                                      [xc] + list(cudnn_layer.parameters()))
    cudnn_grads = [cudnn_grads[0].flip(0) if reverse else cudnn_grads[0]] + list(cudnn_grads[1:])

    exact = dtype in (torch.float32, torch.float64)
    for name, o, r, c in zip(["y", "h_n", "c_n"], ours_out, ref_out, cudnn_out):
        if o is not None:
            check(name, o, r, dtype, c)
            if exact:
                check(name + " vs cuDNN", o, c, dtype, tolerance=2 * TOLERANCE[dtype])
    ref_grads = list(ref_in_grads)
    ref_grads[0] = ref_grads[0].flip(0) if reverse else ref_grads[0]
    names = ["dx", "dh0"] + (["dc0"] if cell == "lstm" else []) + ["dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"]
    n_states = 2 if cell == "lstm" else 1
    cudnn_by_name = dict(zip(["dx", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"], cudnn_grads))
    for name, o, r in zip(names, ours_grads, ref_grads):
        check(name, o, r, dtype, cudnn_by_name.get(name))
        if exact and name in cudnn_by_name:
            check(name + " vs cuDNN", o, cudnn_by_name[name], dtype, tolerance=2 * TOLERANCE[dtype])
    assert len(ours_grads) == 1 + n_states + 4


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


def module_pair(kind, dtype, **kwargs):
    torch.manual_seed(11)
    reference = getattr(torch.nn, kind)(**kwargs)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(rounded(p, dtype))
    ours = getattr(fastrnn.nn, kind)(**kwargs)
    ours.load_state_dict(reference.state_dict())
    return ours.to("cuda", dtype), reference


MODULE_CASES = [
    ("LSTM", dict(input_size=13, hidden_size=37, num_layers=2, bidirectional=True)),
    ("LSTM", dict(input_size=13, hidden_size=37, proj_size=7, num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(input_size=13, hidden_size=29, num_layers=2, bidirectional=True, batch_first=True)),
    ("RNN", dict(input_size=13, hidden_size=29, num_layers=3, nonlinearity="relu")),
    ("RNN", dict(input_size=13, hidden_size=29, bidirectional=True)),
]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("kind,kwargs", MODULE_CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(MODULE_CASES)])
def test_modules_on_cuda(kind, kwargs, dtype):
    """fastrnn.nn.X(...).cuda() against torch.nn.X in float64 on the CPU and on the GPU (cuDNN)."""
    ours, reference = module_pair(kind, dtype, **kwargs)
    cudnn = __import__("copy").deepcopy(reference).to("cuda", dtype)
    reference = reference.double()
    gen = torch.Generator().manual_seed(5)
    shape = (5, 11, 13) if kwargs.get("batch_first") else (11, 5, 13)
    x = rounded(torch.randn(shape, generator=gen), dtype)
    outs = {}
    for name, module, device, dt in (("ours", ours, "cuda", dtype), ("ref", reference, "cpu", torch.float64),
                                     ("cudnn", cudnn, "cuda", dtype)):
        xi = x.to(device, dt).requires_grad_()
        y, hidden = module(xi)
        hidden = hidden if isinstance(hidden, tuple) else (hidden,)
        gen_w = torch.Generator().manual_seed(6)
        loss = (y.float().cpu() * rounded(torch.randn(y.shape, generator=gen_w), dtype).float()).sum()
        for h in hidden:
            loss = loss + (h.float().cpu() * rounded(torch.randn(h.shape, generator=gen_w), dtype).float()).sum()
        grads = torch.autograd.grad(loss, [xi] + list(module.parameters()))
        outs[name] = [y, *hidden, *grads]
    for k, (o, r, c) in enumerate(zip(outs["ours"], outs["ref"], outs["cudnn"])):
        assert o.device.type == "cuda"
        check(f"output {k}", o, r, dtype, c)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_packed_variable_lengths_on_cuda(kind, dtype):
    """Each sequence stops at its own length; padding is never computed on."""
    kwargs = dict(input_size=7, hidden_size=19, num_layers=2, bidirectional=True)
    if kind == "LSTM":
        kwargs["proj_size"] = 5
    ours, reference = module_pair(kind, dtype, **kwargs)
    reference = reference.double()
    lengths = torch.tensor([9, 9, 6, 3, 1])
    gen = torch.Generator().manual_seed(8)
    x = rounded(torch.randn(9, 5, 7, generator=gen), dtype)
    outs = {}
    for name, module, device, dt in (("ours", ours, "cuda", dtype), ("ref", reference, "cpu", torch.float64)):
        xi = x.to(device, dt).requires_grad_()
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=False)
        y, hidden = module(packed)
        padded, _ = pad_packed_sequence(y)
        hidden = hidden if isinstance(hidden, tuple) else (hidden,)
        gen_w = torch.Generator().manual_seed(9)
        loss = (padded.float().cpu() * rounded(torch.randn(padded.shape, generator=gen_w), dtype).float()).sum()
        for h in hidden:
            loss = loss + (h.float().cpu() * rounded(torch.randn(h.shape, generator=gen_w), dtype).float()).sum()
        outs[name] = [padded, *hidden, *torch.autograd.grad(loss, [xi] + list(module.parameters()))]
    for k, (o, r) in enumerate(zip(outs["ours"], outs["ref"])):
        check(f"output {k}", o, r, dtype)


def test_cells_on_cuda():
    for kind in ("LSTMCell", "GRUCell", "RNNCell"):
        torch.manual_seed(2)
        reference = getattr(torch.nn, kind)(6, 9).double()
        ours = getattr(fastrnn.nn, kind)(6, 9)
        ours.load_state_dict(reference.state_dict())
        ours = ours.cuda()
        x = torch.randn(4, 6, dtype=torch.float64)
        out = ours(x.float().cuda())
        ref = reference(x)
        for o, r in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,)):
            check(kind, o, r, torch.float32)


def test_larger_sizes_span_many_tiles():
    """Products of several tiles in every direction (rows, gates, K), float32 against float64."""
    layer = make_layer("lstm", 130, 150, True, torch.float32, seed=1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 70, 130, generator=gen, dtype=torch.float64)
    h0 = torch.randn(70, 150, generator=gen, dtype=torch.float64)
    c0 = torch.randn(70, 150, generator=gen, dtype=torch.float64)
    weights = [p.detach() for p in layer.parameters()]
    xo = x.float().cuda().requires_grad_()
    wo = [w.float().cuda().requires_grad_() for w in weights]
    y, h_n, c_n = F.lstm(xo, h0.float().cuda(), c0.float().cuda(), *wo)
    xr = x.clone().requires_grad_()
    wr = [w.clone().requires_grad_() for w in weights]
    yr, hr, cr = F.lstm(xr, h0, c0, *wr)  # the CPU kernels, float64
    for name, o, r in (("y", y, yr), ("h_n", h_n, hr), ("c_n", c_n, cr)):
        check(name, o, r, torch.float32)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    gy_ours = torch.autograd.grad((y * gy.float().cuda()).sum(), [xo] + wo)
    gy_ref = torch.autograd.grad((yr * gy).sum(), [xr] + wr)
    for k, (o, r) in enumerate(zip(gy_ours, gy_ref)):
        check(f"grad {k}", o, r, torch.float32)


def test_tf32_follows_torch_switch():
    """float32 products use TF32 tensor cores exactly when torch.backends.cuda.matmul.allow_tf32
    says so: a TF32 run is within TF32's error and measurably less exact than the default."""
    layer = make_layer("gru", 64, 96, True, torch.float32, seed=2)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 16, 64, generator=gen, dtype=torch.float64)
    h0 = torch.randn(16, 96, generator=gen, dtype=torch.float64)
    weights = [p.detach() for p in layer.parameters()]
    reference, _ = F.gru(x, h0, *weights)
    errors = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        y, _ = F.gru(x.float().cuda(), h0.float().cuda(), *[w.float().cuda() for w in weights])
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
        torch.manual_seed(0)
        reference = getattr(torch.nn, kind)(4, 5)
        ours = getattr(fastrnn.nn, kind)(4, 5)
        ours.load_state_dict(reference.state_dict())
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
    call = {"x": ops._view(x), "h0": ops._view(h0), "c0": ops._view(h0), "weight_ih": ops._view(w[0]),
            "weight_hh": ops._view(w[1]), "y": ops._view(y), "h_n": ops._view(outs[0]), "c_n": ops._view(outs[1]),
            "workspace": ops._view(torch.empty(16, dtype=torch.uint8, device="cuda"))}
    with pytest.raises(RuntimeError, match="workspace"):
        fastrnn._C.rnn_forward(CELL_CODES["lstm"], False, [call])
