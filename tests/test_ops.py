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
