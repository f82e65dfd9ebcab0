"""fastrnn.optim against torch.optim on unusual inputs: state that does not fit its parameter,
options switched on after a step, zero-element parameters, GradScaler's fused-step contract,
and state_dict contents key by key.
torch is the oracle: the same results, or the same exception type and message."""

import copy
import itertools
import math
import re

import pytest
import torch

import fastrnn.optim as fo

DTYPES = [torch.float64, torch.float32]
TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6)}
OUR_ADDITIONS = ("l1_decay", "max_grad_norm")

# Configurations that between them use every state tensor of every optimizer.
FULL_STATE = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2)),
]


def config_id(config):
    name, kwargs = config
    return "-".join([name] + [f"{k}={v}" for k, v in kwargs.items()])


def expected_error(scenario):
    """What torch.optim raises in this scenario."""
    with pytest.raises(Exception) as info:
        scenario(torch.optim)
    return info.value


def assert_raises_like(expected, scenario):
    """Our classes raise exactly torch's exception: the same type and message."""
    with pytest.raises(type(expected), match=re.escape(str(expected))) as info:
        scenario(fo)
    assert type(info.value) is type(expected)


def outcome(module, scenario, kept):
    """Runs the scenario; returns the exception it raised, or None. `kept` receives the
    optimizer and parameters, so that their state can be compared after an error too."""
    try:
        scenario(module, kept)
    except Exception as error:  # noqa: BLE001 - any exception is compared with torch's
        return error
    return None


def assert_same_params(ours, ref, dtype):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOLERANCE[dtype], equal_nan=True)


def assert_same_state_dict(ours, ref, dtype):
    """state_dict() key by key: the same parameters with state, the same keys, and tensors of
    the same type, dtype, shape, device and values; param_groups equal but for our additions."""
    a, b = ours.state_dict(), ref.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for index, expected in b["state"].items():
        got = a["state"][index]
        assert got.keys() == expected.keys(), index
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert type(got[key]) is torch.Tensor, (index, key)
                assert (got[key].dtype, got[key].shape, got[key].device) == (value.dtype, value.shape, value.device), \
                    (index, key)
                torch.testing.assert_close(got[key], value, **TOLERANCE[dtype], equal_nan=True)
            else:
                assert got[key] == value, (index, key)
    def torchs_keys(groups):
        return [{k: v for k, v in g.items() if k not in OUR_ADDITIONS} for g in groups]

    assert torchs_keys(a["param_groups"]) == torchs_keys(b["param_groups"])


def compare_scenario(scenario, dtype):
    """Runs the scenario with torch.optim and fastrnn.optim: the same exception (type and
    message) or none, and the same parameters and state afterwards."""
    ref_kept, our_kept = {}, {}
    ref_error = outcome(torch.optim, scenario, ref_kept)
    our_error = outcome(fo, scenario, our_kept)
    assert type(our_error) is type(ref_error), (our_error, ref_error)
    if ref_error is not None:
        assert str(our_error) == str(ref_error)
    assert_same_params(our_kept["params"], ref_kept["params"], dtype)
    assert_same_state_dict(our_kept["opt"], ref_kept["opt"], dtype)


def random_grads(params, gen):
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def final_step(opt, params, gen, kept):
    """A scenario's last step, on fresh gradients; kept (when given) records what it ran on first,
    so that a step that raises still leaves its optimizer and parameters to compare."""
    random_grads(params, gen)
    if kept is not None:
        kept.update(opt=opt, params=params)
    opt.step()


# --- state that does not fit its parameter ---------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shapes", [((2, 6), (3, 4)), ((3, 7), (7, 3)), ((5,), (7,)), ((1, 7), (5, 7)),
                                    ((5, 7), (7,))], ids=str)
@pytest.mark.parametrize("config", FULL_STATE, ids=config_id)
def test_state_of_another_shape_is_refused_as_torch_does(config, shapes, dtype):
    """A state dict saved for a parameter of another shape: torch's elementwise ops raise (the
    fused step paired elements in flat order, or read past the end). The parameter before it,
    whose state fits, is updated first, as in torch."""
    name, kwargs = config
    saved_shape, new_shape = shapes

    def scenario(module, kept=None):
        gen = torch.Generator().manual_seed(0)
        source = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((13,), saved_shape)]
        first = getattr(module, name)(source, **kwargs)
        for _ in range(2):
            random_grads(source, gen)
            first.step()
        target = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((13,), new_shape)]
        second = getattr(module, name)(target, **kwargs)
        second.load_state_dict(first.state_dict())
        final_step(second, target, gen, kept)

    assert_raises_like(expected_error(scenario), scenario)
    compare_scenario(scenario, dtype)


