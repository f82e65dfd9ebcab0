"""fastrnn.functional against torch.nn.RNN / LSTM / GRU: outputs, final states, every gradient."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastrnn.functional as F
from conftest import DTYPES, assert_close
from reference import CELLS, torch_layer, torch_reference

# (T, B, I, H): odd sizes, single steps, single units, a batch of one, and hidden sizes whose
# gate rows span several of the GEMM's depth slices with a partial last panel (G*H > 256 for
# AVX2's slices, > 512 for AVX-512's, every cell), and a batch of two full 12-row blocks of
# AVX-512's micro-kernel and a partial one.
# Batches up to 4 read the weights in place (rowdot) on AVX2/AVX-512: (17, 3, 33, 24) takes
# its row pairs and single rows, 8-unit groups and a depth left over from the vectors.
SIZES = [(1, 1, 1, 1), (7, 3, 13, 7), (13, 9, 37, 13), (40, 5, 7, 64), (23, 1, 64, 37), (9, 11, 19, 97),
         (17, 3, 33, 24), (3, 6, 5, 521), (4, 29, 6, 23),
         (70, 2, 21, 45),  # batch <= 4 over >= 64 rows: W_ih packed, W_hh read in place (CPU)
         (2, 11, 13, 40)]  # two steps at batch 11: both weights read in place (CPU)


def fastrnn_layer(cell, x, h0, c0, params, reverse):
    """fastrnn.functional with the parameters of a torch layer; returns (y, h_n, c_n)."""
    if cell == "lstm":
        return F.lstm(x, h0, c0, *params, reverse=reverse)
    if cell == "gru":
        return F.gru(x, h0, *params, reverse=reverse) + (None,)
    return F.rnn(x, h0, *params, nonlinearity=cell.split("_")[1], reverse=reverse) + (None,)


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def check_against_torch(cell, dtype, T, B, I, H, reverse, bias, with_h0, seed=0):
    layer = torch_layer(cell, I, H, bias, dtype, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    x = randn(T, B, I)
    h0 = randn(B, H) if with_h0 else None
    c0 = randn(B, H) if with_h0 and cell == "lstm" else None

    # Reference: torch.nn, gradients through its own autograd.
    x_ref, h0_ref, c0_ref = leaf(x), leaf(h0), leaf(c0)
    outs_ref = torch_reference(cell, layer, x_ref, h0_ref, c0_ref, reverse)
    # fastrnn on copies of the same leaves and parameters.
    params = [leaf(p) for p in layer.parameters()]
    x_f, h0_f, c0_f = leaf(x), leaf(h0), leaf(c0)
    outs = fastrnn_layer(cell, x_f, h0_f, c0_f, params, reverse)

    for name, ours, ref in zip(("y", "h_n", "c_n"), outs, outs_ref):
        if ref is not None:
            assert_close(ours, ref, dtype, name)

    # Random output gradients, so every path (y, h_n, c_n) carries a signal.
    grads_out = [randn(*o.shape) if o is not None else None for o in outs_ref]
    loss_ref = sum((o * g).sum() for o, g in zip(outs_ref, grads_out) if o is not None)
    loss = sum((o * g).sum() for o, g in zip(outs, grads_out) if o is not None)
    loss_ref.backward()
    loss.backward()
    pairs = [("x", x_f, x_ref), ("h0", h0_f, h0_ref), ("c0", c0_f, c0_ref)]
    pairs += [(name, ours, ref) for (name, ref), ours in zip(layer.named_parameters(), params)]
    for name, ours, ref in pairs:
        if ref is not None:
            assert_close(ours.grad, ref.grad, dtype, f"grad {name}")


@pytest.mark.parametrize("with_h0", [True, False], ids=["h0", "no_h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("T,B,I,H", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_layers_match_torch_outputs_and_gradients(cell, dtype, T, B, I, H, reverse, bias, with_h0):
    check_against_torch(cell, dtype, T, B, I, H, reverse, bias, with_h0)


@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_on_every_instruction_set(isa, cell):
    for dtype in DTYPES:
        check_against_torch(cell, dtype, 11, 5, 19, 37, reverse=True, bias=True, with_h0=True)
        check_against_torch(cell, dtype, 9, 2, 21, 29, reverse=False, bias=True, with_h0=True)  # weights in place


@settings(max_examples=30, deadline=None)
@given(cell=st.sampled_from(CELLS), dtype=st.sampled_from(DTYPES), T=st.integers(1, 40), B=st.integers(1, 9),
       I=st.sampled_from([1, 7, 13, 37, 64]), H=st.sampled_from([1, 7, 13, 37, 64]), reverse=st.booleans(),
       bias=st.booleans(), with_h0=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_torch_on_random_sizes(cell, dtype, T, B, I, H, reverse, bias, with_h0, seed):
    check_against_torch(cell, dtype, T, B, I, H, reverse, bias, with_h0, seed)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_bias_only(cell):
    # Either bias may be absent on its own; the other still gets its gradient.
    layer = torch_layer(cell, 5, 6, True, torch.float64)
    w_ih, w_hh, b_ih, _ = [leaf(p) for p in layer.parameters()]
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    ref = torch_layer(cell, 5, 6, True, torch.float64)
    with torch.no_grad():
        ref.bias_hh_l0.zero_()
    outs_ref = torch_reference(cell, ref, x, None, None, False)
    outs = fastrnn_layer(cell, x, None, None, [w_ih, w_hh, b_ih, None], False)
    assert_close(outs[0], outs_ref[0], torch.float64, "y")
    outs[0].sum().backward()
    outs_ref[0].sum().backward()
    assert_close(b_ih.grad, ref.bias_ih_l0.grad, torch.float64, "grad bias_ih")


@pytest.mark.parametrize("cell", CELLS)
def test_non_contiguous_inputs_are_accepted(cell):
    layer = torch_layer(cell, 6, 5, True, torch.float64)
    x = torch.randn(3, 6, 4, dtype=torch.float64).permute(2, 0, 1)  # (4, 3, 6), not contiguous
    h0 = torch.randn(5, 3, dtype=torch.float64).t()                 # (3, 5), not contiguous
    c0 = torch.randn(5, 3, dtype=torch.float64).t() if cell == "lstm" else None
    params = [p.detach().t().contiguous().t() if p.dim() == 2 else p.detach() for p in layer.parameters()]
    assert not x.is_contiguous() and not h0.is_contiguous()
    outs = fastrnn_layer(cell, x, h0, c0, params, False)
    outs_ref = torch_reference(cell, layer, x, h0, c0, False)
    for name, ours, ref in zip(("y", "h_n", "c_n"), outs, outs_ref):
        if ref is not None:
            assert_close(ours, ref, torch.float64, name)


@pytest.mark.parametrize("cell", CELLS)
def test_nan_and_inf_propagate_as_in_torch(cell):
    layer = torch_layer(cell, 4, 3, True, torch.float64)
    x = torch.randn(6, 4, 4, dtype=torch.float64)
    x[2, 1, 0] = float("nan")
    x[1, 3, 2] = float("inf")
    x[4, 0, 1] = float("-inf")
    x_ref, x_f = leaf(x), leaf(x)
    params = [leaf(p) for p in layer.parameters()]
    outs = fastrnn_layer(cell, x_f, None, None, params, False)
    outs_ref = torch_reference(cell, layer, x_ref, None, None, False)
    for name, ours, ref in zip(("y", "h_n", "c_n"), outs, outs_ref):
        if ref is not None:
            assert_close(ours, ref, torch.float64, name)
    outs[0].sum().backward()
    outs_ref[0].sum().backward()
    assert_close(x_f.grad, x_ref.grad, torch.float64, "grad x")
    for (name, ref), ours in zip(layer.named_parameters(), params):
        assert_close(ours.grad, ref.grad, torch.float64, f"grad {name}")


@pytest.mark.parametrize("cell", CELLS)
def test_inference_saves_nothing_and_gives_the_training_result(cell, monkeypatch):
    from fastrnn.ops import rnn as ops
    from fastrnn._checks import CELLS as CODES

    layer = torch_layer(cell, 5, 7, True, torch.float64)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    h0 = torch.randn(3, 7, dtype=torch.float64)
    c0 = torch.randn(3, 7, dtype=torch.float64) if cell == "lstm" else None
    args = (x, h0, c0, *[p.detach() for p in layer.parameters()], None, None, CODES[cell], False)
    y_inf, h_inf, c_inf, reserve_inf = ops.rnn_forward(*args, False)
    y_tr, h_tr, c_tr, reserve_tr = ops.rnn_forward(*args, True)
    assert reserve_inf.numel() == 0
    assert reserve_tr.numel() == (0 if cell.startswith("rnn") else 4 * 3 * 7 * {"lstm": 5, "gru": 4}[cell])
    assert torch.equal(y_inf, y_tr) and torch.equal(h_inf, h_tr) and torch.equal(c_inf, c_tr)
    # fastrnn.functional asks for a reserve only when a gradient will be needed (through the
    # op's body in an autograd.Function in eager mode, the custom op when traced; without
    # autograd it calls rnn_inference, the body without training). Argument 11 is `training`.
    modes = []
    for entry in ("rnn_forward", "rnn_forward_impl"):
        real = getattr(ops, entry)
        monkeypatch.setattr(ops, entry, lambda *a, real=real: modes.append(a[11]) or real(*a))
    monkeypatch.setattr(ops, "rnn_inference", lambda *a, real=ops.rnn_inference: modes.append(False) or real(*a))
    params = list(layer.parameters())
    with torch.no_grad():
        fastrnn_layer(cell, x, h0, c0, params, False)
    fastrnn_layer(cell, x, h0, c0, [p.detach() for p in params], False)
    fastrnn_layer(cell, x, h0, c0, params, False)
    assert modes == [False, False, True]


def test_backward_through_an_inference_forward_is_refused():
    from fastrnn import ops

    layer = torch_layer("gru", 3, 4, True, torch.float64)
    x = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    y, *_ = ops.rnn_forward(x, torch.zeros(2, 4, dtype=torch.float64), None, *layer.parameters(), None, None, 3, False,
                            False)
    with pytest.raises(RuntimeError, match="training=False"):
        y.sum().backward()


NON_TENSORS = [(name, bad) for name in ("x", "weight_ih", "weight_hh", "h0", "bias_ih", "bias_hh")
               for bad in ([1.0, 2.0], 3.0) + ((None,) if name in ("x", "weight_ih", "weight_hh") else ())]


@pytest.mark.parametrize("name,bad", NON_TENSORS)
def test_non_tensor_arguments_raise_type_error_naming_them(name, bad):
    # None is refused only where an argument is required (an absent state or bias is valid).
    args = dict(x=torch.randn(3, 2, 5), h0=None, weight_ih=torch.randn(18, 5), weight_hh=torch.randn(18, 6),
                bias_ih=None, bias_hh=None)
    args[name] = bad
    wanted = "Tensor" if name in ("x", "weight_ih", "weight_hh") else "Tensor or None"
    with pytest.raises(TypeError, match=re.escape(f"gru: expected {name} to be a {wanted}, got {type(bad).__name__}")):
        F.gru(**args)


def test_unhashable_nonlinearity_raises_torchs_value_error():
    with pytest.raises(ValueError) as theirs:
        torch.nn.RNN(5, 6, nonlinearity=["tanh"])
    with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
        F.rnn(torch.randn(3, 2, 5), None, torch.randn(6, 5), torch.randn(6, 6), nonlinearity=["tanh"])
