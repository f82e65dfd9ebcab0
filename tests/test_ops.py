"""The custom ops as torch sees them: gradcheck, opcheck, torch.compile."""

import pytest
import torch

import fastrnn.functional as F
from fastrnn import ops
from fastrnn._checks import CELLS as CELL_CODES
from conftest import CELLS, torch_layer


def layer_args(cell, T=4, B=3, I=5, H=4, bias=True, requires_grad=True, seed=0):
    layer = torch_layer(cell, I, H, bias, torch.float64, seed)
    gen = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_(requires_grad)  # noqa
    x, h0 = make(T, B, I), make(B, H)
    c0 = make(B, H) if cell == "lstm" else None
    params = [p.detach().clone().requires_grad_(requires_grad) for p in layer.parameters()]
    return x, h0, c0, params


def call(cell, reverse):
    def fn(x, h0, c0, *params):
        if cell == "lstm":
            return F.lstm(x, h0, c0, *params, reverse=reverse)
        if cell == "gru":
            return F.gru(x, h0, *params, reverse=reverse)
        return F.rnn(x, h0, *params, nonlinearity=cell.split("_")[1], reverse=reverse)
    return fn


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, reverse, bias):
    x, h0, c0, params = layer_args(cell, bias=bias)
    inputs = (x, h0, c0, *params)
    if cell == "rnn_relu":
        # relu's kink: keep pre-activations away from 0 so finite differences are meaningful.
        params[0].data.mul_(3)
    assert torch.autograd.gradcheck(call(cell, reverse), inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_forward(cell, training):
    x, h0, c0, params = layer_args(cell, requires_grad=training)
    if len(params) == 2:
        params += [None, None]
    args = (x, h0, c0, *params, None, None, CELL_CODES[cell], True, training)
    torch.library.opcheck(torch.ops.fastrnn.rnn_forward.default, args)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_backward(cell, bias):
    x, h0, c0, params = layer_args(cell, bias=bias, requires_grad=False)
    w_ih, w_hh = params[:2]
    b_ih, b_hh = (params[2], params[3]) if bias else (None, None)
    y, h_n, c_n, reserve = ops.rnn_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, CELL_CODES[cell], False,
                                           True)
    dy, dh_n = torch.randn_like(y), torch.randn_like(h_n)
    dc_n = torch.randn_like(c_n) if cell == "lstm" else None
    args = (x, h0, c0, w_ih, w_hh, None, None, y, reserve, dy, dh_n, dc_n, CELL_CODES[cell], False, bias, bias)
    torch.library.opcheck(torch.ops.fastrnn.rnn_backward.default, args)


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    # Plain parameters: dynamo declines to trace through torch.nn.LSTM objects themselves.
    lstm_params = [torch.nn.Parameter(p.detach()) for p in torch_layer("lstm", 6, 8, True, torch.float32).parameters()]
    gru_params = [torch.nn.Parameter(p.detach()) for p in torch_layer("gru", 8, 8, True, torch.float32, 1).parameters()]

    def model(x):
        y, h_n, _ = F.lstm(x, None, None, *lstm_params)
        z, g_n = F.gru(torch.relu(y), h_n, *gru_params, reverse=True)
        return z.square().mean() + g_n.sum()

    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(7, 3, 6, requires_grad=True)
    expected = model(x)
    (grad_expected,) = torch.autograd.grad(expected, x)
    actual = compiled(x)
    (grad_actual,) = torch.autograd.grad(actual, x)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(grad_actual, grad_expected)