def other_dtype(dtype):
    return torch.float32 if dtype == torch.float64 else torch.float64


# Each edit is applied to the state of the second parameter after a step: torch either copes
# (then the steps must agree) or raises (then the error must be torch's).
STATE_EDITS = {
    "dtype": lambda state, p: state.update(
        {k: v.to(other_dtype(p.dtype)) for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor)}),
    "non-contiguous": lambda state, p: state.update(
        {k: v.t().contiguous().t() for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor)}),
    "integer step": lambda state, p: state.update({k: v.long() for k, v in state.items() if k == "step"}),
    "float64 step": lambda state, p: state.update({k: v.double() for k, v in state.items() if k == "step"}),
    "step missing": lambda state, p: state.pop("step", None),
    "one row": lambda state, p: state.update(
        {k: v[:1].clone() for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor)}),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("edit", list(STATE_EDITS))
@pytest.mark.parametrize("config", FULL_STATE, ids=config_id)
def test_state_edited_by_hand_behaves_as_in_torch(config, edit, dtype):
    name, kwargs = config

    def scenario(module, kept):
        gen = torch.Generator().manual_seed(1)
        params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (5, 3), (13,))]
        opt = getattr(module, name)(params, **kwargs)
        kept.update(opt=opt, params=params)
        random_grads(params, gen)
        opt.step()
        STATE_EDITS[edit](opt.state[params[1]], params[1])
        for _ in range(2):
            random_grads(params, gen)
            opt.step()

    compare_scenario(scenario, dtype)


# --- options switched on after a step --------------------------------------------------------

SWITCHES = [("Adam", dict(amsgrad=True)), ("AdamW", dict(amsgrad=True)), ("RMSprop", dict(centered=True)),
            ("RMSprop", dict(momentum=0.5)), ("RMSprop", dict(momentum=0.5, centered=True))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("switch", SWITCHES, ids=config_id)
def test_state_switched_on_after_a_step_raises_torchs_key_error(switch, dtype):
    name, options = switch

    def scenario(module, kept=None):
        gen = torch.Generator().manual_seed(2)
        params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (3, 5))]
        opt = getattr(module, name)(params, lr=0.01)
        random_grads(params, gen)
        opt.step()
        opt.param_groups[0].update(options)
        final_step(opt, params, gen, kept)

    assert_raises_like(expected_error(scenario), scenario)
    compare_scenario(scenario, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("switch", [("SGD", dict(momentum=0.9)), ("SGD", dict(momentum=0.9, nesterov=True)),
                                    ("Adam", dict(amsgrad=False)), ("RMSprop", dict(momentum=0.0))],
                         ids=config_id)
def test_options_switched_after_a_step_that_torch_accepts(switch, dtype):
    name, options = switch
    start = dict(amsgrad=True) if name == "Adam" else dict(momentum=0.5) if name == "RMSprop" else {}

    def scenario(module, kept):
        gen = torch.Generator().manual_seed(3)
        params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (3, 5))]
        opt = getattr(module, name)(params, lr=0.01, **start)
        kept.update(opt=opt, params=params)
        random_grads(params, gen)
        opt.step()
        opt.param_groups[0].update(options)
        for _ in range(3):
            random_grads(params, gen)
            opt.step()

    compare_scenario(scenario, dtype)


# --- zero-element parameters -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
@pytest.mark.parametrize("config", FULL_STATE + [("SGD", dict(lr=0.1))], ids=config_id)
def test_zero_element_parameters_step_as_in_torch(config, max_grad_norm, dtype):
    """Linear(0, 4)'s weight and the like: no element to update, but the state and step
    counters torch keeps. With max_grad_norm, the reference clips with torch first."""
    name, kwargs = config
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 0, generator=gen, dtype=dtype)
    results = []
    for module in (torch.optim, fo):
        weight = torch.zeros(4, 0, dtype=dtype, requires_grad=True)
        bias = torch.linspace(-1, 1, 4, dtype=dtype).requires_grad_()
        empty = torch.zeros(0, 3, 5, dtype=dtype, requires_grad=True)
        params = [weight, empty, bias]
        extra = {} if module is torch.optim or max_grad_norm is None else dict(max_grad_norm=max_grad_norm)
        opt = getattr(module, name)(params, **kwargs, **extra)
        for step in range(3):
            opt.zero_grad()
            loss = (torch.nn.functional.linear(x, weight, bias) * (step + 1)).sum() + empty.sum()
            loss.backward()
            if module is torch.optim and max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
        results.append((opt, params))
    (ref, ref_params), (ours, our_params) = results
    assert_same_params(our_params, ref_params, dtype)
    assert_same_state_dict(ours, ref, dtype)


