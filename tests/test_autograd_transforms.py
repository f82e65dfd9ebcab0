"""fastrnn's RNN layers and cells beyond a first-order eager backward, each against torch.nn:
second (and third) derivatives, torch.func transforms, outputs changed in place before
backward, meta tensors, torch.jit and torch.compile / torch.export."""

import re
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn.nn as fnn
from fastrnn import functional as F
from fastrnn import ops
from conftest import assert_close
from reference import twins

# (module name, constructor keywords): every layer kind and option whose backward differs.
LAYERS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "bias": False}),
    ("GRU", {}),
    ("GRU", {"bidirectional": True, "num_layers": 2}),
    ("LSTM", {}),
    ("LSTM", {"proj_size": 2, "bias": False}),
    ("LSTM", {"proj_size": 2, "bidirectional": True}),
    ("RNN", {"bidirectional": True, "batch_first": True}),
]
CELLS = [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu", "bias": False}), ("GRUCell", {}),
         ("GRUCell", {"bias": False}), ("LSTMCell", {}), ("LSTMCell", {"bias": False})]
INPUT_SIZE, HIDDEN_SIZE, STEPS, BATCH = 3, 5, 4, 3


def case_id(value):
    return value if isinstance(value, str) else ",".join(f"{k}={v}" for k, v in value.items()) or "default"


def make_pair(name, kwargs, dtype=torch.float64, seed=0, sizes=(INPUT_SIZE, HIDDEN_SIZE)):
    """A torch.nn module and its fastrnn twin holding the same weights."""
    return twins(name, *sizes, dtype=dtype, seed=seed, **kwargs)


def input_for(name, kwargs, dtype=torch.float64, steps=STEPS, batch=BATCH, seed=1):
    gen = torch.Generator().manual_seed(seed)
    if name.endswith("Cell"):
        return torch.randn(batch, INPUT_SIZE, dtype=dtype, generator=gen)
    shape = (batch, steps, INPUT_SIZE) if kwargs.get("batch_first") else (steps, batch, INPUT_SIZE)
    return torch.randn(shape, dtype=dtype, generator=gen)


def outputs(result):
    """Every tensor a module returned: a layer's (y, h_n) or (y, (h_n, c_n)), a cell's h or (h, c)."""
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for part in result for t in outputs(part)]


def weighted_sum(tensors, seed=2):
    """A scalar reading every output with its own random weights (so no gradient is trivial)."""
    gen = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, dtype=t.dtype, generator=gen)).sum() for t in tensors)


def second_derivatives(module, x):
    """The gradients of |d loss / d (x, parameters)|^2 with respect to x and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    params = list(module.parameters())
    first = torch.autograd.grad(weighted_sum(outputs(module(x))), [x, *params], create_graph=True)
    return torch.autograd.grad(sum(g.pow(2).sum() for g in first), [x, *params])


# ---- Second derivatives -------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", LAYERS + CELLS, ids=case_id)
def test_second_derivatives_match_torch(name, kwargs):
    """A backward after torch.autograd.grad(create_graph=True) once raised 'no autograd formula'
    (fastrnn.rnn_backward had none); it now gives torch's second derivatives."""
    reference, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs)
    for a, b, what in zip(second_derivatives(ours, x), second_derivatives(reference, x),
                          ["x"] + [n for n, _ in reference.named_parameters()]):
        assert_close(a, b, torch.float64, what)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_second_derivatives_of_packed_sequences_match_torch(name):
    results = []
    for module in make_pair(name, {"bidirectional": True}):
        x = input_for(name, {}).requires_grad_(True)
        packed = pack_padded_sequence(x, torch.tensor([2, STEPS, 1]), enforce_sorted=False)
        y, hidden = module(packed)
        params = list(module.parameters())
        first = torch.autograd.grad(weighted_sum([y.data, *outputs(hidden)]), [x, *params], create_graph=True)
        results.append(torch.autograd.grad(sum(g.pow(2).sum() for g in first), [x, *params]))
    for a, b in zip(*results):
        assert_close(a, b, torch.float64, "second derivative")


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"])
def test_second_derivatives_of_size_one_match_torch(name):
    """One step, one sequence, one unit, one feature."""
    results = []
    for module in make_pair(name, {}, sizes=(1, 1)):
        x = torch.full((1, 1) if name.endswith("Cell") else (1, 1, 1), 0.7, dtype=torch.float64)
        results.append(second_derivatives(module, x))
    for a, b in zip(*results):
        assert_close(a, b, torch.float64, "second derivative")