def bidirectional_args(cell, bias=True, requires_grad=True, seed=0, proj=False):
    """x and both directions' (h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)."""
    H = 4
    kwargs = dict(bidirectional=True, bias=bias)
    if proj:
        kwargs["proj_size"] = 3
    torch.manual_seed(seed)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)(
        5, H, **kwargs, **({"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {})).double()
    gen = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_(requires_grad)  # noqa
    x = make(4, 3, 5)
    P = 3 if proj else H
    directions = []
    for suffix in ("_l0", "_l0_reverse"):
        p = {name: getattr(layer, name + suffix).detach().clone().requires_grad_(requires_grad)
             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
             if hasattr(layer, name + suffix)}
        directions.append((make(3, P), make(3, H) if cell == "lstm" else None, p["weight_ih"], p["weight_hh"],
                           p.get("bias_ih"), p.get("bias_hh"), p.get("weight_hr")))
    return x, directions


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_bidirectional(cell):
    x, (fwd, rev) = bidirectional_args(cell, proj=cell == "lstm")
    inputs = (x, *fwd, *rev)
    if cell == "rnn_relu":
        inputs[3].data.mul_(3)

    def fn(x, *tensors):
        y, h, _, _, h_r, _, _ = torch.ops.fastrnn.rnn_bidirectional_forward(x, *tensors, None, CELL_CODES[cell], True)
        return y, h, h_r

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_bidirectional(cell, training):
    x, (fwd, rev) = bidirectional_args(cell, requires_grad=training)
    torch.library.opcheck(torch.ops.fastrnn.rnn_bidirectional_forward.default,
                          (x, *fwd, *rev, None, CELL_CODES[cell], training))
    if not training:
        return
    y, h, c, r, h_r, c_r, r_r = ops.rnn_bidirectional_forward_impl(*[t.detach() if t is not None else None for t in
                                                                     (x, *fwd, *rev)], None, CELL_CODES[cell], True)
    lstm = cell == "lstm"
    args = (x.detach(), fwd[0], fwd[1], fwd[2], fwd[3], fwd[6], r, torch.randn_like(h), torch.randn_like(c) if lstm
            else None, rev[0], rev[1], rev[2], rev[3], rev[6], r_r, torch.randn_like(h_r),
            torch.randn_like(c_r) if lstm else None, None, y, torch.randn_like(y), CELL_CODES[cell], True, True)
    torch.library.opcheck(torch.ops.fastrnn.rnn_bidirectional_backward.default,
                          tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args))


def test_bidirectional_layers_on_one_thread_match_torch():
    # With one thread the two directions run one after the other instead of side by side.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import torch, fastrnn.nn as fnn
        torch.manual_seed(0)
        ref = torch.nn.GRU(5, 6, num_layers=2, bidirectional=True).double()
        ours = fnn.GRU(5, 6, num_layers=2, bidirectional=True).double()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(7, 3, 5, dtype=torch.float64, requires_grad=True)
        y, h = ours(x)
        y.sum().backward()
        g = x.grad.clone(); x.grad = None
        y_ref, h_ref = ref(x)
        y_ref.sum().backward()
        assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(h, h_ref, atol=1e-12)
        assert torch.allclose(g, x.grad, atol=1e-12)
        print("ok")
    """)
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


_REAL_EMPTY = ops._runtime.empty  # taken at import: every test runs with conftest's NaN-filling stand-in


def test_buffer_allocation_itself():
    """ops._runtime.empty as the kernels get it outside the tests: like's device, its dtype unless
    given, int or tuple shapes, never requiring grad, and large buffers (huge-page advice)
    as usable as small ones."""
    like = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    small = _REAL_EMPTY(5, like)
    assert small.shape == (5,) and small.dtype == torch.float64 and not small.requires_grad
    assert small.device == like.device
    assert _REAL_EMPTY((2, 3), like, torch.uint8).dtype == torch.uint8
    large = _REAL_EMPTY(torch.Size([1100, 1000]), like)  # 8.8 MB: above the huge-page size
    assert large.shape == (1100, 1000) and large.is_contiguous()
    large.fill_(2.0)
    assert float(large.sum()) == 2.0 * 1100 * 1000


def _reserve_models(cell="LSTM", **kw):
    import fastrnn.nn as fnn
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(8, 64, **kw).double()
    ours = getattr(fnn, cell)(8, 64, **kw).double()
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _input_grad(model, x, retain_graph=False):
    x = x.detach().requires_grad_()
    y, _ = model(x)
    (y * y).sum().backward(retain_graph=retain_graph)
    return x.grad


def test_training_steps_reuse_their_reserves():
    # T50 B40 H64 float64: a 5 MB LSTM reserve, above the size that is kept.
    ours, ref = _reserve_models()
    x = torch.randn(50, 40, 8, dtype=torch.float64)
    ops.empty_cache()
    kept = []
    for _ in range(3):
        torch.testing.assert_close(_input_grad(ours, x), _input_grad(ref, x), rtol=0, atol=1e-10)
        kept.append([t.data_ptr() for t in ops._runtime._reserves.buffers])
    assert len(kept[0]) == 1 and kept[0] == kept[1] == kept[2]
    # Longer sequences than any kept buffer serves: the stale one is let go, not kept beside.
    _input_grad(ours, torch.randn(80, 40, 8, dtype=torch.float64))
    assert len(ops._runtime._reserves.buffers) == 1 and ops._runtime._reserves.buffers[0].numel() == 80 * 40 * 5 * 64
    ops.empty_cache()
    assert ops._runtime._reserves.buffers == []


def test_reserves_still_in_use_are_not_handed_out_again():
    ours, ref = _reserve_models(num_layers=2, bidirectional=True)
    x1, x2 = (torch.randn(50, 40, 8, dtype=torch.float64) for _ in range(2))
    ops.empty_cache()
    # Two graphs alive at once: the second forward must not take the first one's reserves.
    a1, a2 = (x.clone().requires_grad_() for x in (x1, x2))
    y1, _ = ours(a1)
    y2, _ = ours(a2)
    assert len({t.data_ptr() for t in ops._runtime._reserves.buffers}) == 8  # 2 layers x 2 directions x 2 graphs
    (y1 * y1).sum().backward()
    (y2 * y2).sum().backward()
    torch.testing.assert_close(a1.grad, _input_grad(ref, x1), rtol=0, atol=1e-10)
    torch.testing.assert_close(a2.grad, _input_grad(ref, x2), rtol=0, atol=1e-10)
    # A graph kept for a second backward (retain_graph) keeps its reserves through other steps.
    a = x1.clone().requires_grad_()
    y, _ = ours(a)
    (y * y).sum().backward(retain_graph=True)
    _input_grad(ours, x2)  # a whole training step in between
    (y * y).sum().backward()
    torch.testing.assert_close(a.grad, 2 * _input_grad(ref, x1), rtol=0, atol=1e-10)
