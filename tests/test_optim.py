"""fastrnn.optim against torch.optim: updates, state, state_dict interchange, errors, additions."""

import copy
import itertools

import pytest
import torch

import fastrnn.optim as fo

# Odd shapes, a scalar, and one parameter that gets no gradient on some steps.
SHAPES = [(7,), (13, 5), (), (37, 3, 2), (1,)]
STEPS = 27
TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6)}


def grid(**options):
    keys = list(options)
    return [dict(zip(keys, values)) for values in itertools.product(*(options[k] for k in keys))]


CONFIGS = (
    [("SGD", c) for c in grid(lr=[0.05], momentum=[0.0, 0.9], dampening=[0.0, 0.4], nesterov=[False, True],
                              weight_decay=[0.0, 0.05], maximize=[False, True])
     if not (c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0))]
    + [(name, c) for name in ("Adam", "AdamW")
       for c in grid(lr=[0.01], betas=[(0.9, 0.999), (0.3, 0.5)], weight_decay=[0.0, 0.1], amsgrad=[False, True],
                     maximize=[False, True])]
    + [("RMSprop", c) for c in grid(lr=[0.01], alpha=[0.99, 0.3], weight_decay=[0.0, 0.1], momentum=[0.0, 0.5],
                                    centered=[False, True], maximize=[False, True])]
    + [("Adagrad", c) for c in grid(lr=[0.1], lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1],
                                    initial_accumulator_value=[0.0, 0.3], maximize=[False, True])]
)


