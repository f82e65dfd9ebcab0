"""The CUDA Conv2d kernels (fastrnn.ops.conv's cuda_* calls) against float64 references computed by torch on the
CPU and against torch's own CUDA convolution; the fused conv + bias + ReLU + 2x2 max pool against
torch's three ops. The GPU tests are marked `cuda` (skipped without a GPU); the gather index math
and the error paths are checked everywhere."""

import os
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

import fastrnn
from fastrnn import _C
from fastrnn.ops import conv as conv_ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CASES = [
    (2, 3, 13, 11, 7, 3, 3, 1, 1, 1, 1, True),
    (3, 8, 9, 9, 16, 1, 1, 1, 0, 1, 1, False),
    (1, 6, 17, 15, 9, 3, 5, 2, (1, 2), 1, 3, True),
    (2, 5, 12, 13, 37, 3, 3, (2, 1), 0, (2, 1), 1, True),
    (2, 12, 11, 10, 12, 3, 3, 1, 1, 1, 12, True),     # depthwise
    (1, 7, 14, 9, 14, 5, 3, 2, 2, 2, 7, False),        # depthwise, channel multiplier 2
    (4, 32, 15, 15, 48, 3, 3, 1, 1, 1, 1, True),
    (1, 130, 7, 9, 133, 3, 3, 1, 1, 1, 1, True),       # crosses the 128-wide tiles
    (2, 4, 23, 19, 6, 7, 7, 3, 3, 1, 2, True),
]
# float32 runs twice: on the FMA units, and on TF32 tensor cores (torch.backends.cudnn.allow_tf32).
MODES = ["float64", "float32", "tf32", "float16", "bfloat16"]
# Largest error allowed relative to the reference's largest magnitude (at least 1).
TOLERANCE = {"float64": 1e-10, "float32": 2e-5, "tf32": 2e-3, "float16": 1e-2, "bfloat16": 2e-2}


@pytest.fixture(params=MODES)
def mode(request):
    """The dtype under test, with allow_tf32 set for this mode (and restored afterwards)."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = request.param == "tf32"
    yield request.param
    torch.backends.cudnn.allow_tf32 = previous


def dtype_of(mode):
    return torch.float32 if mode == "tf32" else getattr(torch, mode)


def case_id(c):
    N, C, H, W, K, R, S, st, pad, dil, g, bias = c
    return f"N{N}C{C}H{H}W{W}K{K}R{R}S{S}s{st}p{pad}d{dil}g{g}{'b' if bias else ''}".replace(" ", "")


def assert_close(actual, expected, tol, what):
    actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.isfinite().all(), f"{what}: non-finite values (an element was not written?)"
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3e} > {tol:.0e} x {scale:.3g}"


def make(case, dtype, seed=0, device="cuda"):
    N, C, H, W, K, R, S, stride, padding, dilation, groups, bias = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen)
    w = torch.randn(K, C // groups, R, S, generator=gen) / (C // groups * R * S) ** 0.5
    b = torch.randn(K, generator=gen) if bias else None
    # Rounded to the dtype first, so the float64 reference sees the same inputs.
    to = lambda t: None if t is None else t.to(dtype).to(device)  # noqa: E731
    return to(x), to(w), to(b), dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def double(t):
    return None if t is None else t.detach().cpu().double().requires_grad_()


# ---- the float64 references, on the CPU whatever the inputs' device --------------------------

def forward_reference(x, w, b, geo, relu):
    expected = F.conv2d(double(x), double(w), double(b), **geo)
    return expected.relu() if relu else expected


def output_gradient(x, w, geo, seed):
    """A gradient for the conv's output, in x's dtype and on x's device."""
    shape = F.conv2d(x.double().cpu(), w.double().cpu(), **geo).shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(x.dtype).to(x.device)


