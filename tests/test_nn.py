"""fastrnn.nn against torch.nn: same interface, same results, same errors."""

import contextlib
import copy
import io
import pickle
import random

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn.nn as fnn
from conftest import assert_close
from reference import twins as make_pair

MODULES = ["RNN", "LSTM", "GRU"]


def random_config(rng):
    name = rng.choice(MODULES)
    config = dict(input_size=rng.choice([1, 7, 13]), hidden_size=rng.choice([1, 6, 11, 37]),
                  num_layers=rng.randint(1, 3), bidirectional=rng.random() < 0.5,
                  batch_first=rng.random() < 0.5, bias=rng.random() < 0.75)
    if name == "RNN":
        config["nonlinearity"] = rng.choice(["tanh", "relu"])
    if name == "LSTM" and config["hidden_size"] > 1 and rng.random() < 0.4:
        config["proj_size"] = rng.randint(1, config["hidden_size"] - 1)
    return name, config


def states_like(reference, batch, dtype, generator):
    """Random initial states with torch.nn's shapes for this module and batch."""
    layers = reference.num_layers * (2 if reference.bidirectional else 1)
    out = reference.proj_size if getattr(reference, "proj_size", 0) else reference.hidden_size
    h0 = torch.randn(layers, batch, out, dtype=dtype, generator=generator)
    if isinstance(reference, torch.nn.LSTM):
        return h0, torch.randn(layers, batch, reference.hidden_size, dtype=dtype, generator=generator)
    return h0


def leaves(obj):
    if obj is None:
        return None
    if isinstance(obj, tuple):
        return tuple(o.detach().clone().requires_grad_(True) for o in obj)
    return obj.detach().clone().requires_grad_(True)


def flat(obj):
    return [] if obj is None else (list(obj) if isinstance(obj, tuple) else [obj])


