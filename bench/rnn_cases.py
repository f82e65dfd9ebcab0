"""The recurrent-layer benchmarks: configurations, FLOP counts, and the two implementations.

fastrnn.nn.X and torch.nn.X are built with the same weights (state_dict), so both run the same
computation: the drop-in comparison a user makes.
"""

from dataclasses import dataclass

import torch

import fastrnn
import fastrnn.nn

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODULE_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


@dataclass(frozen=True)
class Size:
    name: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False

    def label(self):
        extra = (f" L{self.layers}" if self.layers > 1 else "") + (" bidir" if self.bidirectional else "")
        return f"T{self.T} B{self.B} I{self.I} H{self.H}{extra}"


SIZES = {
    # PyTorch's own RNN benchmark default (benchmarks/fastrnns): seq 100, batch 64, 512 -> 512.
    "default": Size("default", 100, 64, 512, 512),
    # Latency: where per-step overhead, not arithmetic, decides.
    "b1_h128": Size("b1_h128", 100, 1, 128, 128),
    "b16_h256": Size("b16_h256", 100, 16, 256, 256),
    "large": Size("large", 100, 64, 1024, 1024),
    "bidir2": Size("bidir2", 100, 64, 512, 512, layers=2, bidirectional=True),
}
QUICK_SIZES = ["default", "b1_h128", "b16_h256"]


def forward_flops(op, size):
    """Multiply-add FLOPs of the products in one forward pass (the element math is ignored)."""
    directions = 2 if size.bidirectional else 1
    total = 0
    for layer in range(size.layers):
        inputs = size.I if layer == 0 else directions * size.H
        total += directions * 2 * size.T * size.B * GATES[op] * size.H * (inputs + size.H)
    return total


def flops(op, mode, size):
    # Backward does twice the forward's products: the input/state gradients and the weight gradients.
    return forward_flops(op, size) * (3 if mode == "train" else 1)


def build(op, mode, size, dtype, device, package=fastrnn):
    """(fastrnn_fn, torch_fn, setup): zero-argument callables running one step of each; `package`
    is the fastrnn to time (bench/ab_builds.py passes another build's copy)."""
    name = MODULE_NAMES[op]
    kwargs = dict(num_layers=size.layers, bidirectional=size.bidirectional)
    torch.manual_seed(0)
    reference = getattr(torch.nn, name)(size.I, size.H, **kwargs).to(device=device, dtype=dtype)
    ours = getattr(package.nn, name)(size.I, size.H, **kwargs).to(device=device, dtype=dtype)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(size.T, size.B, size.I, device=device, dtype=dtype, requires_grad=mode == "train")

    if mode == "inference":
        def step(module):
            def run():
                with torch.no_grad():
                    module(x)
            return run
        setup = None
    else:
        def step(module):
            def run():
                module(x)[0].sum().backward()
            return run

        def setup():
            x.grad = None
            for module in (reference, ours):
                module.zero_grad(set_to_none=True)
    return step(ours), step(reference), setup