def backward_reference(dy, x, w, b, geo):
    """(dx, dw, db) of conv2d in float64; db None without a bias."""
    xd, wd, bd = double(x), double(w), double(b)
    F.conv2d(xd, wd, bd, **geo).backward(double(dy))
    return xd.grad, wd.grad, None if bd is None else bd.grad


def torch_block(x, w, b, geo):
    return F.max_pool2d(F.relu(F.conv2d(x, w, b, **geo)), 2, return_indices=True)


def local_argmax(indices, width):
    """torch's flat indices in the conv output plane -> position in the 2x2 window (2 * dp + dq)."""
    return (indices // width % 2) * 2 + indices % width % 2


def fused_reference(x, w, b, geo):
    """torch's conv + bias + ReLU + 2x2 max pool in float64: (pooled, window position 2 dp + dq)."""
    xd, wd, bd = double(x), double(w), double(b)
    ref, indices = torch_block(xd, wd, bd, geo)
    conv_width = F.conv2d(xd, wd, None, **geo).shape[3]
    return ref, local_argmax(indices, conv_width)


def fused_backward_reference(dy, y, argmax, x, w, b, geo):
    """(dx, dw, db) in float64 given the forward's own decisions: the pooled gradient goes to the
    conv output at argmax where y > 0, so a tie broken differently under rounding is no failure."""
    xd, wd, bd = double(x), double(w), double(b)
    conv = F.conv2d(xd, wd, bd, **geo)
    N, K, Po, Qo = y.shape
    a = argmax.cpu().long()
    full = torch.zeros_like(conv)
    rows = (2 * torch.arange(Po).view(1, 1, Po, 1) + a // 2).expand(N, K, Po, Qo)
    cols = (2 * torch.arange(Qo).view(1, 1, 1, Qo) + a % 2).expand(N, K, Po, Qo)
    grad = torch.where(y.cpu().double() > 0, dy.cpu().double(), torch.zeros((), dtype=torch.float64))
    batch = torch.arange(N).view(N, 1, 1, 1).expand_as(rows)
    full[batch, torch.arange(K).view(1, K, 1, 1).expand_as(rows), rows, cols] = grad
    conv.backward(full)
    return xd.grad, wd.grad, None if bd is None else bd.grad


# ---- checks that run everywhere ----------------------------------------------------------------

def test_gather_index_math_on_host(tmp_path):
    """The implicit GEMMs' index arithmetic, run naively on the host against a direct convolution."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    exe = tmp_path / "conv_problems_check"
    subprocess.run([compiler, "-std=c++17", "-O1", "-I", os.path.join(REPO, "csrc"),
                    os.path.join(REPO, "tests", "cuda_host", "conv_problems_check.cpp"), "-o", str(exe)], check=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_tensors_raise_cleanly():
    """Without a GPU (or with CPU tensors) the calls raise, never crash."""
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="CUDA tensors"):
        conv_ops.cuda_forward(x, w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="CUDA tensors"):
        conv_ops.cuda_backward(torch.randn(1, 3, 3, 3), x, w, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="CUDA tensors"):
        conv_ops.cuda_conv_relu_pool_forward(x, w, None, 1, 0, 1, 1)
    from torch.utils.dlpack import to_dlpack
    y = torch.empty(1, 3, 3, 3)
    expected = "CUDA tensor" if fastrnn.build_info()["cuda_compiled"] else "has no CUDA kernels"
    with pytest.raises(RuntimeError, match=expected):
        _C.conv2d_cuda_forward(to_dlpack(x), to_dlpack(w), None, to_dlpack(y), stride=(1, 1), padding=(0, 0),
                               dilation=(1, 1), groups=1, relu=False, allow_tf32=False, stream=0)
    with pytest.raises(RuntimeError, match=expected):
        _C.conv_relu_pool2d_cuda_backward(to_dlpack(y), to_dlpack(y), None, to_dlpack(x), to_dlpack(w), None, None,
                                          None, None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                                          allow_tf32=False, stream=0)


# ---- GPU -------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_forward_matches_float64_and_cudnn(case, mode, relu):
    dtype = dtype_of(mode)
    x, w, b, geo = make(case, dtype)
    y = conv_ops.cuda_forward(x, w, b, relu=relu, **geo)
    expected = forward_reference(x, w, b, geo, relu)
    assert y.dtype == dtype and y.device == x.device
    assert_close(y, expected, TOLERANCE[mode], "forward vs float64")
    if dtype in (torch.float32, torch.float64):
        cudnn = F.conv2d(x, w, b, **geo)
        assert_close(y, cudnn.relu() if relu else cudnn, TOLERANCE[mode], "forward vs torch on the GPU")


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_matches_float64(case, mode):
    dtype = dtype_of(mode)
    x, w, b, geo = make(case, dtype)
    dy = output_gradient(x, w, geo, seed=3)
    ref_dx, ref_dw, ref_db = backward_reference(dy, x, w, b, geo)
    dx, dw, db = conv_ops.cuda_backward(dy, x, w, needs=(True, True, True), has_bias=b is not None, **geo)
    tol = TOLERANCE[mode]
    assert_close(dx, ref_dx, tol, "grad input")
    assert_close(dw, ref_dw, tol, "grad weight")
    if b is None:
        assert db is None
    else:
        assert_close(db, ref_db, tol, "grad bias")


@pytest.mark.cuda
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True), (False, True, True)])
def test_backward_computes_only_the_gradients_asked_for(needs):
    x, w, b, geo = make(CASES[2], torch.float64)
    dy = torch.randn(conv_ops.cuda_forward(x, w, b, **geo).shape, dtype=torch.float64, device="cuda")
    full = conv_ops.cuda_backward(dy, x, w, needs=(True, True, True), **geo)
    some = conv_ops.cuda_backward(dy, x, w, needs=needs, **geo)
    for need, a, ref in zip(needs, some, full):
        if need:
            assert_close(a, ref, 1e-12, "masked gradient")
        else:
            assert a is None


@pytest.mark.cuda
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5]], ids=case_id)
def test_cuda_conv_passes_gradcheck(case):
    x, w, b, geo = make(case, torch.float64)
    x, w = x[:1, :, :7, :6].contiguous(), w.contiguous()

    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return conv_ops.cuda_forward(x, w, b, **geo)

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensors
            return conv_ops.cuda_backward(dy, x, w, needs=ctx.needs_input_grad, has_bias=b is not None, **geo)

    args = (x.requires_grad_(), w.requires_grad_(), None if b is None else b.requires_grad_())
    assert torch.autograd.gradcheck(Conv.apply, args)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv_relu_pool(case, mode):
    dtype = dtype_of(mode)
    x, w, b, geo = make(case, dtype)
    y, argmax = conv_ops.cuda_conv_relu_pool_forward(x, w, b, **geo)
    ref, ref_argmax = fused_reference(x, w, b, geo)
    tol = TOLERANCE[mode]
    assert argmax.dtype == torch.uint8
    assert_close(y, ref, tol, "pooled output")
    if tol <= 2e-5:  # no near-ties decided differently by rounding
        assert torch.equal(argmax.cpu().long(), ref_argmax), "argmax"

    # Backward, given our own forward's decisions.
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(5)).to(dtype).cuda()
    dx, dw, db = conv_ops.cuda_conv_relu_pool_backward(dy, y, argmax, x, w, needs=(True, True, True),
                                                    has_bias=b is not None, **geo)
    ref_dx, ref_dw, ref_db = fused_backward_reference(dy, y, argmax, x, w, b, geo)
    assert_close(dx, ref_dx, tol, "fused grad input")
    assert_close(dw, ref_dw, tol, "fused grad weight")
    if b is not None:
        assert_close(db, ref_db, tol, "fused grad bias")

    if dtype == torch.float64:  # and against torch's three ops end to end
        x2, w2, b2 = double(x), double(w), double(b)
        torch_block(x2, w2, b2, geo)[0].backward(dy.cpu().double())
        assert_close(dx, x2.grad, tol, "fused grad input vs torch")
        assert_close(dw, w2.grad, tol, "fused grad weight vs torch")


@pytest.mark.cuda
def test_runs_on_the_current_stream_without_syncing():
    x, w, b, geo = make(CASES[6], torch.float16)
    stream = torch.cuda.Stream()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.cuda.stream(stream):
            y = conv_ops.cuda_forward(x, w, b, **geo)
            dx, dw, db = conv_ops.cuda_backward(torch.ones_like(y), x, w, **geo)
            z, argmax = conv_ops.cuda_conv_relu_pool_forward(x, w, b, **geo)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    stream.synchronize()
    assert_close(y, F.conv2d(double(x), double(w), double(b), **geo), TOLERANCE["float16"], "forward on a stream")


@pytest.mark.cuda
def test_bad_inputs_raise():
    x, w, b, geo = make(CASES[0], torch.float32)
    with pytest.raises(RuntimeError, match="float16, bfloat16, float32 or float64"):
        conv_ops.cuda_forward(x.int(), w.int(), None, **geo)
    with pytest.raises(RuntimeError, match="weight must have shape"):
        conv_ops.cuda_forward(x, w[:, :2].contiguous(), None, **geo)
    with pytest.raises(RuntimeError, match="must be float32"):
        conv_ops.cuda_forward(x, w, b.double(), **geo)


@pytest.mark.cuda
@pytest.mark.parametrize("padding", [1, "same", "valid"])
def test_modules_and_functional_route_cuda_tensors(padding, monkeypatch):
    """fastrnn.nn.Conv2d / ConvReLUPool2d and fastrnn.functional.conv2d on CUDA tensors give
    torch's results and gradients (through the custom ops, so opcheck covers them too)."""
    torch.manual_seed(0)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # restored after the test
    ref = torch.nn.Conv2d(5, 7, 3, padding=padding).cuda().double()
    ours = fastrnn.nn.Conv2d(5, 7, 3, padding=padding).cuda().double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 13, 11, device="cuda", dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-10)
    block = fastrnn.nn.ConvReLUPool2d(5, 7, 3, padding=1).cuda().double()
    expected = F.max_pool2d(F.relu(F.conv2d(x_ref, block.weight, block.bias, padding=1)), 2)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)
    s, p, d, out = fastrnn.functional._resolve(x, ours.weight, ours.bias, 1, 1, 1, 1)
    torch.library.opcheck(torch.ops.fastrnn.conv2d.default, (x.detach(), ours.weight.detach(), ours.bias.detach(),
                                                               s, p, d, 1, out))


@pytest.mark.cuda
def test_conv_relu_pool_backward_passes_nan_as_torch():
    """torch's ReLU backward zeroes the gradient only where its output is <= 0, so a NaN passes;
    the CUDA backward once gated on y > 0 (the CPU one was fixed first). NaN positions exact."""
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=generator)
    x[0, 1, 4, 4] = float("nan")
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64, generator=generator)
    dy = torch.randn(2, 5, 4, 4, dtype=torch.float64, generator=generator)
    grads = []
    for device in ("cpu", "cuda"):
        xs, ws = x.to(device).requires_grad_(True), w.to(device).requires_grad_(True)
        if device == "cpu":  # torch's three ops
            out = F.max_pool2d(F.relu(F.conv2d(xs, ws, None, padding=1)), 2, 2)
        else:
            out = fastrnn.functional.conv_relu_pool2d(xs, ws, None, padding=1)
        out.backward(dy.to(device))
        grads.append((xs.grad.cpu(), ws.grad.cpu()))
    for ours, theirs, what in zip(grads[1], grads[0], ("input", "weight")):
        assert torch.equal(ours.isnan(), theirs.isnan()), f"{what} gradient: NaN positions differ"