def run_and_compare(reference, ours, x, hx, dtype, lengths=None, enforce_sorted=True):
    """Outputs, final states and every gradient (input, states, each parameter)."""
    outs = []
    for module in (reference, ours):
        xi, hi = leaves(x), leaves(hx)
        inp = xi
        if lengths is not None:
            inp = pack_padded_sequence(xi, lengths, batch_first=module.batch_first, enforce_sorted=enforce_sorted)
        y, h = module(inp, hi)
        if lengths is not None:
            y, _ = pad_packed_sequence(y, batch_first=module.batch_first)
        outs.append((xi, hi, y, h))
    (xr, hr, yr, h_ref), (xo, ho, yo, h_ours) = outs
    assert_close(yo, yr, dtype, "output")
    for k, (a, b) in enumerate(zip(flat(h_ours), flat(h_ref))):
        assert_close(a, b, dtype, f"state {k}")
    gen = torch.Generator().manual_seed(7)
    grads = [torch.randn(t.shape, dtype=dtype, generator=gen) for t in [yr] + flat(h_ref)]
    for y, h in ((yr, h_ref), (yo, h_ours)):
        sum((t * g).sum() for t, g in zip([y] + flat(h), grads)).backward()
    assert_close(xo.grad, xr.grad, dtype, "grad input")
    for k, (a, b) in enumerate(zip(flat(ho), flat(hr))):
        assert_close(a.grad, b.grad, dtype, f"grad state {k}")
    for (name, p_ref), p_ours in zip(reference.named_parameters(), ours.parameters()):
        assert_close(p_ours.grad, p_ref.grad, dtype, f"grad {name}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("seed", range(40))
def test_random_configurations_match_torch(seed, dtype):
    rng = random.Random(seed)
    name, config = random_config(rng)
    reference, ours = make_pair(name, dtype=dtype, seed=seed, **config)
    if rng.random() < 0.5:  # eval mode changes nothing without dropout, but must work alike
        reference.eval()
        ours.eval()
    gen = torch.Generator().manual_seed(seed)
    T, B = rng.randint(1, 12), rng.randint(1, 6)
    shape = (B, T, config["input_size"]) if config["batch_first"] else (T, B, config["input_size"])
    x = torch.randn(*shape, dtype=dtype, generator=gen)
    hx = states_like(reference, B, dtype, gen) if rng.random() < 0.6 else None
    mode = rng.choice(["padded", "packed_sorted", "packed_unsorted"])
    lengths = None
    if mode != "padded":
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[rng.randrange(B)] = T
        if mode == "packed_sorted":
            lengths = lengths.sort(descending=True).values
    run_and_compare(reference, ours, x, hx, dtype, lengths, enforce_sorted=mode != "packed_unsorted")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", MODULES)
def test_packed_batch_of_several_row_panels(name, dtype):
    """A batch of 27 spans two full 12-row panels of AVX-512's micro-kernel and a partial one; the
    forward packs those rows once per step (and x's once per block of steps), and as sequences
    end the batch falls to a single partial panel. Reversed too (bidirectional), in a depth
    with a partial 8-column transpose block (I = 70, H = 29)."""
    reference, ours = make_pair(name, 70, 29, num_layers=2, bidirectional=True, dtype=dtype, seed=5)
    gen = torch.Generator().manual_seed(11)
    T, B = 9, 27
    x = torch.randn(T, B, 70, dtype=dtype, generator=gen)
    hx = states_like(reference, B, dtype, gen)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[:14] = T  # more than one full panel at every step before the others end
    run_and_compare(reference, ours, x, None, dtype)
    run_and_compare(reference, ours, x, hx, dtype, lengths, enforce_sorted=False)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", MODULES)
def test_batch_of_several_row_panels_over_several_unit_chunks(name, dtype):
    """B = 27 over H = 70 (three 32-unit chunks, the last partial): two threads share the
    recurrence, each packing the whole step's rows for its own products, with given and with
    absent initial states."""
    reference, ours = make_pair(name, 33, 70, num_layers=2, bidirectional=True, dtype=dtype, seed=6)
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(11, 27, 33, dtype=dtype, generator=gen)
    run_and_compare(reference, ours, x, states_like(reference, 27, dtype, gen), dtype)
    run_and_compare(reference, ours, x, None, dtype)


@pytest.mark.parametrize("name", MODULES)
def test_unbatched_input_matches_torch(name):
    reference, ours = make_pair(name, 5, 4, num_layers=2, bidirectional=True)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    hx = states_like(reference, 1, torch.float64, gen)
    hx = tuple(h[:, 0] for h in hx) if isinstance(hx, tuple) else hx[:, 0]
    run_and_compare(reference, ours, x, hx, torch.float64)
    run_and_compare(reference, ours, x, None, torch.float64)


@pytest.mark.parametrize("name", MODULES)
def test_interface_is_torchs(name):
    kwargs = dict(num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True)
    if name == "LSTM":
        kwargs["proj_size"] = 3
    torch.manual_seed(11)
    reference = getattr(torch.nn, name)(8, 6, **kwargs)
    torch.manual_seed(11)
    ours = getattr(fnn, name)(8, 6, **kwargs)
    assert isinstance(ours, getattr(torch.nn, name))
    assert repr(ours) == repr(reference)
    # Same names, shapes, registration order and (same seed) the same initial values.
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in reference.named_parameters()]
    for a, b in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    # state_dict both ways.
    other = getattr(torch.nn, name)(8, 6, **kwargs)
    ours.load_state_dict(other.state_dict())
    reference.load_state_dict(ours.state_dict())
    for a, b in zip(reference.parameters(), other.parameters()):
        assert torch.equal(a, b)
    ours.flatten_parameters()  # a no-op, as for torch on the CPU
    # Copies and serialisation keep the class and the weights.
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(clone) is type(ours)
        for a, b in zip(clone.parameters(), ours.parameters()):
            assert torch.equal(a, b)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    # Dtype moves and mode switches.
    assert ours.double().weight_hh_l0.dtype == torch.float64
    assert ours.to(torch.float32).weight_hh_l0.dtype == torch.float32
    assert not ours.eval().training and ours.train().training


def test_module_results_follow_dtype_changes():
    reference, ours = make_pair("GRU", 4, 5, dtype=torch.float32)
    ours.double()
    reference.double()
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    y, _ = ours(x)
    assert y.dtype == torch.float64
    assert_close(y, reference(x)[0], torch.float64, "output")


