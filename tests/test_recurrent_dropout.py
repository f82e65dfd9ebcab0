"""Variational dropout: the recurrent mask inside the fused kernels and the modules' input and
recurrent dropout, against the pure-torch reference that loops over time with autograd
(tests/reference.py: recurrent_layer, stacked_reference)."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn.functional as F
import fastrnn.nn as fnn
from fastrnn import ops
from fastrnn._checks import CELLS as CELL_CODES
from conftest import assert_close
from reference import GATES, recurrent_layer, stacked_reference

# lstm_proj: an LSTM with proj_size, whose mask is (B, proj_size).
CASES = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]
T, B, I, H, P = 6, 9, 11, 37, 17  # B * G * H * P above the kernels' one-thread threshold
LENGTHS = [6, 6, 5, 4, 4, 3, 2, 1, 1]  # sorted, longest first, as a PackedSequence holds them


def cell_of(case):
    return "lstm" if case == "lstm_proj" else case


def make_direction(case, dtype, gen, out=P, inputs=I, bias=True, batch=B):
    """(h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) of one direction."""
    cell = cell_of(case)
    p = out if case == "lstm_proj" else H
    G = GATES[cell]
    rand = lambda *s, scale=1.0: (torch.randn(*s, generator=gen, dtype=torch.float64) * scale).to(dtype)  # noqa
    return (rand(batch, p), rand(batch, H) if cell == "lstm" else None, rand(G * H, inputs, scale=0.3),
            rand(G * H, p, scale=0.3), rand(G * H) if bias else None, rand(G * H) if bias else None,
            rand(p, H, scale=0.3) if case == "lstm_proj" else None)


def make_mask(shape, p, gen, dtype):
    keep = torch.rand(*shape, generator=gen, dtype=torch.float64) >= p
    return (keep.to(torch.float64) / (1 - p)).to(dtype)


def leaves(tensors, dtype=None):
    return [None if t is None else t.detach().to(dtype or t.dtype).requires_grad_() for t in tensors]


def grads_of(outputs, cotangents, inputs):
    loss = sum((o * g.to(o.dtype)).sum() for o, g in zip(outputs, cotangents))
    present = [t for t in inputs if t is not None]
    return torch.autograd.grad(loss, present)


def check_all(actual_out, expected_out, actual_in, expected_in, dtype, what):
    """Outputs equal, and the gradients of one random projection of them, for every input."""
    gen = torch.Generator().manual_seed(7)
    cotangents = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in expected_out]
    for k, (a, e) in enumerate(zip(actual_out, expected_out)):
        assert_close(a, e, dtype, f"{what} output {k}")
    for k, (a, e) in enumerate(zip(grads_of(actual_out, cotangents, actual_in),
                                   grads_of(expected_out, cotangents, expected_in))):
        assert_close(a, e, dtype, f"{what} gradient {k}")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES)
def test_op_matches_reference(case, dtype, reverse, packed, isa):
    cell = cell_of(case)
    gen = torch.Generator().manual_seed(CASES.index(case) * 4 + 2 * reverse + packed)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    direction = make_direction(case, torch.float64, gen)
    mask = make_mask(direction[0].shape, 0.3, gen, torch.float64)
    lengths = LENGTHS if packed else None

    ours = leaves((x, *direction), dtype)
    ref = leaves((x, *direction))
    x_in = ours[0]
    batch_sizes = None
    if packed:
        x_in, batch_sizes = pack_padded_sequence(ours[0], torch.tensor(LENGTHS))[:2]
    y, h_n, c_n, _ = ops.rnn_forward(x_in, *ours[1:], batch_sizes, CELL_CODES[cell], reverse, True, mask.to(dtype))
    y_ref, h_ref, c_ref = recurrent_layer(cell, ref[0], lengths, *ref[1:], mask, reverse)
    if packed:
        y_ref = pack_padded_sequence(y_ref, torch.tensor(LENGTHS)).data
    outs, outs_ref = [y, h_n], [y_ref, h_ref]
    if cell == "lstm":
        outs.append(c_n), outs_ref.append(c_ref)
    check_all(outs, outs_ref, ours, ref, dtype, case)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES)
def test_batch_of_several_row_panels_matches_reference(case, dtype, reverse):
    """B = 27: full and partial 12-row panels of mask * h, which the float forward packs for
    its products (H = 37: two threads, one with a partial chunk)."""
    cell = cell_of(case)
    gen = torch.Generator().manual_seed(40 + CASES.index(case) * 2 + reverse)
    x = torch.randn(9, 27, I, generator=gen, dtype=torch.float64)
    direction = make_direction(case, torch.float64, gen, batch=27)
    mask = make_mask(direction[0].shape, 0.3, gen, torch.float64)
    ours, ref = leaves((x, *direction), dtype), leaves((x, *direction))
    y, h_n, c_n, _ = ops.rnn_forward(ours[0], *ours[1:], None, CELL_CODES[cell], reverse, True, mask.to(dtype))
    y_ref, h_ref, c_ref = recurrent_layer(cell, ref[0], None, *ref[1:], mask, reverse)
    outs, outs_ref = [y, h_n], [y_ref, h_ref]
    if cell == "lstm":
        outs.append(c_n), outs_ref.append(c_ref)
    check_all(outs, outs_ref, ours, ref, dtype, case)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_one_step_of_few_rows_matches_reference(case, batch):
    """A one-step call of one or two rows: the backward reads W_hh in place, mask included."""
    cell = cell_of(case)
    gen = torch.Generator().manual_seed(50 + CASES.index(case) * 2 + batch)
    x = torch.randn(1, batch, I, generator=gen, dtype=torch.float64)
    direction = make_direction(case, torch.float64, gen, batch=batch)
    mask = make_mask(direction[0].shape, 0.3, gen, torch.float64)
    ours, ref = leaves((x, *direction)), leaves((x, *direction))
    y, h_n, c_n, _ = ops.rnn_forward(*ours, None, CELL_CODES[cell], False, True, mask)
    y_ref, h_ref, c_ref = recurrent_layer(cell, ref[0], None, *ref[1:], mask, False)
    outs, outs_ref = [y, h_n], [y_ref, h_ref]
    if cell == "lstm":
        outs.append(c_n), outs_ref.append(c_ref)
    check_all(outs, outs_ref, ours, ref, torch.float64, case)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_bidirectional_op_has_a_mask_per_direction(case, packed, isa):
    cell = cell_of(case)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    fwd, rev = make_direction(case, torch.float64, gen), make_direction(case, torch.float64, gen)
    mask, mask_r = (make_mask(fwd[0].shape, 0.4, gen, torch.float64) for _ in range(2))
    lengths = LENGTHS if packed else None
    ours, ref = leaves((x, *fwd, *rev)), leaves((x, *fwd, *rev))
    x_in, batch_sizes = (pack_padded_sequence(ours[0], torch.tensor(LENGTHS))[:2] if packed else (ours[0], None))
    y, h, c, _, h_r, c_r, _ = ops.rnn_bidirectional_forward(x_in, *ours[1:], batch_sizes, CELL_CODES[cell], True, mask,
                                                            mask_r)
    y_f, h_f, c_f = recurrent_layer(cell, ref[0], lengths, *ref[1:8], mask, False)
    y_b, h_b, c_b = recurrent_layer(cell, ref[0], lengths, *ref[8:], mask_r, True)
    y_ref = torch.cat([y_f, y_b], -1)
    if packed:
        y_ref = pack_padded_sequence(y_ref, torch.tensor(LENGTHS)).data
    outs, outs_ref = [y, h, h_r], [y_ref, h_f, h_b]
    if cell == "lstm":
        outs += [c, c_r]
        outs_ref += [c_f, c_b]
    check_all(outs, outs_ref, ours, ref, torch.float64, case)


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_with_a_fixed_mask(case):
    cell = cell_of(case)
    gen = torch.Generator().manual_seed(5)
    steps, batch = 4, 3
    x = torch.randn(steps, batch, 5, generator=gen, dtype=torch.float64)
    p = 3 if case == "lstm_proj" else 4
    G = GATES[cell]
    tensors = [x, torch.randn(batch, p, generator=gen, dtype=torch.float64),
               torch.randn(batch, 4, generator=gen, dtype=torch.float64) if cell == "lstm" else None,
               torch.randn(G * 4, 5, generator=gen, dtype=torch.float64),
               torch.randn(G * 4, p, generator=gen, dtype=torch.float64),
               torch.randn(G * 4, generator=gen, dtype=torch.float64),
               torch.randn(G * 4, generator=gen, dtype=torch.float64),
               torch.randn(p, 4, generator=gen, dtype=torch.float64) * 0.5 if case == "lstm_proj" else None]
    if cell == "rnn_relu":
        tensors[3].mul_(3)  # keep pre-activations away from relu's kink
    inputs = leaves(tensors)
    mask = make_mask((batch, p), 0.5, gen, torch.float64)

    def fn(x, h0, c0, *weights):
        y, h_n, c_n, _ = ops.rnn_forward(x, h0, c0, *weights, None, CELL_CODES[cell], False, True, mask)
        return (y, h_n, c_n) if cell == "lstm" else (y, h_n)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_mask_of_ones_is_exactly_no_mask_and_zeros_remove_the_recurrence(cell):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    direction = make_direction(cell, torch.float64, gen)
    code = CELL_CODES[cell]

    def run(mask, weight_hh=None):
        ins = leaves((x, *direction))
        if weight_hh is not None:
            ins[4] = weight_hh.clone().requires_grad_()
        y, h_n, c_n, _ = ops.rnn_forward(*ins, None, code, False, True, *(() if mask is None else (mask,)))
        grads = grads_of([y, h_n], [torch.ones_like(y), torch.ones_like(h_n)], ins)
        return [y, h_n, *grads]

    for a, b in zip(run(torch.ones(B, H, dtype=torch.float64)), run(None)):
        assert torch.equal(a, b)
    # A zero mask: the recurrent product vanishes, as with W_hh = 0, and W_hh gets no gradient.
    zero_mask, zero_weight = run(torch.zeros(B, H, dtype=torch.float64)), run(None, torch.zeros_like(direction[3]))
    for k, (a, b) in enumerate(zip(zero_mask, zero_weight)):
        if k == (6 if cell == "lstm" else 5):  # dweight_hh: 0 with the mask, not with W_hh = 0
            assert torch.equal(a, torch.zeros_like(a))
        else:
            assert_close(a, b, torch.float64, f"output/gradient {k}")


# ---- The modules ---------------------------------------------------------------------------------

MODULES = {"rnn_tanh": fnn.RNN, "rnn_relu": fnn.RNN, "lstm": fnn.LSTM, "lstm_proj": fnn.LSTM, "gru": fnn.GRU}


def make_module(case, **kwargs):
    extra = {"nonlinearity": case.split("_")[1]} if case.startswith("rnn") else {}
    if case == "lstm_proj":
        extra["proj_size"] = P
    return MODULES[case](I, H, **extra, **kwargs).double()


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_module_matches_reference_with_its_masks(case, bidirectional, packed, isa):
    cell = cell_of(case)
    torch.manual_seed(21)
    module = make_module(case, num_layers=2, bidirectional=bidirectional, input_dropout=0.2, recurrent_dropout=0.35)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    out = P if case == "lstm_proj" else H
    h0 = torch.randn(2 * D, B, out, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2 * D, B, H, dtype=torch.float64, requires_grad=True) if cell == "lstm" else None
    hx = (h0, c0) if cell == "lstm" else h0
    lengths = LENGTHS if packed else None
    inp = pack_padded_sequence(x, torch.tensor(LENGTHS)) if packed else x
    y, h = module(inp, hx)
    masks = module._dropout_masks
    # One input mask per layer (both directions read it), one recurrent mask per direction.
    assert len(masks) == 2 and all(m[0] is not None and len(m[1]) == D for m in masks)
    assert masks[0][0].shape == (B, I) and masks[1][0].shape == (B, D * out)
    assert all(m.shape == (B, out) for _, rec in masks for m in rec)
    y_ref, h_ref, c_ref = stacked_reference(module, cell, x, lengths, hx, masks)
    if packed:
        y, y_ref = y.data, pack_padded_sequence(y_ref, torch.tensor(LENGTHS)).data
    outs, outs_ref = [y, h[0] if cell == "lstm" else h], [y_ref, h_ref]
    if cell == "lstm":
        outs.append(h[1]), outs_ref.append(c_ref)
    inputs = [x, h0, c0, *module.parameters()]
    check_all(outs, outs_ref, inputs, inputs, torch.float64, case)


def test_masks_are_reproducible_with_torch_manual_seed():
    module = make_module("gru", num_layers=2, bidirectional=True, input_dropout=0.1, recurrent_dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(3)
    y1, _ = module(x)
    drawn = module._dropout_masks
    torch.manual_seed(3)
    y2, _ = module(x)
    assert torch.equal(y1, y2)
    # The order of the draws: per layer, the input mask, then one recurrent mask per direction.
    torch.manual_seed(3)
    for layer, (input_mask, rec) in enumerate(drawn):
        width = I if layer == 0 else 2 * H
        assert torch.equal(input_mask, torch.empty(B, width, dtype=torch.float64).bernoulli_(0.9).div_(0.9))
        for m in rec:
            assert torch.equal(m, torch.empty(B, H, dtype=torch.float64).bernoulli_(0.5).div_(0.5))
    torch.manual_seed(4)
    assert not torch.equal(module(x)[0], y1)


def test_dropped_units_are_the_same_at_every_step_and_kept_ones_are_scaled(isa):
    # h_t = tanh(x_t + m * h_{t-1}) (W_ih = W_hh = identity, no bias): a dropped unit's output
    # is tanh(x_t) at every step, a kept one's tanh(x_t + h_{t-1} / (1 - p)).
    p, steps, batch, width = 0.5, 12, 16, 40
    module = fnn.RNN(width, width, bias=False, recurrent_dropout=p).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.eye(width))
        module.weight_hh_l0.copy_(torch.eye(width))
    x = torch.randn(steps, batch, width, dtype=torch.float64)
    y, _ = module(x)
    dropped_at = (y[1:] - torch.tanh(x[1:])).abs() < 1e-12  # (steps - 1, batch, width)
    assert torch.equal(dropped_at, dropped_at[:1].expand_as(dropped_at))  # the same units at every step
    dropped = dropped_at[0]
    assert 0.3 < dropped.double().mean().item() < 0.7
    scaled = torch.tanh(x[1:] + y[:-1] / (1 - p))
    assert torch.allclose(y[1:][~dropped_at], scaled[~dropped_at], rtol=0, atol=1e-12)
    (mask,) = module._dropout_masks[0][1]
    assert torch.equal(dropped, mask == 0)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.75])
def test_mask_values_and_mean(p):
    module = fnn.LSTM(3, 256, input_dropout=p, recurrent_dropout=p)
    module(torch.randn(2, 256, 3))
    input_mask, (mask,) = module._dropout_masks[0]
    for m in (mask, input_mask):
        assert all(v == 0 or v == pytest.approx(1 / (1 - p)) for v in m.unique().tolist())
    # 65536 draws: the mean's standard deviation is sqrt(p / (1 - p)) / 256 <= 0.007.
    assert abs(mask.mean().item() - 1) < 0.03
    assert abs((mask == 0).double().mean().item() - p) < 0.02


@pytest.mark.parametrize("case", CASES)
def test_zero_probability_is_exactly_the_plain_layer_and_one_removes_the_recurrence(case):
    torch.manual_seed(0)
    plain = make_module(case, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    y_plain, _ = plain(x)
    zero = make_module(case, num_layers=2, input_dropout=0.0, recurrent_dropout=0.0)
    zero.load_state_dict(plain.state_dict())
    assert torch.equal(zero(x)[0], y_plain)
    assert zero._dropout_masks == []
    full = make_module(case, num_layers=2, recurrent_dropout=1.0)
    full.load_state_dict(plain.state_dict())
    no_recurrence = make_module(case, num_layers=2)
    no_recurrence.load_state_dict(plain.state_dict())
    with torch.no_grad():
        no_recurrence.weight_hh_l0.zero_()
        no_recurrence.weight_hh_l1.zero_()
    assert_close(full(x)[0], no_recurrence(x)[0], torch.float64, case)


@pytest.mark.parametrize("case", CASES)
def test_eval_mode_ignores_dropout(case):
    torch.manual_seed(0)
    module = make_module(case, num_layers=2, bidirectional=True, input_dropout=0.5, recurrent_dropout=0.5)
    reference_module = getattr(torch.nn, type(module).__name__)(
        I, H, num_layers=2, bidirectional=True, **({"proj_size": P} if case == "lstm_proj" else {}),
        **({"nonlinearity": case.split("_")[1]} if case.startswith("rnn") else {})).double()
    reference_module.load_state_dict(module.state_dict())
    module.eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert_close(module(x)[0], reference_module(x)[0], torch.float64, case)
    assert module._dropout_masks == []


def test_arguments_repr_and_state_dict():
    module = fnn.LSTM(4, 5, 2, True, False, 0.0, True, input_dropout=0.25, recurrent_dropout=0.5)
    assert repr(module) == "LSTM(4, 5, num_layers=2, bidirectional=True, input_dropout=0.25, recurrent_dropout=0.5)"
    assert repr(fnn.GRU(4, 5)) == "GRU(4, 5)"
    assert module.state_dict().keys() == torch.nn.LSTM(4, 5, 2, bidirectional=True).state_dict().keys()
    for bad in (-0.1, 1.5, True, "0.5"):  # None: TypeError, as for dropout (test_errors.py)
        for name in ("input_dropout", "recurrent_dropout"):
            with pytest.raises(ValueError, match=f"^{name} should be a number in range \\[0, 1\\] representing the "
                                                 "probability of an element being zeroed$"):
                fnn.RNN(4, 5, **{name: bad})


def test_functional_mask_and_its_checks():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0, c0, w_ih, w_hh, b_ih, b_hh, _ = make_direction("lstm", torch.float64, gen)
    mask = make_mask((B, H), 0.25, gen, torch.float64)
    y, h_n, c_n = F.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, recurrent_mask=mask)
    y_ref, h_ref, c_ref = recurrent_layer("lstm", x, None, h0, c0, w_ih, w_hh, b_ih, b_hh, None, mask, False)
    for a, e in ((y, y_ref), (h_n, h_ref), (c_n, c_ref)):
        assert_close(a, e, torch.float64, "lstm")
    gru_dir = make_direction("gru", torch.float64, gen)
    y, _ = F.gru(x, gru_dir[0], *gru_dir[2:6], reverse=True, recurrent_mask=mask)
    expected = recurrent_layer("gru", x, None, gru_dir[0], None, *gru_dir[2:], mask, True)[0]
    assert_close(y, expected, torch.float64, "gru")
    rnn_dir = make_direction("rnn_relu", torch.float64, gen)
    y, _ = F.rnn(x, rnn_dir[0], *rnn_dir[2:6], nonlinearity="relu", recurrent_mask=mask)
    assert_close(y, recurrent_layer("rnn_relu", x, None, rnn_dir[0], None, *rnn_dir[2:], mask, False)[0], torch.float64,
                 "rnn_relu")

    with pytest.raises(RuntimeError, match=r"Expected recurrent_mask of size \(9, 37\), got \(9, 36\)"):
        F.lstm(x, h0, c0, w_ih, w_hh, recurrent_mask=mask[:, 1:])
    with pytest.raises(RuntimeError, match="recurrent_mask of dtype"):
        F.lstm(x, h0, c0, w_ih, w_hh, recurrent_mask=mask.float())
    with pytest.raises(RuntimeError, match="must not require grad"):
        F.lstm(x, h0, c0, w_ih, w_hh, recurrent_mask=mask.clone().requires_grad_())
    # The kernels check it too, for calls that bypass fastrnn.functional.
    with pytest.raises(RuntimeError, match="recurrent_mask"):
        ops.rnn_forward_impl(x, h0, c0, w_ih, w_hh, None, None, None, None, CELL_CODES["lstm"], False, False,
                             mask.t().contiguous()[:B])


def test_a_mask_off_the_cpu_is_not_implemented_yet():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=gen)
    h0, c0, w_ih, w_hh, *_ = make_direction("lstm", torch.float32, gen)
    with pytest.raises(NotImplementedError, match="recurrent dropout"):
        ops.rnn_forward_impl(x, h0, c0, w_ih, w_hh, None, None, None, None, CELL_CODES["lstm"], False, False,
                             torch.ones(B, H, device="meta"))


@pytest.mark.cuda
def test_cuda_mask_raises_not_implemented():
    module = fnn.LSTM(I, H, recurrent_dropout=0.5).cuda()
    with pytest.raises(NotImplementedError, match="recurrent dropout"):
        module(torch.randn(T, B, I, device="cuda"))


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_opcheck_with_masks(cell):
    gen = torch.Generator().manual_seed(2)
    steps, batch, inputs, hidden = 4, 3, 5, 4
    G, code, lstm = GATES[cell], CELL_CODES[cell], cell == "lstm"
    rand = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731

    def direction():
        return [rand(batch, hidden), rand(batch, hidden) if lstm else None, rand(G * hidden, inputs),
                rand(G * hidden, hidden), rand(G * hidden), rand(G * hidden), None]

    x, fwd, rev = rand(steps, batch, inputs), direction(), direction()
    mask, mask_r = make_mask((batch, hidden), 0.5, gen, torch.float64), make_mask((batch, hidden), 0.5, gen,
                                                                                  torch.float64)
    for training in (False, True):
        args = [t.clone().requires_grad_(training) if t is not None else None for t in (x, *fwd)]
        torch.library.opcheck(torch.ops.fastrnn.rnn_forward.default, (*args, None, code, True, training, mask))
        args_bi = [t.clone().requires_grad_(training) if t is not None else None for t in (x, *fwd, *rev)]
        torch.library.opcheck(torch.ops.fastrnn.rnn_bidirectional_forward.default,
                              (*args_bi, None, code, training, mask, mask_r))
    y, h_n, c_n, reserve = ops.rnn_forward(x, *fwd, None, code, True, True, mask)
    torch.library.opcheck(torch.ops.fastrnn.rnn_backward.default,
                          (x, fwd[0], fwd[1], fwd[2], fwd[3], None, None, y, reserve, torch.randn_like(y),
                           torch.randn_like(h_n), torch.randn_like(c_n) if lstm else None, code, True, True, True,
                           mask))
    y, h, c, r, h_r, c_r, r_r = ops.rnn_bidirectional_forward(x, *fwd, *rev, None, code, True, mask, mask_r)
    torch.library.opcheck(torch.ops.fastrnn.rnn_bidirectional_backward.default,
                          (x, fwd[0], fwd[1], fwd[2], fwd[3], None, r, torch.randn_like(h),
                           torch.randn_like(c) if lstm else None, rev[0], rev[1], rev[2], rev[3], None, r_r,
                           torch.randn_like(h_r), torch.randn_like(c_r) if lstm else None, None, y,
                           torch.randn_like(y), code, True, True, mask, mask_r))
