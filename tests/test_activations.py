"""The cells' own sigmoid and tanh (csrc/cells/activations.h) against torch's, value by value.

The kernels do not call libm: they evaluate exp with their own range reduction and clamp, so
the values around the clamp bounds (float32: -104 and 89, float64: -746 and 710), the points
where the result underflows or overflows, NaN and the infinities are checked here directly.
Each value sits in its own hidden unit, so a layer of 40+ units runs them through the
vectorised loop over units as well as its remainder, on every instruction set the CPU has.

Read-outs: an Elman (tanh) layer with I = 1, x = 1 and W_ih = the values gives h = tanh(v); an
LSTM whose f gate is closed (weights 0, bias -inf), whose g and o gates are saturated open
(bias +inf... written as 1e4) and whose i gate gets the values gives c = sigmoid(v) * 1.
"""
import pytest
import torch

import fastrnn

EDGES32 = [-1e30, -746.0, -200.0, -104.5, -104.0, -103.97, -103.0, -88.8, -88.7, -87.3, -20.0, -9.0, -1.0, -1e-3,
           -1e-8, -1e-30, 0.0, -0.0, 1e-30, 1e-8, 1e-3, 0.5, 1.0, 9.0, 20.0, 44.4, 87.3, 88.7, 88.8, 89.0, 89.5,
           104.0, 200.0, 710.0, 1e30, float("inf"), float("-inf"), float("nan")]
EDGES64 = EDGES32 + [-745.2, -745.1, -708.4, -708.3, 709.7, 709.8, 710.5, 746.0, 746.5, 1e300, -1e300]


def edges(dtype):
    values = EDGES64 if dtype == torch.float64 else EDGES32
    return torch.tensor(values, dtype=dtype)


def tanh_layer(values):
    H = values.numel()
    layer = fastrnn.nn.RNN(1, H, nonlinearity="tanh", dtype=values.dtype)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(values[:, None])
        layer.weight_hh_l0.zero_()
        layer.bias_ih_l0.zero_()
        layer.bias_hh_l0.zero_()
    return layer


def sigmoid_layer(values):
    H = values.numel()
    layer = fastrnn.nn.LSTM(1, H, dtype=values.dtype)
    with torch.no_grad():
        layer.weight_ih_l0.zero_()
        layer.weight_ih_l0[:H, 0] = values  # i gate: a_i = v (x = 1)
        layer.weight_hh_l0.zero_()
        layer.bias_hh_l0.zero_()
        layer.bias_ih_l0.zero_()
        layer.bias_ih_l0[H:2 * H] = -1e4  # f = 0 (c_prev is 0 anyway)
        layer.bias_ih_l0[2 * H:] = 1e4    # g = 1, o = 1
    return layer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_matches_torch_at_the_edges(isa, dtype):
    values = edges(dtype)
    x = torch.ones(1, 3, 1, dtype=dtype)
    with torch.no_grad():
        y, _ = tanh_layer(values)(x)
    expected = torch.tanh(values).expand(3, -1)
    torch.testing.assert_close(y[0], expected, rtol=4 * torch.finfo(dtype).eps, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_matches_torch_at_the_edges(isa, dtype):
    values = edges(dtype)
    x = torch.ones(1, 3, 1, dtype=dtype)
    with torch.no_grad():
        _, (_, c_n) = sigmoid_layer(values)(x)
    expected = torch.sigmoid(values).expand(3, -1)
    # Relative accuracy: sigmoid of large negative inputs is tiny but must not lose digits, and
    # is exactly 0 only where torch's is.
    torch.testing.assert_close(c_n[0], expected, rtol=4 * torch.finfo(dtype).eps, atol=0, equal_nan=True)
    assert torch.equal(c_n[0] == 0, expected == 0)