class _Doubled(torch.nn.Module):
    def forward(self, w):
        return 2 * w


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("seed", range(24))
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")  # torch's own
def test_random_configurations_match_torch_without_grad(seed, dtype):
    """The inference path (no autograd: the kernels' positional entry for one direction),
    with and without initial states, padded and packed."""
    rng = random.Random(1000 + seed)
    name, config = random_config(rng)
    reference, ours = make_pair(name, dtype=dtype, seed=seed, **config)
    gen = torch.Generator().manual_seed(seed)
    T, B = rng.randint(1, 12), rng.randint(1, 6)
    shape = (B, T, config["input_size"]) if config["batch_first"] else (T, B, config["input_size"])
    x = torch.randn(*shape, dtype=dtype, generator=gen)
    hx = states_like(reference, B, dtype, gen) if seed % 2 else None
    lengths = torch.randint(1, T + 1, (B,), generator=gen) if seed % 3 == 0 else None
    outs = []
    with torch.no_grad():
        for module in (reference, ours):
            inp = x
            if lengths is not None:
                inp = pack_padded_sequence(x, lengths, batch_first=config["batch_first"], enforce_sorted=False)
            y, h = module(inp, hx)
            if lengths is not None:
                y, _ = pad_packed_sequence(y, batch_first=config["batch_first"])
            outs.append((y, h))
    (yr, hr), (yo, ho) = outs
    assert_close(yo, yr, dtype, "output")
    for k, (a, b) in enumerate(zip(flat(ho), flat(hr))):
        assert_close(a, b, dtype, f"state {k}")


@pytest.mark.parametrize("name", MODULES)
def test_swapped_weights_are_used_like_torch(name):
    """Weights replaced between calls reach the kernels, however they were replaced: a new
    Parameter set as an attribute, one written into _parameters, torch.func.functional_call and
    a parametrization (torch's getattr walk; ours reads _parameters unless a weight is missing)."""
    reference, ours = make_pair(name, 4, 5, num_layers=2)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    ours(x)  # a first call, so later ones compare against the weights it saw
    for module in (reference, ours):
        module.weight_hh_l0 = torch.nn.Parameter(torch.full_like(module.weight_hh_l0, 0.05))
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "attribute")
    for module in (reference, ours):
        module._parameters["weight_ih_l1"] = torch.nn.Parameter(torch.full_like(module.weight_ih_l1, -0.03))
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "_parameters")
    swapped = {"weight_hh_l1": torch.full_like(ours.weight_hh_l1, 0.02)}
    assert_close(torch.func.functional_call(ours, swapped, (x,))[0],
                 torch.func.functional_call(reference, swapped, (x,))[0], torch.float64, "functional_call")
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "after functional_call")
    for module in (reference, ours):
        torch.nn.utils.parametrize.register_parametrization(module, "weight_hh_l0", _Doubled())
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "parametrization")


@pytest.mark.parametrize("name", MODULES)
def test_zero_initial_states_are_shared_safely(name):
    """Calls without hx share kept zero states: they stay zero, never reach the caller, and a
    training step through them gives torch's gradients."""
    reference, ours = make_pair(name, 3, 4, num_layers=2, bidirectional=True)
    for batch in (2, 5, 2):
        x = torch.randn(6, batch, 3, dtype=torch.float64)
        with torch.no_grad():
            y, hidden = ours(x)
        for h, h_ref in zip(flat(hidden), flat(reference(x)[1])):
            assert_close(h, h_ref, torch.float64, "h_n")
            h.fill_(7.0)  # what the caller does with its states must not reach the next call
        assert_close(ours(x)[0].detach(), reference(x)[0].detach(), torch.float64, "output")
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    ours(x)[0].sum().backward()
    grad = x.grad
    x.grad = None
    reference(x)[0].sum().backward()
    assert_close(grad, x.grad, torch.float64, "dx")
    for (n, p), p_ref in zip(ours.named_parameters(), reference.parameters()):
        assert_close(p.grad, p_ref.grad, torch.float64, n)