def config_id(config):
    name, kwargs = config
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def twin_params(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    return ([p.clone().requires_grad_() for p in base], [p.clone().requires_grad_() for p in base])


def set_grads(params_a, params_b, step, gen):
    """The same random gradients for both lists; the last parameter skips every third step."""
    for k, (a, b) in enumerate(zip(params_a, params_b)):
        if k == len(params_a) - 1 and step % 3 == 1:
            a.grad = b.grad = None
            continue
        g = torch.randn(a.shape, generator=gen, dtype=a.dtype)
        a.grad, b.grad = g.clone(), g.clone()


def run_twins(name, kwargs, dtype, steps=STEPS, ours_kwargs=None, reference_grads=None):
    ref_params, our_params = twin_params(dtype)
    ref = getattr(torch.optim, name)(ref_params, **kwargs)
    ours = getattr(fo, name)(our_params, **{**kwargs, **(ours_kwargs or {})})
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        set_grads(ref_params, our_params, step, gen)
        if reference_grads is not None:
            reference_grads(ref_params)
        ref.step()
        ours.step()
    return ref, ours, ref_params, our_params


def assert_same_params(ours, ref, dtype):
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_steps_match_torch(config, dtype, isa):
    name, kwargs = config
    ref, ours, ref_params, our_params = run_twins(name, kwargs, dtype)
    assert_same_params(our_params, ref_params, dtype)
    # The state, key by key, in torch's format.
    for p_ours, p_ref in zip(our_params, ref_params):
        s_ours, s_ref = ours.state[p_ours], ref.state[p_ref]
        assert set(s_ours) == set(s_ref)
        for key in s_ref:
            if isinstance(s_ref[key], torch.Tensor):
                assert s_ours[key].dtype == s_ref[key].dtype and s_ours[key].shape == s_ref[key].shape, key
                torch.testing.assert_close(s_ours[key], s_ref[key], **TOLERANCE[dtype])


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_param_groups_with_their_own_hyperparameters(name):
    extra = {"SGD": {"momentum": 0.9}, "RMSprop": {"momentum": 0.3}}.get(name, {})
    results = []
    for module in (torch.optim, fo):
        params, _ = twin_params(torch.float64, seed=3)
        opt = getattr(module, name)([{"params": params[:2], "lr": 0.05, **extra},
                                     {"params": params[2:], "lr": 0.01, "weight_decay": 0.2}], lr=0.02)
        gen = torch.Generator().manual_seed(4)
        for _ in range(10):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        results.append(params)
    assert_same_params(results[1], results[0], torch.float64)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_state_dict_interchange(name):
    kwargs = {"SGD": dict(lr=0.05, momentum=0.9), "RMSprop": dict(momentum=0.5, centered=True),
              "Adam": dict(amsgrad=True)}.get(name, {})
    # Train with torch, continue with fastrnn from torch's state dict, and the other way round:
    # both continuations equal torch's uninterrupted run.
    def train(opt, params, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()

    full, _ = twin_params(torch.float64)
    reference = getattr(torch.optim, name)(full, **kwargs)
    train(reference, full, 8, 10)
    train(reference, full, 8, 11)
    for first, second in ((torch.optim, fo), (fo, torch.optim)):
        params, _ = twin_params(torch.float64)
        opt = getattr(first, name)(params, **kwargs)
        train(opt, params, 8, 10)
        saved = copy.deepcopy(opt.state_dict())
        resumed = getattr(second, name)(params, **kwargs)
        resumed.load_state_dict(saved)
        train(resumed, params, 8, 11)
        assert_same_params(params, full, torch.float64)
    # Our own round trip keeps the additions.
    params, _ = twin_params(torch.float64)
    opt = getattr(fo, name)(params, **kwargs, l1_decay=0.01, max_grad_norm=2.0)
    again = getattr(fo, name)(params, **kwargs)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["l1_decay"] == 0.01 and again.param_groups[0]["max_grad_norm"] == 2.0


def test_zero_grad_and_parameters_without_gradients():
    params, _ = twin_params(torch.float32)
    opt = fo.Adam(params)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert set(opt.state) == {params[0]}  # no state for parameters that never had a gradient
    opt.zero_grad()
    assert params[0].grad is None
    opt.zero_grad(set_to_none=False)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_l1_decay_adds_the_sign_of_the_parameter(name):
    def add_l1(params):
        for p in params:
            if p.grad is not None:
                p.grad = p.grad + 0.03 * torch.sign(p)

    _, _, ref_params, our_params = run_twins(name, dict(lr=0.01), torch.float64, ours_kwargs=dict(l1_decay=0.03),
                                             reference_grads=add_l1)
    assert_same_params(our_params, ref_params, torch.float64)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_l1_decay_under_maximize_pulls_toward_zero_on_both_paths(name):
    # A transposed parameter is not contiguous, so its step is torch's own with the L1 term
    # added to a temporary gradient; the contiguous twin takes the fused kernel. Under maximize
    # the L1 term, like weight_decay, still shrinks the parameter (maximize negates the loss's
    # gradient only). Zero gradients: the L1 term alone moves the parameters.
    torch.manual_seed(3)
    values = torch.randn(5, 3, dtype=torch.float64).sign() * (1 + torch.rand(5, 3, dtype=torch.float64))
    fused = torch.nn.Parameter(values.clone())
    fallback = torch.nn.Parameter(values.t().contiguous().t())
    assert not fallback.is_contiguous()
    for p in (fused, fallback):
        p.grad = torch.zeros_like(p)
        getattr(fo, name)([p], lr=0.01, maximize=True, l1_decay=0.5).step()  # steps well below |p|
    assert torch.equal(fused.detach(), fallback.detach())
    assert (fused.detach().abs() < values.abs()).all()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_max_grad_norm_clips_inside_the_step(name):
    def clip(params):
        torch.nn.utils.clip_grad_norm_(params, 1.5)

    _, ours, ref_params, our_params = run_twins(name, dict(lr=0.01), torch.float64,
                                                ours_kwargs=dict(max_grad_norm=1.5), reference_grads=clip)
    assert_same_params(our_params, ref_params, torch.float64)
    # The gradients themselves are left unclipped.
    grads = [p.grad.clone() for p in our_params if p.grad is not None]
    ours.step()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, [p for p in our_params if p.grad is not None]))


@pytest.mark.parametrize("name,kwargs", [("Adam", dict(differentiable=False)), ("SGD", dict(momentum=0.9)),
                                         ("RMSprop", dict()), ("Adagrad", dict())])