# --- max_grad_norm ---------------------------------------------------------------------------

@pytest.mark.parametrize("float16", [False, True], ids=["fused", "float16-torch-step"])
@pytest.mark.parametrize("overflow", [False, True])
@pytest.mark.parametrize("config", FULL_STATE, ids=config_id)
def test_max_grad_norm_clips_as_clip_grad_norm_does(config, overflow, float16):
    """float32 and float64 parameters in one group: the norm is clip_grad_norm_'s (float64,
    from float32 norms rounded as torch keeps them), and a float32 gradient whose squares
    overflow float32 gives an infinite norm, so clipped gradients of zero. With a float16
    parameter the group runs torch's step on gradients clipped as clip_grad_norm_ clips them."""
    name, kwargs = config
    results = []
    for module in (torch.optim, fo):
        gen = torch.Generator().manual_seed(9)
        shapes = [((7,), torch.float32), ((5, 3), torch.float64), ((13,), torch.float32)]
        params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_()
                  for s, dtype in shapes + ([((3, 3), torch.float16)] if float16 else [])]
        extra = {} if module is torch.optim else dict(max_grad_norm=0.5)
        opt = getattr(module, name)(params, **kwargs, **extra)
        for step in range(3):
            random_grads(params, gen)
            if overflow and step == 1:
                params[0].grad[2] = 1e30
            grads = [p.grad.clone() for p in params]
            if module is torch.optim:
                torch.nn.utils.clip_grad_norm_(params, 0.5)
            opt.step()
            if module is fo:  # the step clips without writing the gradients back
                assert all(torch.equal(g, p.grad) for g, p in zip(grads, params))
        results.append((opt, params))
    (ref, ref_params), (ours, our_params) = results
    assert_same_params(our_params, ref_params, torch.float32)
    assert_same_state_dict(ours, ref, torch.float32)


# --- what torch's step does besides the update -----------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_grad_scaler_with_a_fused_step(name, dtype):
    """GradScaler hands a fused optimizer its scale and found_inf instead of unscaling the
    gradients itself: the step must divide by the scale and skip a step with an infinite
    gradient, as torch's fused step does."""
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    results = []
    for module in (torch.optim, fo):
        gen = torch.Generator().manual_seed(5)
        params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (3, 5))]
        opt = getattr(module, name)(params, fused=True, **kwargs)
        scaler = torch.amp.GradScaler("cpu", init_scale=64.0, growth_interval=2)
        for step in range(5):
            opt.zero_grad()
            loss = sum((p * torch.randn(p.shape, generator=gen, dtype=dtype)).sum() for p in params)
            if step == 2:
                loss = loss * math.inf  # an overflowing step: skipped, and the scale backs off
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        results.append((opt, params, scaler.get_scale()))
    (ref, ref_params, ref_scale), (ours, our_params, our_scale) = results
    assert our_scale == ref_scale
    assert_same_params(our_params, ref_params, dtype)
    assert_same_state_dict(ours, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adagrad_group_added_later_starts_from_the_constructors_accumulator(dtype):
    """torch fills a later group's state from self.defaults['initial_accumulator_value'], not
    from the group's own value."""
    results = []
    for module in (torch.optim, fo):
        gen = torch.Generator().manual_seed(6)
        first, later = (torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (5, 3)))
        opt = module.Adagrad([first], lr=0.1, initial_accumulator_value=0.1)
        opt.add_param_group({"params": [later], "initial_accumulator_value": 2.5, "lr": 0.2})
        for _ in range(3):
            random_grads([first, later], gen)
            opt.step()
        results.append((opt, [first, later]))
    (ref, ref_params), (ours, our_params) = results
    assert_same_params(our_params, ref_params, dtype)
    assert_same_state_dict(ours, ref, dtype)