@pytest.mark.parametrize("name", MODULES)
def test_dropout_between_layers_only_when_training(name):
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    reference, ours = make_pair(name, 4, 6, num_layers=2, dropout=1.0)
    # p = 1 drops every input of layer 2, deterministically in both libraries; the last layer's
    # output is never dropped (it would be all zeros).
    y_ours, _ = ours(x)
    y_ref, _ = reference(x)
    assert_close(y_ours, y_ref, torch.float64, "p=1 output")
    assert y_ours.abs().sum() > 0
    ours.eval()
    reference.eval()
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "eval output")
    # 0 < p < 1: a fresh mask each call in training, none in eval.
    _, ours = make_pair(name, 4, 6, num_layers=2, dropout=0.5)
    assert not torch.equal(ours(x)[0], ours(x)[0])
    ours.eval()
    assert torch.equal(ours(x)[0], ours(x)[0])


def test_dropout_scales_kept_activations():
    # Layer 2 is made the identity on non-negative input (ReLU, W_ih = I, no recurrence, no
    # bias), so its output is exactly dropout(layer 1 output): each element either 0 or scaled
    # by 1 / (1 - p), about a fraction p of them 0.
    p = 0.3
    _, ours = make_pair("RNN", 3, 40, num_layers=2, dropout=p, nonlinearity="relu")
    with torch.no_grad():
        ours.weight_ih_l1.copy_(torch.eye(40))
        ours.weight_hh_l1.zero_()
        ours.bias_ih_l1.zero_()
        ours.bias_hh_l1.zero_()
    x = torch.randn(4, 64, 3, dtype=torch.float64)
    with torch.no_grad():
        dropped = ours(x)[0]
        ours.eval()
        kept = ours(x)[0]
    nonzero = kept > 0
    ratio = dropped[nonzero] / kept[nonzero]
    zero = ratio == 0
    assert torch.allclose(ratio[~zero], torch.full_like(ratio[~zero], 1 / (1 - p)))
    assert abs(zero.double().mean().item() - p) < 0.05


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(name, batched):
    for dtype in (torch.float64, torch.float32):
        reference, ours = make_pair(name, 7, 9, dtype=dtype, seed=5)
        assert repr(ours) == repr(reference)
        x = torch.randn(*((4, 7) if batched else (7,)), dtype=dtype)
        state_shape = (4, 9) if batched else (9,)
        hx = torch.randn(*state_shape, dtype=dtype)
        hx = (hx, torch.randn(*state_shape, dtype=dtype)) if name == "LSTMCell" else hx
        for h in (hx, None):
            xr, xo, hr, ho = leaves(x), leaves(x), leaves(h), leaves(h)
            out_r, out_o = reference(xr, hr), ours(xo, ho)
            for a, b in zip(flat(out_o), flat(out_r)):
                assert_close(a, b, dtype, "cell output")
            sum(t.sum() * (k + 1) for k, t in enumerate(flat(out_r))).backward()
            sum(t.sum() * (k + 1) for k, t in enumerate(flat(out_o))).backward()
            assert_close(xo.grad, xr.grad, dtype, "grad input")
            for (pname, p_ref), p in zip(reference.named_parameters(), ours.parameters()):
                assert_close(p.grad, p_ref.grad, dtype, f"grad {pname}")
            reference.zero_grad()
            ours.zero_grad()


CELL_CONFIGS = [("RNNCell", {"nonlinearity": "tanh"}), ("RNNCell", {"nonlinearity": "relu", "bias": False}),
                ("LSTMCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {}), ("GRUCell", {"bias": False})]


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"])
def test_training_after_inference_mode_without_hx(name):
    """A call without hx under inference_mode, then a training call of the same shape: the zero
    state kept between calls must not be an inference tensor, which autograd cannot save."""
    reference, ours = make_pair(name, 5, 7)
    x = torch.randn(3, 5, dtype=torch.float64)
    with torch.inference_mode():
        ours(x)
    x_ours, x_ref = leaves(x), leaves(x)

    def total(out):  # every output of a cell or a layer, states included
        return out.sum() if isinstance(out, torch.Tensor) else sum(total(o) for o in out)

    total(ours(x_ours)).backward()
    total(reference(x_ref)).backward()
    assert_close(x_ours.grad, x_ref.grad, torch.float64, "grad input")


@pytest.mark.parametrize("name,kwargs", CELL_CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("batch", [1, 3, 16, 70])  # rowdot (<= 4), weights in place (<= 64), packed
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "frozen"])
def test_cell_inference_matches_torch(name, kwargs, batch, mode):
    """The cells' inference path (the kernel's one-step entry): batched and unbatched, with and
    without hx, non-contiguous inputs, and parameters that do not require grad under grad mode."""
    for dtype in (torch.float64, torch.float32):
        reference, ours = make_pair(name, 13, 21, dtype=dtype, seed=batch, **kwargs)
        if mode == "frozen":
            for module in (reference, ours):
                module.requires_grad_(False)
        context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, contextlib.nullcontext)
        g = torch.Generator().manual_seed(batch)
        x = torch.randn(13, batch, dtype=dtype, generator=g).t()  # a transposed (non-contiguous) view
        h = torch.randn(batch, 21, dtype=dtype, generator=g)
        hx = (h, torch.randn(batch, 21, dtype=dtype, generator=g)) if name == "LSTMCell" else h
        for args in ((x, hx), (x, None), (x[0], tuple(t[0] for t in flat(hx)) if name == "LSTMCell" else h[0])):
            with context():
                got, expected = ours(*args), reference(*args)
            for a, b in zip(flat(got), flat(expected)):
                assert a.shape == b.shape and not a.requires_grad
                assert_close(a, b, dtype, f"{name} {mode}")