@pytest.mark.parametrize("name,kwargs", [("GRU", {}), ("LSTM", {"bidirectional": True}), ("RNN", {}), ("GRUCell", {}),
                                         ("LSTMCell", {}), ("RNNCell", {})], ids=case_id)
def test_gradgradcheck_of_modules(name, kwargs):
    _, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs, steps=2, batch=2).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: tuple(outputs(ours(x))), (x,))


def test_third_derivatives_match_torch():
    """_Gradients' backward is itself differentiable (torch operations throughout)."""
    results = []
    for module in make_pair("GRU", {}):
        x = input_for("GRU", {}, steps=3, batch=2).requires_grad_(True)
        (g1,) = torch.autograd.grad(module(x)[0].pow(3).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(g2.sum(), [x, *module.parameters()]))
    for a, b in zip(*results):
        assert_close(a, b, torch.float64, "third derivative")


# One layer through fastrnn.functional's building blocks, every option the kernels have:
# (cell, bias, reverse, proj_size, packed, recurrent mask, bidirectional).
LAYER_OPTIONS = [(cell, bias, reverse, 0, packed, mask, False)
                 for cell in ("rnn_tanh", "rnn_relu", "gru", "lstm")
                 for bias, reverse, packed, mask in [(True, False, False, False), (False, True, False, False),
                                                     (True, False, True, False), (True, True, True, True)]]
LAYER_OPTIONS += [(cell, bias, False, 0, packed, mask, True) for cell in ("rnn_tanh", "rnn_relu", "gru", "lstm")
                  for bias, packed, mask in [(True, False, False), (False, True, True)]]
LAYER_OPTIONS += [("lstm", True, False, 2, False, False, False), ("lstm", False, True, 2, True, True, False),
                  ("lstm", True, False, 2, True, True, True)]


def layer_arguments(cell, bias, proj, packed, mask, bidirectional):
    """x, batch_sizes, and per direction (h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
    weight_hr) and mask, in float64; odd sizes, a batch ending at different steps if packed."""
    gen = torch.Generator().manual_seed(5)
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    I, H, B, T = 3, 3, 3, 3
    P = proj or H

    def t(*shape):
        return (torch.randn(*shape, dtype=torch.float64, generator=gen) * 0.5).requires_grad_(True)

    batch_sizes = torch.tensor([3, 2, 1]) if packed else None
    x = t(6, I) if packed else t(T, B, I)
    directions, masks = [], []
    for _ in range(2 if bidirectional else 1):
        directions.append((t(B, P), t(B, H) if cell == "lstm" else None, t(G * H, I), t(G * H, P),
                           t(G * H) if bias else None, t(G * H) if bias else None, t(P, H) if proj else None))
        masks.append(torch.randint(0, 2, (B, P), generator=gen).double() * 2 if mask else None)
    return x, batch_sizes, directions, masks