@pytest.mark.parametrize("default_dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("config", [c for c in FULL_STATE if c[0] != "SGD"], ids=config_id)
def test_step_counter_dtype_under_another_default_dtype(config, default_dtype):
    """torch keeps the step counter in float64 under a float64 default dtype, else in float32
    (a float16 or bfloat16 default too)."""
    name, kwargs = config
    results = []
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(default_dtype)
        for module in (torch.optim, fo):
            gen = torch.Generator().manual_seed(10)
            params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_()
                      for s, dtype in (((7,), torch.float32), ((5, 3), torch.float64))]
            opt = getattr(module, name)(params, **kwargs)
            for _ in range(3):
                random_grads(params, gen)
                opt.step()
            results.append((opt, params))
    finally:
        torch.set_default_dtype(previous)
    (ref, ref_params), (ours, our_params) = results
    assert_same_params(our_params, ref_params, torch.float32)
    assert_same_state_dict(ours, ref, torch.float32)


# --- state_dict, key by key ------------------------------------------------------------------

def grid(**options):
    keys = list(options)
    return [dict(zip(keys, values)) for values in itertools.product(*(options[k] for k in keys))]


STATE_CONFIGS = (
    [("SGD", c) for c in grid(lr=[0.05], momentum=[0.0, 0.9], nesterov=[False, True], weight_decay=[0.0, 0.1],
                              maximize=[False, True]) if not (c["nesterov"] and c["momentum"] == 0)]
    + [(name, c) for name in ("Adam", "AdamW") for c in grid(lr=[0.01], amsgrad=[False, True],
                                                               weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("RMSprop", c) for c in grid(lr=[0.01], momentum=[0.0, 0.5], centered=[False, True], weight_decay=[0.0, 0.1],
                                    maximize=[False, True])]
    + [("Adagrad", c) for c in grid(lr=[0.1], lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1], maximize=[False, True])]
)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", STATE_CONFIGS, ids=config_id)
def test_state_dict_matches_torch_key_by_key(config, dtype):
    """After steps (one parameter without a gradient at some of them), and after loading each
    other's state dict and stepping on: torch's keys, dtypes, shapes and values."""
    name, kwargs = config

    def train(opt, params, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        for step in range(steps):
            random_grads(params, gen)
            if step % 2 == 0:
                params[-1].grad = None
            opt.step()

    def fresh_params():
        gen = torch.Generator().manual_seed(7)
        return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in ((7,), (5, 3), (), (13,))]

    ref_params, our_params = fresh_params(), fresh_params()
    ref = getattr(torch.optim, name)(ref_params, **kwargs)
    ours = getattr(fo, name)(our_params, **kwargs)
    train(ref, ref_params, 5, 8)
    train(ours, our_params, 5, 8)
    assert_same_params(our_params, ref_params, dtype)
    assert_same_state_dict(ours, ref, dtype)
    # Each continues from the other's state dict.
    ref_next = getattr(torch.optim, name)(ref_params, **kwargs)
    ref_next.load_state_dict(copy.deepcopy(ours.state_dict()))
    our_next = getattr(fo, name)(our_params, **kwargs)
    our_next.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert_same_state_dict(our_next, ref_next, dtype)
    train(ref_next, ref_params, 4, 9)
    train(our_next, our_params, 4, 9)
    assert_same_params(our_params, ref_params, dtype)
    assert_same_state_dict(our_next, ref_next, dtype)


def test_momentum_free_sgd_keeps_no_state():
    ref_params, our_params = [torch.ones(3, requires_grad=True)], [torch.ones(3, requires_grad=True)]
    for params, module in ((ref_params, torch.optim), (our_params, fo)):
        params[0].grad = torch.full((3,), 0.5)
        opt = module.SGD(params, lr=0.1)
        opt.step()
        assert opt.state_dict()["state"] == {}
        assert len(opt.state) == 0


def test_the_kernel_refuses_state_of_another_shape():
    """The core's own check, for callers of _C below the Python classes."""
    from torch.utils.dlpack import to_dlpack

    from fastrnn import _C

    p, g = torch.zeros(3, 4), torch.ones(3, 4)
    for state in (torch.zeros(2, 6), torch.zeros(12), torch.zeros(5)):
        with pytest.raises(RuntimeError, match=re.escape(f"optimizer_step: state has shape {tuple(state.shape)} "
                                                         "but its parameter has shape (3, 4)")):
            _C.optimizer_step(dict(kind=0, lr=0.1, momentum=0.9),
                              [dict(param=to_dlpack(p), grad=to_dlpack(g), state0=to_dlpack(state))])
    with pytest.raises(RuntimeError, match=re.escape("optimizer_step: grad has shape (4, 3) but its parameter has "
                                                     "shape (3, 4)")):
        _C.optimizer_step(dict(kind=0, lr=0.1), [dict(param=to_dlpack(p), grad=to_dlpack(g.reshape(4, 3)))])
    assert torch.equal(p, torch.zeros(3, 4))  # nothing was written