@pytest.mark.parametrize("name,kwargs", CELL_CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("batch", [1, 3, 16, 70])
def test_cell_training_matches_torch(name, kwargs, batch):
    """The cells' training step (the kernel's one-step entries both ways): outputs and every
    gradient, with the loss on h only, on c only (LSTM) and on both, with and without hx."""
    for dtype in (torch.float64, torch.float32):
        reference, ours = make_pair(name, 13, 21, dtype=dtype, seed=batch, **kwargs)
        g = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, 13, dtype=dtype, generator=g)
        h = torch.randn(batch, 21, dtype=dtype, generator=g)
        hx = (h, torch.randn(batch, 21, dtype=dtype, generator=g)) if name == "LSTMCell" else h
        weights = [torch.randn(batch, 21, dtype=dtype, generator=g) for _ in range(2)]
        for uses in ((0,), (1,), (0, 1)) if name == "LSTMCell" else ((0,),):
            for state in (hx, None):
                grads = []
                for module in (reference, ours):
                    module.zero_grad()
                    xi, si = leaves(x), leaves(state)
                    out = flat(module(xi, si))
                    sum((out[k] * weights[k]).sum() for k in uses).backward()
                    grads.append((out, xi.grad, [s.grad for s in flat(si)],
                                  [p.grad for p in module.parameters()]))
                (out_r, dx_r, ds_r, dp_r), (out_o, dx_o, ds_o, dp_o) = grads
                for a, b in zip(out_o, out_r):
                    assert_close(a, b, dtype, "cell output")
                assert_close(dx_o, dx_r, dtype, "grad input")
                for a, b in zip(ds_o + dp_o, ds_r + dp_r):
                    if b is None:
                        assert a is None or not a.any()
                    else:
                        assert_close(a, b, dtype, "grad state or parameter")


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell_training_step_passes_gradcheck(cell):
    from fastrnn import ops
    lstm = cell == "lstm"
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    g = torch.Generator().manual_seed(3)

    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g).mul_(0.5).requires_grad_(True)

    x, h0, c0 = t(3, 5), t(3, 4), t(3, 4) if lstm else None
    weights = (t(G * 4, 5), t(G * 4, 4), t(G * 4), t(G * 4))
    code = ops.CELLS[cell]
    if lstm:
        assert torch.autograd.gradcheck(lambda *a: ops.cell_training(code, *a), (x, h0, c0, *weights))
        assert torch.autograd.gradcheck(lambda *a: ops.cell_training(code, *a)[1], (x, h0, c0, *weights))
    else:
        assert torch.autograd.gradcheck(lambda x, h0, *w: ops.cell_training(code, x, h0, None, *w), (x, h0, *weights))
    # create_graph: the first derivative as without it (second derivatives: test_autograd_transforms).
    out = flat(ops.cell_training(code, x, h0, c0, *weights))[0]
    (dx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    (expected,) = torch.autograd.grad(flat(ops.cell_training(code, x, h0, c0, *weights))[0].sum(), x)
    assert_close(dx, expected, torch.float64, "create_graph")


def test_cell_under_torch_compile_matches_torch():
    """Under torch.compile a cell takes the custom op (its eager paths call the kernel directly)."""
    reference, ours = make_pair("LSTMCell", 5, 7)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(3, 5, dtype=torch.float64)
    results = []
    for module in (reference, compiled):
        xi = leaves(x)
        h, c = module(xi)
        (h.sum() + 2 * c.sum()).backward()
        results.append((h, c, xi.grad))
    for a, b in zip(results[1], results[0]):
        assert_close(a, b, torch.float64, "compiled cell")


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_swapped_weights_are_used_like_torch(name):
    """A cell reads its registered parameters directly, and a parametrized weight through the
    attribute: both reach the kernel, with and without grad."""
    reference, ours = make_pair(name, 4, 5)
    x = torch.randn(3, 4, dtype=torch.float64)
    for module in (reference, ours):
        module.weight_hh = torch.nn.Parameter(torch.full_like(module.weight_hh, 0.05))
        torch.nn.utils.parametrize.register_parametrization(module, "weight_ih", _Doubled())
    for context in (torch.no_grad, contextlib.nullcontext):
        with context():
            for a, b in zip(flat(ours(x)), flat(reference(x))):
                assert_close(a, b, torch.float64, "swapped cell weights")


def test_empty_batch_gives_empty_results_like_torch():
    for name in MODULES:
        reference, ours = make_pair(name, 3, 4, num_layers=2)
        x = torch.zeros(5, 0, 3, dtype=torch.float64)
        y_r, h_r = reference(x)
        y_o, h_o = ours(x)
        assert y_o.shape == y_r.shape
        for a, b in zip(flat(h_o), flat(h_r)):
            assert a.shape == b.shape
    cell_r, cell_o = torch.nn.GRUCell(3, 4), fnn.GRUCell(3, 4)
    assert cell_o(torch.zeros(0, 3)).shape == cell_r(torch.zeros(0, 3)).shape



def outputs_and_grads(module, x, hx):
    """module(x, hx)'s outputs (shape, dtype, requires_grad), then every gradient of a backward
    through all of them (None where there is none), or the error backward raised."""
    xi, hi = leaves(x), leaves(hx)
    out = flat(module(xi, hi) if hx is not None else module(xi))
    out = [o for t in out for o in flat(t)]  # a layer's (y, h_n) or (y, (h_n, c_n)), a cell's states
    described = [(tuple(o.shape), o.dtype, o.requires_grad) for o in out]
    if not any(o.requires_grad for o in out):
        return described, None
    sum(o.sum() for o in out).backward()
    tensors = [xi] + flat(hi) + list(module.parameters())
    return described, [None if t.grad is None else t.grad.clone() for t in tensors]


def assert_same_outputs_and_grads(got, expected):
    (shapes, grads), (shapes_ref, grads_ref) = got, expected
    assert shapes == shapes_ref
    assert (grads is None) == (grads_ref is None)
    for k, (a, b) in enumerate(zip(grads or [], grads_ref or [])):
        assert (a is None) == (b is None), f"gradient {k}: {a} against torch's {b}"
        if a is not None:
            assert_close(a, b, torch.float64, f"gradient {k}")


def grad_context(mode):
    return torch.no_grad() if mode == "no_grad" else contextlib.nullcontext()


def assert_same_as_torch_in_mode(reference, ours, x, hx, mode):
    """ours(x, hx) as reference(x, hx), outputs and gradients, in mode "train", "eval" or
    "no_grad" (eval mode under torch.no_grad)."""
    for module in (reference, ours):
        module.train(mode == "train")
        module.zero_grad(set_to_none=True)
    with grad_context(mode):
        expected = outputs_and_grads(reference, x, hx)
        got = outputs_and_grads(ours, x, hx)
    assert_same_outputs_and_grads(got, expected)


@pytest.mark.parametrize("name", MODULES)
def test_empty_batch_is_attached_to_the_graph_like_torch(name):
    """A batch of 0 once returned detached zeros, so y.sum().backward() failed; torch's outputs
    hang off the graph and backward gives every parameter a zero gradient (not None)."""
    configs = [{}, {"num_layers": 2, "bidirectional": True}, {"batch_first": True}]
    if name == "LSTM":
        configs.append({"proj_size": 3, "num_layers": 2})
    for kwargs in configs:
        reference, ours = make_pair(name, 5, 7, **kwargs)
        x = torch.randn(*((0, 9, 5) if kwargs.get("batch_first") else (9, 0, 5)), dtype=torch.float64)
        for hx in (None, states_like(reference, 0, torch.float64, torch.Generator())):
            for mode in ("train", "eval", "no_grad"):
                assert_same_as_torch_in_mode(reference, ours, x, hx, mode)


CELL_NAMES = ["RNNCell", "LSTMCell", "GRUCell"]


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("sizes", [(5, 7, 0), (5, 0, 3), (0, 7, 3), (0, 0, 3), (0, 0, 0), (5, 0, None)],
                         ids=lambda s: "I{}-H{}-B{}".format(*s))
def test_cells_with_empty_dimensions_run_like_torch(name, sizes):
    """A batch of 0 (once detached), a hidden size of 0 (once the kernel's 'expected
    hidden_size > 0'; torch returns (B, 0) states) and an input size of 0 (the kernel takes
    I = 0): outputs and every gradient as torch's, with and without hx. B None: unbatched."""
    input_size, hidden_size, batch = sizes
    reference, ours = make_pair(name, input_size, hidden_size)
    shape = (input_size,) if batch is None else (batch, input_size)
    x = torch.randn(*shape, dtype=torch.float64)
    h = torch.randn(*shape[:-1], hidden_size, dtype=torch.float64)
    for hx in (None, (h, h.clone()) if name == "LSTMCell" else h):
        for mode in ("train", "no_grad"):
            assert_same_as_torch_in_mode(reference, ours, x, hx, mode)
            with grad_context(mode):
                for a, b in zip(flat(ours(x, hx)), flat(reference(x, hx))):
                    assert_close(a, b, torch.float64, "cell output")


@pytest.mark.parametrize("name", MODULES)
def test_layers_with_empty_sizes_are_refused_like_torch(name):
    """torch.nn's layers refuse an input or hidden size of 0 in the constructor (the cells take them)."""
    for args in ((0, 7), (5, 0), (0, 0)):
        same_error(lambda: getattr(torch.nn, name)(*args), lambda: getattr(fnn, name)(*args))


# ---- errors: the same exception type and message as torch.nn ----------------------------------

def same_error(call_reference, call_ours):
    with pytest.raises(Exception) as expected:
        call_reference()
    with pytest.raises(type(expected.value)) as got:
        call_ours()
    assert str(got.value) == str(expected.value)


def forward_error_cases(name):
    """(description, module kwargs, input, hx) for mistakes torch.nn rejects."""
    lstm = name == "LSTM"

    def state(*shape, dtype=torch.float32):
        return (torch.zeros(*shape, dtype=dtype), torch.zeros(*shape, dtype=dtype)) if lstm else torch.zeros(
            *shape, dtype=dtype)

    x = torch.randn(5, 3, 4)
    cases = [
        ("input size", {}, torch.randn(5, 3, 7), None),
        ("input rank 4", {}, torch.randn(5, 3, 4, 1), None),
        ("input rank 1", {}, torch.randn(4), None),
        ("h0 batch", {}, x, state(1, 2, 6)),
        ("h0 size", {}, x, state(1, 3, 5)),
        ("h0 layers", {"num_layers": 2}, x, state(1, 3, 6)),
        ("batched input, unbatched h0", {}, x, state(3, 6)),
        ("unbatched input, batched h0", {}, torch.randn(5, 4), state(1, 3, 6)),
        ("input dtype", {}, x.double(), None),
        ("bidirectional h0", {"bidirectional": True}, x, state(1, 3, 6)),
        ("batch_first h0", {"batch_first": True}, x, state(1, 3, 6)),
    ]
    if lstm:
        cases += [
            ("c0 size", {}, x, (torch.zeros(1, 3, 6), torch.zeros(1, 3, 5))),
            ("proj h0 size", {"proj_size": 2}, x, (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))),
        ]
    return cases