@pytest.mark.parametrize("cell,bias,reverse,proj,packed,mask,bidirectional", LAYER_OPTIONS)
def test_gradgradcheck_of_every_layer_option(cell, bias, reverse, proj, packed, mask, bidirectional):
    """The first derivative (the backward kernels) differentiated numerically against the second
    (the pure-torch reference), for every input the layer differentiates."""
    x, batch_sizes, directions, masks = layer_arguments(cell, bias, proj, packed, mask, bidirectional)
    lstm = cell == "lstm"
    present = [(k, t) for k, t in enumerate(t for d in directions for t in d) if t is not None]

    def layer(x, *tensors):
        flat = [None] * (7 * len(directions))
        for (k, _), t in zip(present, tensors):
            flat[k] = t
        per = [tuple(flat[7 * j:7 * j + 7]) for j in range(len(directions))]
        if bidirectional:
            y, (h, c), (h_r, c_r) = F.run_bidirectional_layer(cell, x, per[0], per[1], batch_sizes, tuple(masks))
            return (y, h, c, h_r, c_r) if lstm else (y, h, h_r)
        y, h, c = F.run_layer(cell, x, *per[0], batch_sizes, reverse, masks[0])
        return (y, h, c) if lstm else (y, h)

    assert torch.autograd.gradgradcheck(layer, (x, *[t for _, t in present]), fast_mode=True)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradgradcheck_of_a_cell_step(cell, bias):
    """The cells' eager training step (ops.cell_training) has its own backward; its create_graph
    path differentiates too."""
    gen = torch.Generator().manual_seed(3)
    G = {"lstm": 4, "gru": 3}.get(cell, 1)

    def t(*shape):
        return (torch.randn(*shape, dtype=torch.float64, generator=gen) * 0.5).requires_grad_(True)

    x, h0, c0 = t(3, 5), t(3, 4), t(3, 4) if cell == "lstm" else None
    weights = (t(G * 4, 5), t(G * 4, 4)) + ((t(G * 4), t(G * 4)) if bias else ())
    code = ops.CELLS[cell]

    def step(x, h0, *rest):
        c0, rest = (rest[0], rest[1:]) if cell == "lstm" else (None, rest)
        w_ih, w_hh, *biases = rest
        return ops.cell_training(code, x, h0, c0, w_ih, w_hh, *(biases or (None, None)))

    inputs = (x, h0, *((c0,) if c0 is not None else ()), *weights)
    assert torch.autograd.gradgradcheck(step, inputs)


def test_first_derivative_with_create_graph_is_the_kernels():
    """create_graph does not change the first derivative: both run the backward kernels."""
    _, ours = make_pair("LSTM", {"bidirectional": True})
    x = input_for("LSTM", {}).requires_grad_(True)
    with_graph = torch.autograd.grad(weighted_sum(outputs(ours(x))), [x, *ours.parameters()], create_graph=True)
    without = torch.autograd.grad(weighted_sum(outputs(ours(x))), [x, *ours.parameters()])
    for a, b in zip(with_graph, without):
        assert torch.equal(a, b)


# ---- torch.func -----------------------------------------------------------------------------------


def first_output(result):
    return outputs(result)[0]


TRANSFORMS = {
    "grad": lambda m, x: torch.func.grad(lambda x: first_output(m(x)).pow(2).sum())(x),
    "vjp": lambda m, x: torch.func.vjp(lambda x: tuple(outputs(m(x))), x)[1](
        tuple(torch.ones_like(t) for t in outputs(m(x))))[0],
    "jacrev": lambda m, x: torch.func.jacrev(lambda x: first_output(m(x)))(x),
    "grad of grad": lambda m, x: torch.func.grad(
        lambda x: torch.func.grad(lambda x: first_output(m(x)).pow(2).sum())(x).pow(2).sum())(x),
    "parameters": lambda m, x: torch.func.grad(
        lambda p: weighted_sum(outputs(torch.func.functional_call(m, p, (x,)))))(dict(m.named_parameters())),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("name,kwargs", LAYERS + CELLS, ids=case_id)
def test_func_transforms_match_torch(name, kwargs, transform):
    """torch.func.grad once failed: torch.library's autograd wrapper of a custom op is no
    setup_context autograd.Function, which functorch requires."""
    reference, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs, steps=3, batch=2)
    got, expected = TRANSFORMS[transform](ours, x), TRANSFORMS[transform](reference, x)
    if isinstance(expected, dict):
        for key in expected:
            assert_close(got[key], expected[key], torch.float64, key)
    else:
        assert_close(got, expected, torch.float64, transform)