def test_parameters_the_kernels_do_not_take_fall_back_to_torch(name, kwargs):
    # float16 and non-contiguous parameters run torch's own step, with the same results.
    results = []
    for module in (torch.optim, fo):
        torch.manual_seed(0)
        params = [torch.randn(5, 4, dtype=torch.float16).requires_grad_(),
                  torch.randn(3, 6).t().detach().requires_grad_()]  # the second is not contiguous
        opt = getattr(module, name)(params, **kwargs, lr=0.01)
        gen = torch.Generator().manual_seed(5)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            opt.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning")  # torch's own
def test_sparse_gradients_as_in_torch():
    # SGD and Adagrad accept them (through torch's code); Adam and RMSprop refuse with torch's error.
    emb_ref, emb_ours = torch.nn.Embedding(10, 3, sparse=True), torch.nn.Embedding(10, 3, sparse=True)
    emb_ours.load_state_dict(emb_ref.state_dict())
    for name in ("SGD", "Adagrad"):
        for emb, module in ((emb_ref, torch.optim), (emb_ours, fo)):
            opt = getattr(module, name)(emb.parameters(), lr=0.1)
            emb(torch.tensor([1, 2, 2])).sum().backward()
            opt.step()
            opt.zero_grad()
        torch.testing.assert_close(emb_ours.weight, emb_ref.weight)
    for name in ("Adam", "AdamW", "RMSprop"):
        emb_ours.zero_grad()
        emb_ours(torch.tensor([1])).sum().backward()
        with pytest.raises(RuntimeError) as expected:
            getattr(torch.optim, name)(emb_ours.parameters()).step()
        with pytest.raises(RuntimeError) as got:
            getattr(fo, name)(emb_ours.parameters()).step()
        assert str(got.value) == str(expected.value)


CONSTRUCTOR_ERRORS = [
    ("SGD", dict(lr=-1)), ("SGD", dict(momentum=-0.5)), ("SGD", dict(weight_decay=-1)),
    ("SGD", dict(nesterov=True)), ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ("Adam", dict(lr=-1)), ("Adam", dict(eps=-1)), ("Adam", dict(betas=(1.0, 0.9))), ("Adam", dict(betas=(0.9, -1))),
    ("Adam", dict(weight_decay=-1)), ("AdamW", dict(lr=-0.1)), ("AdamW", dict(betas=(0.9, 1.5))),
    ("RMSprop", dict(lr=-1)), ("RMSprop", dict(eps=-1)), ("RMSprop", dict(momentum=-1)), ("RMSprop", dict(alpha=-1)),
    ("RMSprop", dict(weight_decay=-1)),
    ("Adagrad", dict(lr=-1)), ("Adagrad", dict(lr_decay=-1)), ("Adagrad", dict(weight_decay=-1)),
    ("Adagrad", dict(initial_accumulator_value=-1)), ("Adagrad", dict(eps=-1)),
]


@pytest.mark.parametrize("name,kwargs", CONSTRUCTOR_ERRORS)
def test_constructor_errors_match_torch(name, kwargs):
    params = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(Exception) as expected:
        getattr(torch.optim, name)(params, **kwargs)
    with pytest.raises(type(expected.value)) as got:
        getattr(fo, name)(params, **kwargs)
    assert str(got.value) == str(expected.value)


def test_non_leaf_parameters_and_bad_additions_are_refused():
    a = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        fo.Adam([a * 2])
    with pytest.raises(ValueError, match="Invalid l1_decay value: -1"):
        fo.SGD([a], l1_decay=-1)
    with pytest.raises(ValueError, match="Invalid max_grad_norm value: 0"):
        fo.RMSprop([a], max_grad_norm=0)


def test_drop_in_types_and_hooks():
    params = [torch.zeros(3, requires_grad=True)]
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        assert isinstance(getattr(fo, name)(params), getattr(torch.optim, name))
    opt = fo.Adam(params)
    calls = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    params[0].grad = torch.ones(3)
    opt.step()
    assert calls == ["pre", "post"]
    assert opt.step(lambda: 7.0) == 7.0  # a closure's loss comes back