@pytest.mark.parametrize("name", MODULES)
def test_forward_errors_match_torch(name):
    for description, kwargs, x, hx in forward_error_cases(name):
        reference, ours = make_pair(name, 4, 6, dtype=torch.float32, **kwargs)
        try:
            same_error(lambda: reference(x, hx), lambda: ours(x, hx))
        except AssertionError as e:
            raise AssertionError(f"{name}, {description}: {e}") from e


CONSTRUCTOR_ERRORS = [
    ("RNN", (4, 0), {}),
    ("LSTM", (4, -1), {}),
    ("GRU", (4, 6), {"num_layers": 0}),
    ("RNN", (4, 6.0), {}),
    ("LSTM", (4.5, 6), {}),
    ("GRU", (4, 6), {"bias": 1}),
    ("RNN", (4, 6), {"batch_first": "yes"}),
    ("LSTM", (4, 6), {"proj_size": 6}),
    ("LSTM", (4, 6), {"proj_size": -1}),
    ("GRU", (4, 6), {"proj_size": 2}),
    ("RNN", (4, 6), {"proj_size": 2}),
    ("RNN", (4, 6), {"nonlinearity": "gelu"}),
    ("LSTM", (4, 6), {"dropout": 1.5}),
    ("GRU", (4, 6), {"dropout": -0.1}),
]


