"""Optimizer-step benchmarks: the parameters of a small LSTM language model, stepped by
fastrnn.optim and by torch.optim in its fastest setting on this machine."""

import torch

import fastrnn
import fastrnn.optim

from timing import compare

OPTIMIZERS = {
    # op: (class name, keyword arguments, bytes moved per parameter element and step, in
    # element sizes: reads + writes of param, grad and state)
    "sgd": ("SGD", dict(lr=0.01, momentum=0.9), 5),
    "adam": ("Adam", dict(lr=1e-3), 7),
    "adamw": ("AdamW", dict(lr=1e-3), 7),
    "adagrad": ("Adagrad", dict(lr=0.01), 5),
    "rmsprop": ("RMSprop", dict(lr=1e-3), 5),
    # Clipping then stepping: torch runs clip_grad_norm_ then Adam; fastrnn folds the clipping
    # into the step (max_grad_norm), which adds one read of the gradient.
    "adam+clip": ("Adam", dict(lr=1e-3), 8),
}
MAX_NORM = 1.0


def language_model_parameters(dtype=torch.float32, device="cpu"):
    """A 2-layer LSTM language model's parameters: embedding 10000 x 512, LSTM 512 -> 512 x 2,
    output 512 -> 10000 (about 14.4M parameters), each with a random gradient."""
    torch.manual_seed(0)
    model = torch.nn.ModuleList([torch.nn.Embedding(10000, 512), torch.nn.LSTM(512, 512, num_layers=2),
                                 torch.nn.Linear(512, 10000)]).to(device=device, dtype=dtype)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _twin(params):
    twin = [p.detach().clone().requires_grad_() for p in params]
    for p, q in zip(twin, params):
        p.grad = q.grad.clone()
    return twin


def _torch_candidates(name):
    """torch's settings to try, fastest first to be picked: fused where torch has it."""
    candidates = [dict(fused=True)] if name in ("SGD", "Adam", "AdamW", "Adagrad") else []
    return candidates + [dict(foreach=True), dict(foreach=False)]


def _torch_step(name, kwargs, params, setting, clip):
    opt = getattr(torch.optim, name)(params, **kwargs, **setting)

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        opt.step()
    return step


def build(op, params, package=fastrnn):
    """`package`'s optimizer for op over a copy of params (with their gradients)."""
    name, kwargs, _ = OPTIMIZERS[op]
    clip = {"max_grad_norm": MAX_NORM} if op.endswith("+clip") else {}
    return getattr(package.optim, name)(_twin(params), **kwargs, **clip)


def run(op, device, budget_s, min_repeats):
    """Times one optimizer op; returns (fastrnn seconds, torch seconds, torch setting, params)."""
    name, kwargs, _ = OPTIMIZERS[op]
    clip = op.endswith("+clip")
    params = language_model_parameters(device=device)
    ours = build(op, params)
    # torch's fastest setting here, by a short trial of each.
    best = None
    for setting in _torch_candidates(name):
        try:
            step = _torch_step(name, kwargs, _twin(params), setting, clip)
            _, seconds = compare(ours.step, step, device, warmup=1, min_repeats=3, max_repeats=3, budget_s=0)
        except (RuntimeError, ValueError):  # a setting this torch build lacks for this device
            continue
        if best is None or seconds < best[1]:
            best = (setting, seconds)
    setting = best[0]
    step = _torch_step(name, kwargs, params, setting, clip)
    ours_s, torch_s = compare(ours.step, step, device, budget_s=budget_s, min_repeats=min_repeats)
    return ours_s, torch_s, setting, sum(p.numel() for p in params)


def bytes_per_step(op, numel, element_size=4):
    return OPTIMIZERS[op][2] * numel * element_size