@pytest.mark.parametrize("transform", ["grad", "vjp", "jacrev"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_func_transforms_of_functional_layers_match_torch(cell, transform):
    kind = {"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN")
    kwargs = {"nonlinearity": cell[4:]} if kind == "RNN" else {}
    reference, _ = make_pair(kind, kwargs)
    weights = [p.detach() for p in reference.parameters()]
    h0 = torch.randn(2, HIDDEN_SIZE, dtype=torch.float64)

    def ours(x):
        if cell == "lstm":
            return F.lstm(x, h0, torch.zeros_like(h0), *weights)
        if cell == "gru":
            return F.gru(x, h0, *weights)
        return F.rnn(x, h0, *weights, nonlinearity=cell[4:])

    def theirs(x):
        y, state = reference(x, (h0[None], torch.zeros_like(h0)[None]) if cell == "lstm" else h0[None])
        return (y, state[0][0], state[1][0]) if cell == "lstm" else (y, state[0])

    x = input_for(kind, {}, steps=3, batch=2)
    assert_close(TRANSFORMS[transform](ours, x), TRANSFORMS[transform](theirs, x), torch.float64, transform)


@pytest.mark.parametrize("grad_mode", [False, True])
@pytest.mark.parametrize("name,kwargs", LAYERS + CELLS, ids=case_id)
def test_vmap_matches_a_loop(name, kwargs, grad_mode):
    """vmap over inputs runs the kernels once per entry (the ops' vmap rule); without grad the
    cells' direct kernel call once received batched tensors it cannot read. torch.nn's layers and
    LSTMCell have no batching rule at all; fastrnn's run."""
    _, ours = make_pair(name, kwargs)
    xs = torch.stack([input_for(name, kwargs, seed=s) for s in range(3)])
    with torch.set_grad_enabled(grad_mode):
        mapped = outputs(torch.func.vmap(ours)(xs))
        looped = [torch.stack(parts) for parts in zip(*(outputs(ours(x)) for x in xs))]
    for a, b in zip(mapped, looped):
        assert_close(a, b, torch.float64, "vmap")


@pytest.mark.parametrize("name", ["GRUCell", "RNNCell"])
def test_vmap_of_cells_matches_torch(name):
    reference, ours = make_pair(name, {})
    xs = torch.stack([input_for(name, {}, seed=s) for s in range(3)])
    got = torch.func.vmap(ours)(xs)  # (fastrnn's ops have a vmap rule: no warning)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)  # torch's fallback
        expected = torch.func.vmap(reference)(xs)
    assert_close(got, expected, torch.float64, "vmap")


@pytest.mark.parametrize("name,kwargs", [("LSTMCell", {}), ("GRU", {"bidirectional": True})], ids=case_id)
def test_per_sample_gradients_match_a_loop(name, kwargs):
    """vmap(grad): the backward kernels under vmap (torch.nn's cells fail this one)."""
    _, ours = make_pair(name, kwargs)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs = torch.stack([input_for(name, kwargs, batch=1, seed=s) for s in range(3)])

    def loss(p, x):  # (no random weights: vmap refuses random operations)
        return sum((t.sin() * (k + 1)).sum() for k, t in enumerate(outputs(torch.func.functional_call(ours, p, (x,)))))

    mapped = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    for k, x in enumerate(xs):
        for key, g in torch.func.grad(loss)(params, x).items():
            assert_close(mapped[key][k], g, torch.float64, key)


# ---- Outputs changed in place before backward ---------------------------------------------------

IN_PLACE = [("RNN", {}, "y"), ("RNN", {"nonlinearity": "relu"}, "y"), ("RNN", {"bidirectional": True}, "y"),
            ("RNN", {}, "h"), ("GRU", {}, "y"), ("GRU", {"bidirectional": True}, "y"), ("GRU", {}, "h"),
            ("GRU", {"num_layers": 2, "batch_first": True}, "y"), ("LSTM", {}, "y"), ("LSTM", {}, "h"),
            ("LSTM", {}, "c"), ("LSTM", {"proj_size": 2}, "y"), ("LSTM", {"bidirectional": True}, "y"),
            ("LSTM", {"num_layers": 2}, "y"), ("LSTM", {"batch_first": True}, "y"), ("LSTM", {}, "packed y"),
            ("RNNCell", {}, "h"), ("RNNCell", {"nonlinearity": "relu"}, "h"), ("GRUCell", {}, "h"),
            ("LSTMCell", {}, "h"), ("LSTMCell", {}, "c")]
VERSION_ERROR = "one of the variables needed for gradient computation has been modified by an inplace operation"


def backward_after_changing(module, name, x, which):
    """Changes one output in place (doubles it), backpropagates a weighted sum of all outputs;
    returns the gradients of x and of every parameter."""
    x = x.detach().clone().requires_grad_(True)
    if which == "packed y":
        y, hidden = module(pack_padded_sequence(x, [x.shape[1]] + [1] * (x.shape[1] - 1)))
        named = {"y": y.data}
    elif name.endswith("Cell"):
        result = module(x)
        named = dict(zip("hc", outputs(result)))
    else:
        y, hidden = module(x)
        named = dict(zip("yhc", [y, *outputs(hidden)]))
    named["y" if which == "packed y" else which].mul_(2)
    weighted_sum(list(named.values())).backward()
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")  # torch's own
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name,kwargs,which", IN_PLACE, ids=lambda v: case_id(v) if isinstance(v, dict) else v)
def test_output_changed_in_place_before_backward_like_torch(name, kwargs, which, dtype):
    """torch's GRU, RNN and most LSTMs keep no reference to the outputs they return, so doubling
    y in place before backward works and gives the changed graph's gradients; fastrnn once
    raised autograd's version error for all of them. Where torch saves its output (oneDNN's
    float32 LSTM, an Elman cell's h) it raises that error, and so does fastrnn."""
    reference, ours = make_pair(name, kwargs, dtype)
    x = input_for(name, kwargs, dtype)
    try:
        expected = backward_after_changing(reference, name, x, which)
    except RuntimeError as e:
        assert VERSION_ERROR in str(e)
        with pytest.raises(RuntimeError, match=re.escape(VERSION_ERROR)):
            backward_after_changing(ours, name, x, which)
        return
    for k, (a, b) in enumerate(zip(backward_after_changing(ours, name, x, which), expected)):
        assert_close(a, b, dtype, f"gradient {k}")


def test_in_place_change_of_an_input_still_raises():
    """Only the returned output is kept aside: an input the backward reads stays version-checked."""
    _, ours = make_pair("GRU", {})
    h0 = torch.zeros(1, BATCH, HIDDEN_SIZE, dtype=torch.float64, requires_grad=True).clone()
    y, _ = ours(input_for("GRU", {}), h0)
    h0.add_(1)
    with pytest.raises(RuntimeError, match=re.escape(VERSION_ERROR)):
        y.sum().backward()


# ---- Meta tensors -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")  # torch's own
@pytest.mark.parametrize("grad_mode", [False, True])
@pytest.mark.parametrize("name,kwargs", LAYERS + CELLS, ids=case_id)
def test_meta_tensors_give_torchs_shapes(name, kwargs, grad_mode):
    """A meta module without grad once raised ValueError (rnn_buffer_sizes: device 'meta'): the
    direct inference call ran on meta tensors; they now take the ops' fake kernels."""
    reference, ours = (m.to("meta") for m in make_pair(name, kwargs, torch.float32))
    x = input_for(name, kwargs, torch.float32).to("meta")
    with torch.set_grad_enabled(grad_mode):
        got, expected = outputs(ours(x)), outputs(reference(x))
    assert [(t.shape, t.dtype, t.device, t.requires_grad) for t in got] == \
           [(t.shape, t.dtype, t.device, t.requires_grad) for t in expected]


# ---- torch.jit ------------------------------------------------------------------------------------
# torch 2.13 deprecates torch.jit (DeprecationWarning), and torch.nn's own layers give the same
# TracerWarnings from the same shape checks (sizes become constants of the trace): both ignored.


@pytest.mark.parametrize("grad_mode", [False, True])
@pytest.mark.parametrize("name,kwargs", LAYERS + CELLS, ids=case_id)
def test_jit_trace_matches_eager(name, kwargs, grad_mode):
    """A trace once held the output allocation but not the kernel (the direct inference call
    bypassed the dispatcher): its results were uninitialised memory. While tracing, calls now go
    through the ops, which the trace records; the trace's training flag follows requires_grad,
    not the grad mode, so one trace serves both and its backward is right."""
    _, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with torch.set_grad_enabled(grad_mode):
            traced = torch.jit.trace(ours, (x,))
        assert "fastrnn::rnn_" in str(traced.inlined_graph)
        other = input_for(name, kwargs, steps=STEPS + 2, batch=BATCH + 1, seed=4)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                for a, b in zip(outputs(traced(other)), outputs(ours(other))):
                    assert_close(a, b, torch.float64, "traced output")
        got = torch.autograd.grad(weighted_sum(outputs(traced(other))), list(ours.parameters()))
    expected = torch.autograd.grad(weighted_sum(outputs(ours(other))), list(ours.parameters()))
    for a, b in zip(got, expected):
        assert_close(a, b, torch.float64, "traced gradient")


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_jit_script_refuses_with_the_alternatives(name):
    """torch.jit.script once failed deep inside TorchScript ("Module 'LSTM' has no attribute
    '_parameters'"); now one error names what works."""
    module = getattr(fnn, name)(INPUT_SIZE, HIDDEN_SIZE)
    message = (f"fastrnn.nn.{name} cannot be compiled by torch.jit.script: its forward calls fastrnn's kernels "
               f"from Python, which TorchScript cannot compile. Use torch.jit.trace, torch.compile or "
               f"torch.export instead")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        for target in (module, torch.nn.Sequential(module)):
            with pytest.raises(RuntimeError, match=re.escape(message)):
                torch.jit.script(target)


# ---- torch.compile and torch.export --------------------------------------------------------------


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(2 * HIDDEN_SIZE, 2).double()

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_compile_fullgraph_refuses_layers_like_torch():
    """Dynamo refuses any instance of torch.nn.RNN, GRU or LSTM unless
    torch._dynamo.config.allow_rnn (VariableBuilder.wrap_module checks isinstance, with no
    per-class hook), and fastrnn's layers are such instances (they subclass torch.nn's)."""
    errors = []
    for module in make_pair("LSTM", {"bidirectional": True}):
        torch._dynamo.reset()
        with pytest.raises(torch._dynamo.exc.Unsupported) as caught:
            torch.compile(Model(module), fullgraph=True, backend="aot_eager")(input_for("LSTM", {}))
        errors.append(str(caught.value).split("\n")[0])
    assert errors[0] == errors[1] == "Attempted to wrap RNN, GRU, or LSTM"


@pytest.mark.parametrize("name,kwargs", [("LSTM", {"bidirectional": True}), ("GRU", {"bidirectional": True}),
                                         ("RNN", {"bidirectional": True, "nonlinearity": "relu"})], ids=case_id)
def test_compile_fullgraph_with_allow_rnn_matches_eager(name, kwargs):
    torch._dynamo.reset()
    _, ours = make_pair(name, kwargs)
    model = Model(ours)
    x = input_for(name, kwargs)
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        results = [compiled(x.clone().requires_grad_(True)), model(x.clone().requires_grad_(True))]
    assert_close(results[0], results[1], torch.float64, "output")
    grads = [torch.autograd.grad(r.pow(2).sum(), list(model.parameters())) for r in results]
    for a, b in zip(*grads):
        assert_close(a, b, torch.float64, "gradient")


@pytest.mark.filterwarnings("ignore:The tensor attributes self._flat_weights:UserWarning")  # torch.nn's own too
@pytest.mark.parametrize("name,kwargs", LAYERS, ids=case_id)
def test_export_with_a_dynamic_length_matches_eager(name, kwargs):
    _, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs)
    time = 1 if kwargs.get("batch_first") else 0
    exported = torch.export.export(ours, (x,), dynamic_shapes=({time: torch.export.Dim("T")},))
    other = input_for(name, kwargs, steps=STEPS + 3, seed=6)
    for a, b in zip(outputs(exported.module()(other)), outputs(ours(other))):
        assert_close(a, b, torch.float64, "exported output")


# ---- The eager paths stay the fast ones -----------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", [("LSTM", {}), ("GRU", {"bidirectional": True}), ("GRUCell", {})],
                         ids=case_id)
def test_plain_eager_calls_skip_the_dispatcher(name, kwargs, monkeypatch):
    """Plain CPU tensors keep the direct calls (inference) and autograd.Functions (training):
    the ops' dispatch costs a batch-1 call more than its arithmetic."""

    def refuse(*args, **kwargs):
        raise AssertionError("a plain eager call went through the custom op")

    for op in ("rnn_forward", "rnn_backward", "rnn_bidirectional_forward", "rnn_bidirectional_backward"):
        monkeypatch.setattr(ops.rnn, op, refuse)
    _, ours = make_pair(name, kwargs)
    x = input_for(name, kwargs).requires_grad_(True)
    with torch.no_grad():
        ours(x)
    weighted_sum(outputs(ours(x))).backward()