@pytest.mark.parametrize("name,args,kwargs", CONSTRUCTOR_ERRORS)
def test_constructor_errors_match_torch(name, args, kwargs):
    same_error(lambda: getattr(torch.nn, name)(*args, **kwargs), lambda: getattr(fnn, name)(*args, **kwargs))


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_errors_match_torch(name):
    lstm = name == "LSTMCell"
    torch.manual_seed(0)
    reference, ours = getattr(torch.nn, name)(4, 6), getattr(fnn, name)(4, 6)

    def state(*shape):
        return (torch.zeros(*shape), torch.zeros(*shape)) if lstm else torch.zeros(*shape)

    cases = [(torch.randn(3, 5), None), (torch.randn(2, 3, 4), None), (torch.randn(3, 4), state(2, 6)),
             (torch.randn(3, 4), state(3, 7)), (torch.randn(4), state(3, 6)),
             (torch.randn(3, 4).double(), None), (torch.randn(3, 4), state(2, 3, 6)),
             (torch.randn(3, 4), tuple(t.double() for t in state(3, 6)) if lstm else state(3, 6).double())]
    for x, hx in cases:
        same_error(lambda: reference(x, hx), lambda: ours(x, hx))
    if name == "RNNCell":  # torch accepts any nonlinearity string and refuses it in forward
        reference, ours = torch.nn.RNNCell(4, 6, nonlinearity="sigmoid"), fnn.RNNCell(4, 6, nonlinearity="sigmoid")
        same_error(lambda: reference(torch.randn(3, 4)), lambda: ours(torch.randn(3, 4)))


