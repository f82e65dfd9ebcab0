"""fastrnn.optim's CUDA kernels against torch.optim on the same GPU (skipped without one)."""

import pytest
import torch

import fastrnn.optim as fo

from test_optim import CONFIGS, SHAPES, config_id

pytestmark = pytest.mark.cuda

STEPS = 27
# Half-precision parameters: both sides do float32 math and round each result to the parameter's
# dtype, but torch's kernels order their operations differently, so a few units in the last place.
TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6),
             torch.bfloat16: dict(rtol=3e-2, atol=3e-2), torch.float16: dict(rtol=5e-3, atol=5e-3)}


def twins(dtype, device="cuda"):
    gen = torch.Generator().manual_seed(0)
    base = [torch.randn(s, generator=gen).to(device, dtype) for s in SHAPES + [(3000, 77)]]
    return [p.clone().requires_grad_() for p in base], [p.clone().requires_grad_() for p in base]


def run(name, kwargs, dtype, ours_kwargs=None, reference_grads=None, steps=STEPS, device="cuda"):
    """torch.optim.<name> (the reference) and fastrnn.optim.<name> on twin parameters on device,
    the same gradients (none for the first parameter every third step) for `steps` steps."""
    ref_params, our_params = twins(dtype, device)
    ref = getattr(torch.optim, name)(ref_params, **kwargs)
    ours = getattr(fo, name)(our_params, **kwargs, **(ours_kwargs or {}))
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        for k, (a, b) in enumerate(zip(ref_params, our_params)):
            if k == 0 and step % 3 == 1:
                a.grad = b.grad = None
                continue
            g = torch.randn(a.shape, generator=gen).to(device, dtype)
            a.grad, b.grad = g.clone(), g.clone()
        if reference_grads is not None:
            reference_grads(ref_params)
        ref.step()
        with _sync_debug("error", device):
            ours.step()
    return ref, ours, ref_params, our_params


class _sync_debug:
    """Makes any host synchronisation inside the block an error (on a CUDA device)."""

    def __init__(self, mode, device="cuda"):
        self.mode, self.cuda = mode, torch.device(device).type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(self.mode)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.set_sync_debug_mode(self.previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_steps_match_torch_on_cuda(config, dtype):
    name, kwargs = config
    assert_twins_match(*run(name, kwargs, dtype), dtype)


def assert_twins_match(ref, ours, ref_params, our_params, dtype):
    """Parameters and every state tensor of torch's optimizer (the reference) matched."""
    for a, b in zip(our_params, ref_params):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])
    for a, b in zip(our_params, ref_params):
        assert ref.state[b].keys() == ours.state[a].keys()
        for key, value in ref.state[b].items():
            other = ours.state[a][key]
            assert other.device == value.device, key
            torch.testing.assert_close(other, value, **TOLERANCE[dtype])


# eps 1e-3, not the default 1e-8: 1e-8 rounds to 0 in float16 (smallest subnormal 6e-8), and so
# does (1 - beta2) g^2 for |g| < 8e-3, so torch's float16 step divides by zero there (NaN/inf on
# the CPU already), while fastrnn's float32 math divides by 1e-8: no common answer to compare.
HALF_CONFIGS = [("Adam", dict(lr=0.01, eps=1e-3)), ("AdamW", dict(lr=0.01, amsgrad=True, eps=1e-3)),
                ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, eps=1e-3)),
                ("Adagrad", dict(lr=0.1, lr_decay=0.01))]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,kwargs", HALF_CONFIGS)
def test_half_precision_parameters(name, kwargs, dtype):
    ref, ours, ref_params, our_params = run(name, kwargs, dtype, steps=10)
    for a, b in zip(our_params, ref_params):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


def clip(params):
    """The reference's clipping, before torch.optim's step."""
    torch.nn.utils.clip_grad_norm_(params, 0.5)


def test_clipping_inside_the_step_reads_the_norm_on_the_device():
    ref, ours, ref_params, our_params = run("Adam", dict(lr=0.01), torch.float32, ours_kwargs=dict(max_grad_norm=0.5),
                                            reference_grads=clip)
    for a, b in zip(our_params, ref_params):
        torch.testing.assert_close(a, b, **TOLERANCE[torch.float32])


def test_runs_on_the_current_stream():
    ref_params, our_params = twins(torch.float32)
    ours = fo.Adam(our_params, lr=0.01)
    ref = torch.optim.Adam(ref_params, lr=0.01)
    for a, b in zip(ref_params, our_params):
        a.grad = torch.ones_like(a)
        b.grad = torch.ones_like(b)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ours.step()
        ref.step()
    torch.cuda.current_stream().wait_stream(stream)
    for a, b in zip(our_params, ref_params):
        torch.testing.assert_close(a, b)
