"""The references of tests/reference.py agree with torch.nn, so that a mistake in a reference fails
here rather than as a fastrnn bug: the written-out time loop (stacks, directions, projection,
packed lengths), torch's layer ops with explicit weights, and the weights rounded to a dtype."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from conftest import assert_close
from reference import CELLS, layer_ops, make_layer, rounded, stacked_reference, torch_layer, torch_reference

T, B, I, H, P = 5, 4, 3, 6, 2
LENGTHS = [5, 3, 3, 1]
# (torch.nn class, cell, constructor arguments)
MODULES = {"rnn_tanh": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
           "lstm": ("LSTM", {}), "lstm_proj": ("LSTM", {"proj_size": P}), "gru": ("GRU", {})}


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("case", list(MODULES))
def test_time_loop_matches_torch_nn(case, bidirectional, packed):
    name, kwargs = MODULES[case]
    cell = "lstm" if case == "lstm_proj" else case
    torch.manual_seed(CELLS.index(cell))
    module = getattr(torch.nn, name)(I, H, num_layers=2, bidirectional=bidirectional, **kwargs).double()
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = torch.randn(2 * D, B, P if case == "lstm_proj" else H, dtype=torch.float64)
    hx = (h0, torch.randn(2 * D, B, H, dtype=torch.float64)) if cell == "lstm" else h0
    lengths = LENGTHS if packed else None
    y_ref, h_ref, c_ref = stacked_reference(module, cell, x, lengths, hx)
    with torch.no_grad():
        if packed:
            y, states = module(pack_padded_sequence(x, torch.tensor(LENGTHS)), hx)
            y = pad_packed_sequence(y, total_length=T)[0]
        else:
            y, states = module(x, hx)
    h, c = states if cell == "lstm" else (states, None)
    assert_close(y_ref, y, torch.float64, "y")
    assert_close(h_ref, h, torch.float64, "h_n")
    if cell == "lstm":
        assert_close(c_ref, c, torch.float64, "c_n")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_ops_match_torch_nn(cell, reverse):
    layer = torch_layer(cell, I, H, True, torch.float64, seed=3)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=gen)
    h0 = torch.randn(B, H, dtype=torch.float64, generator=gen)
    c0 = torch.randn(B, H, dtype=torch.float64, generator=gen) if cell == "lstm" else None
    with torch.no_grad():
        expected = torch_reference(cell, layer, x, h0, c0, reverse)
        got = layer_ops(cell, x, h0, c0, *layer.parameters(), reverse)
    assert len(got) == (3 if cell == "lstm" else 2)
    for k, (a, e) in enumerate(zip(got, expected)):
        assert_close(a, e, torch.float64, f"output {k}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_make_layer_holds_weights_representable_in_the_dtype(dtype):
    layer = make_layer("lstm", I, H, True, dtype, seed=1, proj_size=P)
    assert layer.proj_size == P
    for p in layer.parameters():
        assert p.dtype == torch.float64 and torch.equal(p, rounded(p, dtype))
    finer = make_layer("gru", I, H, True, torch.float32, seed=1)
    assert any(not torch.equal(p, rounded(p, torch.float16)) for p in finer.parameters())