@pytest.mark.parametrize("name", MODULES)
def test_thread_count_changed_between_calls(name):
    """Workspaces hold per-thread slices: a module called after torch.set_num_threads changed
    the count (here 1, then 3) must size them for the new count (it once raised 'workspace ...
    too small' from sizes cached for the old one)."""
    reference, ours = make_pair(name, 128, 128, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        for count in (1, 3, 1):
            torch.set_num_threads(count)
            x = torch.randn(9, 1, 128, requires_grad=True)
            y, _ = ours(x)
            y.sum().backward()
            expected, _ = reference(x.detach())
            assert_close(y, expected, torch.float32)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODULES + CELL_NAMES)
def test_empty_batch_has_second_derivatives_like_torch(name):
    """The first-order gradients of an empty batch depend on every input, as torch's do: with
    create_graph they require grad, and a second backward gives zeros (it once found no graph)."""
    reference, ours = make_pair(name, 5, 7)
    shape = (0, 5) if name in CELL_NAMES else (9, 0, 5)
    results = []
    for module in (reference, ours):
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        out = flat(module(x))[0]
        weight = next(module.parameters())
        dx, dw = torch.autograd.grad(out.sum(), (x, weight), create_graph=True)
        assert dx.requires_grad and dw.requires_grad, name
        results.append(torch.autograd.grad(dw.sum(), weight, allow_unused=True)[0])
    assert (results[0] is None) == (results[1] is None)
    if results[0] is not None:
        assert_close(results[1], results[0], torch.float64, "second derivative")
