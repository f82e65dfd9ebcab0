"""fastrnn.utils: windows, truncated BPTT, initialisers, penalties and clipping by value."""

import doctest
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastrnn.nn as fnn
import fastrnn.utils as U
from conftest import assert_close


def python_windows(series, length, shift, target_shift):
    """The split written out with a loop: the reference the views must match."""
    inputs, targets = [], []
    t = 0
    while t + target_shift + length <= len(series):
        inputs.append(series[t:t + length])
        targets.append(series[t + target_shift:t + target_shift + length])
        t += shift
    return np.array(inputs), np.array(targets)


def shares_storage(view, base):
    if isinstance(view, torch.Tensor):
        return view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    return np.shares_memory(view, base)


# ---- Windows --------------------------------------------------------------------------------------

def test_splits_by_hand():
    inputs, targets = U.shift_split(np.arange(11), length=4, shift=3, target_shift=2)
    assert inputs.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert targets.tolist() == [[2, 3, 4, 5], [5, 6, 7, 8]]
    inputs, targets = U.reshape_split(np.arange(10), length=3)
    assert inputs.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert targets.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    inputs, targets = U.reshape_split(np.arange(9), length=3, target_shift=0)  # autoencoding: the rest fits
    assert inputs.tolist() == targets.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert U.sliding_windows(np.arange(7), 3, step=2).tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]


@pytest.mark.parametrize("framework", ["numpy", "torch"])
@pytest.mark.parametrize("n, length, shift, target_shift", [(37, 5, 1, 1), (37, 5, 5, 1), (13, 4, 3, 2),
                                                            (97, 7, 2, 0), (9, 9, 1, 0), (8, 7, 7, 1)])
def test_shift_split_matches_a_loop_and_is_a_view(framework, n, length, shift, target_shift):
    rng = np.random.default_rng(n + length)
    series = rng.standard_normal((n, 3))
    expected_inputs, expected_targets = python_windows(series, length, shift, target_shift)
    x = torch.from_numpy(series.copy()) if framework == "torch" else series.copy()
    inputs, targets = U.shift_split(x, length, shift, target_shift)
    assert tuple(inputs.shape) == (len(expected_inputs), length, 3)
    np.testing.assert_array_equal(np.asarray(inputs), expected_inputs)
    np.testing.assert_array_equal(np.asarray(targets), expected_targets)
    assert shares_storage(inputs, x) and shares_storage(targets, x)
    x[target_shift + length - 1, 1] = 1e6  # the last step of the first target window, seen through the views
    assert targets[0, length - 1, 1] == 1e6
    if target_shift == 0:
        assert inputs[0, length - 1, 1] == 1e6


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_windows_along_a_later_axis_of_strided_data(framework):
    # Batch-first series (B, N, F) split along axis 1, from a non-contiguous slice.
    base = np.arange(2 * 26 * 2, dtype=np.float64).reshape(2, 26, 2)
    base = torch.from_numpy(base) if framework == "torch" else base
    x = base[:, ::2]  # (2, 13, 2), strided in time
    inputs, targets = U.shift_split(x, length=4, shift=3, target_shift=1, axis=1)
    assert tuple(inputs.shape) == (2, 3, 4, 2)
    for b in range(2):
        expected_inputs, expected_targets = python_windows(np.asarray(x[b]), 4, 3, 1)
        np.testing.assert_array_equal(np.asarray(inputs[b]), expected_inputs)
        np.testing.assert_array_equal(np.asarray(targets[b]), expected_targets)
    assert shares_storage(inputs, base) and shares_storage(targets, base)


def test_targets_from_a_second_series():
    x, y = np.arange(10), np.arange(10) * 10
    inputs, targets = U.shift_split(x, 3, shift=3, target_shift=1, targets=y)
    assert inputs.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert targets.tolist() == [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    assert np.shares_memory(targets, y)
    with pytest.raises(ValueError, match="as many steps"):
        U.shift_split(x, 3, targets=y[:9])


def test_window_helpers_refuse_bad_lengths_and_shifts():
    with pytest.raises(ValueError, match="needs at least 6 steps"):
        U.shift_split(np.arange(5), 4, target_shift=2)
    with pytest.raises(ValueError, match="positive"):
        U.sliding_windows(np.arange(5), 0)
    with pytest.raises(ValueError, match="non-negative"):
        U.reshape_split(np.arange(5), 2, target_shift=-1)
    with pytest.raises(ValueError, match="positive"):
        U.shift_split(np.arange(5), 2, shift=0)


def test_window_dataset_yields_windows_sharing_the_series():
    series = np.arange(22, dtype=np.float32).reshape(11, 2)
    ds = U.WindowDataset(series, length=4, shift=2, target_shift=1)
    assert isinstance(ds, torch.utils.data.Dataset)
    expected_inputs, expected_targets = python_windows(series, 4, 2, 1)
    assert len(ds) == len(expected_inputs) == 4
    for i in range(len(ds)):
        x, y = ds[i]
        np.testing.assert_array_equal(x.numpy(), expected_inputs[i])
        np.testing.assert_array_equal(y.numpy(), expected_targets[i])
    assert np.shares_memory(ds[0][0].numpy(), series)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=3))
    assert [tuple(b[0].shape) for b in batches] == [(3, 4, 2), (1, 4, 2)]
    torch.testing.assert_close(batches[1][1], torch.from_numpy(expected_targets[3:]))
    reshape = U.WindowDataset(torch.arange(10.0), length=3)  # shift defaults to the length
    assert len(reshape) == 3 and reshape[2][0].tolist() == [6.0, 7.0, 8.0] and reshape[2][1].tolist() == [7.0, 8.0, 9.0]


def test_numpy_parts_do_not_import_torch():
    code = ("import sys, numpy as np, fastrnn.utils as U\n"
            "i, t = U.reshape_split(np.arange(10), 3)\n"
            "c = list(U.tbptt_chunks(U.batchify(np.arange(10), 2), 2, target_shift=1))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- Truncated BPTT -------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_batchify_splits_into_streams_sharing_storage(framework):
    seq = np.arange(7) if framework == "numpy" else torch.arange(7)
    streams = U.batchify(seq, 2)
    assert streams.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert U.batchify(seq, 2, batch_first=True).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert shares_storage(streams, seq)
    features = np.arange(14).reshape(7, 2) if framework == "numpy" else torch.arange(14).reshape(7, 2)
    assert U.batchify(features, 3)[1].tolist() == [[2, 3], [6, 7], [10, 11]]  # step 1 of three streams
    with pytest.raises(ValueError, match="streams"):
        U.batchify(seq, 8)


def test_tbptt_chunks_cut_time_with_shifted_targets():
    assert [c.tolist() for c in U.tbptt_chunks(np.arange(7), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    pairs = [(x.tolist(), y.tolist()) for x, y in U.tbptt_chunks(np.arange(8), 3, target_shift=1)]
    assert pairs == [([0, 1, 2], [1, 2, 3]), ([3, 4, 5], [4, 5, 6]), ([6], [7])]
    data = torch.arange(20).reshape(2, 10)  # batch-first: time is dim 1
    chunks = list(U.tbptt_chunks(data, 4, target_shift=2, dim=1))
    assert [x.tolist() for x, _ in chunks] == [[[0, 1, 2, 3], [10, 11, 12, 13]], [[4, 5, 6, 7], [14, 15, 16, 17]]]
    assert [y.tolist() for _, y in chunks] == [[[2, 3, 4, 5], [12, 13, 14, 15]], [[6, 7, 8, 9], [16, 17, 18, 19]]]
    with pytest.raises(ValueError, match="positive"):
        next(U.tbptt_chunks(np.arange(3), 0))


def test_detach_state_detaches_tensors_tuples_and_lists():
    h = torch.randn(2, 3, 4, requires_grad=True) * 2
    c = torch.randn(2, 3, 4, requires_grad=True) + 1
    assert U.detach_state(None) is None
    single = U.detach_state(h)
    assert not single.requires_grad and torch.equal(single, h) and single.data_ptr() == h.data_ptr()
    pair = U.detach_state((h, c))
    assert type(pair) is tuple and not any(s.requires_grad for s in pair)
    assert torch.equal(pair[0], h) and torch.equal(pair[1], c)
    nested = U.detach_state([(h, c), h, None])
    assert type(nested) is list and nested[2] is None and not nested[0][1].requires_grad and not nested[1].requires_grad


def make_rnn(kind, seed=0):
    torch.manual_seed(seed)
    return kind(3, 7, num_layers=2).double()


@pytest.mark.parametrize("kind", [fnn.LSTM, fnn.GRU, torch.nn.LSTM])
def test_stateful_batches_carry_the_full_sequence_state(kind):
    # Chunk by chunk with the carried state, the outputs are those of one run over the whole
    # sequence: the state each chunk starts from is the previous chunk's final state.
    rnn = make_rnn(kind)
    series = torch.randn(41 * 4, 3, dtype=torch.float64)
    streams = U.batchify(series, 4)  # (41, 4, 3)
    full, full_state = rnn(streams)
    walk = U.StatefulBatches(streams, k=6)
    assert len(walk) == 7
    outputs = []
    for x in walk:
        out, state = rnn(x, walk.state)
        walk.state = state
        outputs.append(out)
    assert_close(torch.cat(outputs), full, torch.float64, "outputs")
    pairs = zip(walk.state, full_state) if isinstance(full_state, tuple) else [(walk.state, full_state)]
    for carried, expected in pairs:
        assert_close(carried, expected, torch.float64, "final state")
    # A new pass starts from the initial state again, and the state is reset to it.
    first = next(iter(walk))
    assert walk.state is None
    assert_close(rnn(first)[0], full[:6], torch.float64, "restart")


@pytest.mark.parametrize("detach", [True, False])
def test_gradient_stops_at_the_chunk_boundary(detach):
    # The loss of chunk 2 reaches the inputs of chunk 1 only through the carried state: with it
    # detached (StatefulBatches), chunk 1's inputs get no gradient; the control (not detached)
    # shows that they would.
    rnn = make_rnn(fnn.LSTM)
    x = torch.randn(20, 2, 3, dtype=torch.float64, requires_grad=True)
    walk = U.StatefulBatches(x, k=10)
    chunks = iter(walk)
    _, state = rnn(next(chunks), walk.state)
    if detach:
        walk.state = state
        assert not any(s.requires_grad for s in walk.state)
        start = walk.state
    else:
        start = state
    out, _ = rnn(next(chunks), start)
    out.pow(2).sum().backward()
    assert x.grad[10:].abs().sum() > 0
    if detach:
        assert torch.count_nonzero(x.grad[:10]) == 0
        # And the weights' gradient is that of chunk 2 from a constant initial state.
        weights = [p.grad.clone() for p in rnn.parameters()]
        rnn.zero_grad()
        constant = tuple(s.detach().clone() for s in state)
        rnn(x.detach()[10:], constant)[0].pow(2).sum().backward()
        for got, expected in zip(weights, rnn.parameters()):
            assert_close(got, expected.grad, torch.float64, "weight gradient")
    else:
        assert x.grad[:10].abs().sum() > 0


def test_stateful_batches_with_targets_and_initial_state():
    data = torch.arange(30.0).reshape(15, 2)
    h0 = torch.ones(1, 2, 5, requires_grad=True)
    walk = U.StatefulBatches(data, k=4, target_shift=1, initial_state=h0)
    pairs = list(walk)
    assert len(walk) == len(pairs) == 4
    assert pairs[-1][0].tolist() == [[24.0, 25.0], [26.0, 27.0]] and pairs[-1][1].tolist() == [[26.0, 27.0], [28.0, 29.0]]
    assert torch.equal(walk.state, h0) and not walk.state.requires_grad
    walk.state = torch.zeros(1, 2, 5)
    walk.reset()
    assert torch.equal(walk.state, h0)


# ---- Initialisers ----------------------------------------------------------------------------------

H, N_IN = 97, 113
# (initialiser, expected variance from (fan_in, fan_out), uniform bound or None)
VARIANCE = {
    "xavier_uniform": (U.xavier_uniform_, lambda i, o: 2.0 / (i + o), lambda i, o: math.sqrt(6.0 / (i + o))),
    "xavier_normal": (U.xavier_normal_, lambda i, o: 2.0 / (i + o), None),
    "he_uniform": (U.he_uniform_, lambda i, o: 2.0 / i, lambda i, o: math.sqrt(6.0 / i)),
    "he_normal": (U.he_normal_, lambda i, o: 2.0 / i, None),
}


@pytest.mark.parametrize("name", sorted(VARIANCE))
@pytest.mark.parametrize("gates", [1, 3, 4])
def test_initialiser_variance_per_gate_block(name, gates):
    init, variance, bound = VARIANCE[name]
    weight = init(torch.empty(gates * H, N_IN, dtype=torch.float64), gates)
    expected = variance(N_IN, H)  # the fan-out of one gate block, H, not gates*H
    blocks = weight.chunk(gates)
    for block in blocks:
        # ~11000 samples: the sample variance is within 3% (over 3 standard errors).
        assert abs(block.var().item() / expected - 1) < 0.03 * (1.5 if bound is None else 1)
        assert abs(block.mean().item()) < 4 * math.sqrt(expected / block.numel())
        if bound is not None:
            b = bound(N_IN, H)
            assert block.abs().max() <= b and block.abs().max() > 0.99 * b
    if gates > 1:
        assert not torch.equal(blocks[0], blocks[1])


def test_initialiser_gain_and_generator():
    a = U.xavier_normal_(torch.empty(4 * H, N_IN), 4, gain=3.0, generator=torch.Generator().manual_seed(5))
    b = U.xavier_normal_(torch.empty(4 * H, N_IN), 4, gain=3.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert abs(a.var().item() / (9 * 2.0 / (N_IN + H)) - 1) < 0.03
    with pytest.raises(ValueError, match="gate blocks"):
        U.xavier_uniform_(torch.empty(10, 3), gates=4)


@pytest.mark.parametrize("rows, cols", [(61, 61), (37, 13), (13, 37)])
@pytest.mark.parametrize("gates", [1, 4])
def test_orthogonal_per_gate_block(rows, cols, gates):
    weight = U.orthogonal_(torch.empty(gates * rows, cols, dtype=torch.float64), gates, gain=1.0)
    for block in weight.chunk(gates):
        if rows >= cols:
            assert_close(block.T @ block, torch.eye(cols, dtype=torch.float64), torch.float64, "Q^T Q")
        if rows <= cols:
            assert_close(block @ block.T, torch.eye(rows, dtype=torch.float64), torch.float64, "Q Q^T")
    scaled = U.orthogonal_(torch.empty(rows, cols, dtype=torch.float64), gain=2.5)
    small = min(rows, cols)
    gram = scaled.T @ scaled if rows >= cols else scaled @ scaled.T
    assert_close(gram, 6.25 * torch.eye(small, dtype=torch.float64), torch.float64, "gain^2 I")
    if gates > 1:
        assert not torch.allclose(weight[:rows], weight[rows:2 * rows])


def test_identity_init_puts_a_scaled_eye_in_each_gate():
    weight = U.identity_(torch.full((3 * 5, 5), float("nan")), gates=3, gain=0.5)
    for block in weight.chunk(3):
        assert torch.equal(block, 0.5 * torch.eye(5))
    assert torch.equal(U.identity_(torch.empty(2, 3)), torch.tensor([[1.0, 0, 0], [0, 1, 0]]))


@pytest.mark.parametrize("cls", [torch.nn.LSTM, fnn.LSTM])
def test_forget_gate_bias(cls):
    lstm = cls(5, 7, num_layers=2, bidirectional=True)
    before = {name: p.detach().clone() for name, p in lstm.named_parameters()}
    U.forget_gate_bias_(lstm, 1.5)
    biases = [name for name in before if name.startswith("bias_ih")]
    assert len(biases) == 4
    for name in biases:
        hh = name.replace("ih", "hh")
        got_ih, got_hh = getattr(lstm, name).detach(), getattr(lstm, hh).detach()
        assert torch.equal(got_ih[7:14] + got_hh[7:14], torch.full((7,), 1.5))
        for other in (slice(0, 7), slice(14, 28)):  # the other gates are untouched
            assert torch.equal(got_ih[other], before[name][other]) and torch.equal(got_hh[other], before[hh][other])
    cell = U.forget_gate_bias_(fnn.LSTMCell(3, 4), 2.0)
    assert torch.equal((cell.bias_ih + cell.bias_hh)[4:8].detach(), torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="LSTM"):
        U.forget_gate_bias_(torch.nn.GRU(3, 4))


@pytest.mark.parametrize("cls", [torch.nn.LSTM, fnn.LSTM])
def test_init_rnn_stacked_bidirectional_projected_lstm(cls):
    hidden, proj, inputs = 11, 5, 6
    lstm = cls(inputs, hidden, num_layers=2, bidirectional=True, proj_size=proj).double()
    U.init_rnn_(lstm, weight_ih="xavier_uniform", weight_hh="orthogonal", weight_hr="orthogonal", forget_bias=1.0)
    names = [name for name, _ in lstm.named_parameters()]
    assert sum(n.startswith("weight_hh") for n in names) == 4 and sum(n.startswith("weight_hr") for n in names) == 4
    for name, p in lstm.named_parameters():
        p = p.detach()
        if name.startswith("weight_hh"):  # (4H, P): each (H, P) block has orthonormal columns
            for block in p.chunk(4):
                assert_close(block.T @ block, torch.eye(proj, dtype=torch.float64), torch.float64, name)
        elif name.startswith("weight_hr"):  # (P, H): orthonormal rows
            assert_close(p @ p.T, torch.eye(proj, dtype=torch.float64), torch.float64, name)
        elif name.startswith("weight_ih"):
            fan_in = p.shape[1]  # inputs, or 2*P for the second layer
            assert p.abs().max() <= math.sqrt(6.0 / (fan_in + hidden))
        else:
            expected = torch.zeros(4 * hidden, dtype=torch.float64)
            if name.startswith("bias_ih"):
                expected[hidden:2 * hidden] = 1.0
            assert torch.equal(p, expected), name
    out, _ = lstm(torch.randn(4, 3, inputs, dtype=torch.float64))  # still a working layer
    assert out.shape == (4, 3, 2 * proj) and out.isfinite().all()


def test_init_rnn_irnn_matches_torch_and_cells():
    # IRNN: ReLU RNN with W_hh = I and zero biases; the fastrnn layer and torch's agree on it.
    ours = U.init_rnn_(fnn.RNN(3, 8, nonlinearity="relu").double(),
                       weight_ih=lambda w, g: w.normal_(0.0, 0.001), weight_hh="identity")
    assert torch.equal(ours.weight_hh_l0.detach(), torch.eye(8, dtype=torch.float64))
    assert torch.count_nonzero(ours.bias_ih_l0) == 0 and torch.count_nonzero(ours.bias_hh_l0) == 0
    reference = torch.nn.RNN(3, 8, nonlinearity="relu").double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    assert_close(ours(x)[0], reference(x)[0], torch.float64, "IRNN output")
    gru_cell = U.init_rnn_(fnn.GRUCell(5, 6).double(), weight_hh="orthogonal", bias=0.1)
    for block in gru_cell.weight_hh.detach().chunk(3):
        assert_close(block.T @ block, torch.eye(6, dtype=torch.float64), torch.float64, "GRU block")
    assert torch.equal(gru_cell.bias_hh.detach(), torch.full((18,), 0.1, dtype=torch.float64))
    he = U.init_rnn_(torch.nn.RNNCell(200, 150), weight_ih="he_normal", weight_hh="he_uniform")
    assert abs(he.weight_ih.var().item() / (2.0 / 200) - 1) < 0.05
    with pytest.raises(ValueError, match="unknown initialiser"):
        U.init_rnn_(torch.nn.GRU(2, 3), weight_hh="glorot")
    with pytest.raises(TypeError, match="expected a torch.nn or fastrnn.nn"):
        U.init_rnn_(torch.nn.Linear(2, 3))


# ---- Penalties and clipping ------------------------------------------------------------------------

def test_penalties_by_hand_and_their_gradients():
    a = torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[-0.5], [3.0]], dtype=torch.float64, requires_grad=True)
    l1 = U.l1_penalty([a, b])
    l2 = U.l2_penalty((a, b))
    assert l1.item() == 1.5 + 2.0 + 0.0 + 0.5 + 3.0
    assert l2.item() == 2.25 + 4.0 + 0.0 + 0.25 + 9.0
    (0.1 * l1 + 0.01 * l2).backward()
    assert_close(a.grad, 0.1 * torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64) + 0.02 * a.detach(), torch.float64, "a")
    assert_close(b.grad, 0.1 * torch.tensor([[-1.0], [1.0]], dtype=torch.float64) + 0.02 * b.detach(), torch.float64, "b")
    assert U.l1_penalty([]).item() == 0.0 and U.l2_penalty(a).item() == l2.item() - 9.25


def test_penalties_on_chosen_parameter_groups():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), fnn.LSTM(3, 4, num_layers=2), )
    recurrent = U.select_parameters(model, "*weight_hh_*")
    assert [p.shape for p in recurrent] == [(16, 4), (16, 4)]
    assert len(U.select_parameters(model, "0.*", "*bias_ih_l1")) == 2
    expected = sum(p.detach().pow(2).sum() for p in recurrent)
    penalty = U.l2_penalty(recurrent)
    assert_close(penalty, expected, torch.float32, "l2")
    penalty.backward()
    for name, p in model.named_parameters():
        if "weight_hh" in name:
            assert_close(p.grad, 2 * p.detach(), torch.float32, name)
        else:
            assert p.grad is None, name
    assert_close(U.l1_penalty(model), sum(p.detach().abs().sum() for p in model.parameters()), torch.float32, "all")


@pytest.mark.parametrize("foreach", [None, False])
def test_clip_grad_value_matches_torch(foreach):
    torch.manual_seed(3)
    shapes = [(7, 13), (37,), (4, 4, 3)]
    dtypes = [torch.float32, torch.float64, torch.float32]
    ours = [torch.nn.Parameter(torch.zeros(s, dtype=d)) for s, d in zip(shapes, dtypes)]
    theirs = [torch.nn.Parameter(torch.zeros(s, dtype=d)) for s, d in zip(shapes, dtypes)]
    for p, q in zip(ours, theirs):
        p.grad = torch.randn(p.shape, dtype=p.dtype) * 3
        p.grad.view(-1)[0] = float("nan")
        q.grad = p.grad.clone()
    no_grad = torch.nn.Parameter(torch.zeros(3))
    assert U.clip_grad_value_(ours + [no_grad], 1.25, foreach=foreach) is None
    torch.nn.utils.clip_grad_value_(theirs + [torch.nn.Parameter(torch.zeros(3))], 1.25)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, equal_nan=True)
        assert p.grad.nan_to_num().abs().max() <= 1.25
    assert no_grad.grad is None
    single = torch.nn.Parameter(torch.zeros(2))
    single.grad = torch.tensor([-3.0, 0.25])
    U.clip_grad_value_(single, 0.5)
    assert single.grad.tolist() == [-0.5, 0.25]


def test_docstring_examples():
    results = doctest.testmod(U, extraglobs={"np": np, "torch": torch, "WindowDataset": U.WindowDataset}, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 15 and results.failed == 0


# ---- Bad arguments: the exception NumPy, torch or range() raises for the same mistake ---------------

def lstm_module():
    return torch.nn.LSTM(3, 4)


def gradient_parameter():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([-5.0, 0.5, 5.0])
    return p


SERIES = np.arange(10.0)
BAD_ARGUMENTS = [
    # (name, call, exception, message fragment)
    ("tbptt negative target_shift", lambda: U.tbptt_chunks(SERIES, 3, target_shift=-1), ValueError,
     "target_shift must be non-negative, got -1"),
    ("tbptt targets past the end", lambda: U.tbptt_chunks(SERIES, 3, target_shift=10), ValueError,
     "a chunk with targets 10 steps ahead needs at least 11 steps along dim 0, got 10"),
    ("tbptt no steps", lambda: U.tbptt_chunks(np.zeros((0, 2)), 3), ValueError, "needs at least 1 step along dim 0"),
    ("tbptt float k", lambda: U.tbptt_chunks(SERIES, 2.5), TypeError, "k must be an integer, got float"),
    ("tbptt str k", lambda: U.tbptt_chunks(SERIES, "3"), TypeError, "k must be an integer, got str"),
    ("tbptt float target_shift", lambda: U.tbptt_chunks(SERIES, 3, target_shift=1.5), TypeError,
     "target_shift must be an integer"),
    ("tbptt dim out of range", lambda: U.tbptt_chunks(SERIES, 3, dim=1), np.exceptions.AxisError,
     "axis 1 is out of bounds for array of dimension 1"),
    ("tbptt None", lambda: U.tbptt_chunks(None, 3), TypeError, "data must be a NumPy array or a torch tensor, got None"),
    ("stateful zero k", lambda: U.StatefulBatches(SERIES, 0), ValueError, "k must be positive, got 0"),
    ("stateful float k", lambda: U.StatefulBatches(SERIES, 2.5), TypeError, "k must be an integer"),
    ("stateful negative target_shift", lambda: U.StatefulBatches(SERIES, 3, target_shift=-1), ValueError,
     "target_shift must be non-negative"),
    ("stateful dim", lambda: U.StatefulBatches(SERIES, 3, dim=-2), IndexError, "out of bounds"),
    ("stateful state of ints", lambda: U.StatefulBatches(SERIES, 3, initial_state=5), TypeError,
     "expected a recurrent state"),
    ("detach a dict", lambda: U.detach_state({"h": torch.zeros(1)}), TypeError, "got dict"),
    ("window float length", lambda: U.sliding_windows(SERIES, 2.5), TypeError, "length must be an integer"),
    ("window float step", lambda: U.sliding_windows(SERIES, 2, step=0.5), TypeError, "step must be an integer"),
    ("window axis out of range", lambda: U.sliding_windows(SERIES, 2, axis=1), ValueError, "out of bounds"),
    ("window negative axis out of range", lambda: U.sliding_windows(torch.arange(5), 2, axis=-2), ValueError,
     "axis -2 is out of bounds for array of dimension 1"),
    ("window 0-d", lambda: U.sliding_windows(np.float64(3.0), 1), ValueError, "out of bounds for array of dimension 0"),
    ("window None", lambda: U.sliding_windows(None, 2), TypeError, "x must be a NumPy array or a torch tensor"),
    ("window ragged list", lambda: U.sliding_windows([[1], [2, 3]], 1), TypeError, "NumPy cannot convert the list"),
    ("shift float length", lambda: U.shift_split(SERIES, 2.5), TypeError, "length must be an integer"),
    ("shift float shift", lambda: U.shift_split(SERIES, 2, shift=1.5), TypeError, "shift must be an integer"),
    ("shift axis out of range", lambda: U.shift_split(SERIES, 2, axis=3), IndexError, "out of bounds"),
    ("shift targets lack the axis", lambda: U.shift_split(np.zeros((3, 10)), 2, axis=-1, targets=np.zeros(10)),
     ValueError, "targets: axis 1 is out of bounds for array of dimension 1"),
    ("reshape float length", lambda: U.reshape_split(SERIES, 2.0), TypeError, "length must be an integer"),
    ("dataset float length", lambda: U.WindowDataset(SERIES, 2.5), TypeError, "length must be an integer"),
    ("batchify float size", lambda: U.batchify(SERIES, 2.5), TypeError, "batch_size must be an integer, got float"),
    ("batchify 0-d", lambda: U.batchify(np.float64(1.0), 2), ValueError, "0-d sequence"),
    ("init float gates", lambda: U.xavier_uniform_(torch.empty(8, 4), gates=2.5), TypeError,
     "gates must be an integer"),
    ("init zero gates", lambda: U.he_normal_(torch.empty(8, 4), gates=0), ValueError, "gates must be positive, got 0"),
    ("init NumPy weight", lambda: U.orthogonal_(np.zeros((8, 4))), TypeError,
     "expected a torch tensor as the weight, got ndarray"),
    ("init str gain", lambda: U.xavier_normal_(torch.empty(8, 4), gain="2"), TypeError,
     "gain must be a real number, got str"),
    ("identity None gain", lambda: U.identity_(torch.empty(4, 4), gain=None), TypeError, "gain must be a real number"),
    ("forget bias without biases", lambda: U.forget_gate_bias_(torch.nn.LSTM(3, 4, bias=False)), ValueError,
     "needs an LSTM with biases; this LSTM has bias=False"),
    ("forget bias str", lambda: U.forget_gate_bias_(lstm_module(), "1"), TypeError, "value must be a real number"),
    ("init_rnn_ list name", lambda: U.init_rnn_(lstm_module(), weight_hh=["orthogonal"]), ValueError,
     "unknown initialiser for weight_hh"),
    ("init_rnn_ str gain", lambda: U.init_rnn_(lstm_module(), gain="1"), TypeError, "gain must be a real number"),
    ("init_rnn_ str bias", lambda: U.init_rnn_(lstm_module(), bias="0"), TypeError, "bias must be a real number"),
    ("select from a non-module", lambda: U.select_parameters({"w": torch.zeros(1)}, "*"), TypeError,
     "expected a torch.nn.Module, got dict"),
    ("select without patterns", lambda: U.select_parameters(lstm_module()), TypeError,
     "needs at least one glob pattern"),
    ("select int pattern", lambda: U.select_parameters(lstm_module(), 0), TypeError, "patterns must be strings"),
    ("penalty of an int", lambda: U.l1_penalty(3), TypeError,
     "expected a tensor, an iterable of tensors or a torch.nn.Module, got int"),
    ("penalty of NumPy arrays", lambda: U.l2_penalty([np.ones(3)]), TypeError, "an iterable holding ndarray"),
    ("penalty of None", lambda: U.l1_penalty(None), TypeError, "got NoneType"),
    ("clip NumPy arrays", lambda: U.clip_grad_value_([np.ones(3)], 1.0), TypeError, "an iterable holding ndarray"),
]


@pytest.mark.parametrize("call,exception,message", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_raise_clearly_where_they_are_given(call, exception, message):
    # Raised by the call itself: tbptt_chunks checks before returning its iterator.
    with pytest.raises(exception) as info:
        call()
    assert message in str(info.value)


def test_tbptt_chunks_never_pairs_misaligned_targets():
    # target_shift=-1 used to pair x[3:6] with x[2:5] and the first chunk with an empty target.
    with pytest.raises(ValueError, match="non-negative"):
        U.tbptt_chunks(np.arange(10), 3, target_shift=-1)
    walk = U.StatefulBatches(np.arange(10), 3, target_shift=1)
    walk.target_shift = -1  # changed after construction: checked again when walked
    with pytest.raises(ValueError, match="non-negative"):
        iter(walk)
    with pytest.raises(ValueError, match="non-negative"):
        len(walk)


def test_array_likes_are_taken_as_numpy_arrays():
    series = list(range(10))
    np.testing.assert_array_equal(U.sliding_windows(series, 3, 2), U.sliding_windows(np.array(series), 3, 2))
    inputs, targets = U.shift_split(series, 3, targets=[10 * v for v in series])
    assert targets[0].tolist() == [10, 20, 30] and inputs[-1].tolist() == [6, 7, 8]
    assert U.batchify(series, 2).tolist() == U.batchify(np.array(series), 2).tolist()
    assert [c.tolist() for c in U.tbptt_chunks(series, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert U.WindowDataset(series, 3)[1][1].tolist() == [4, 5, 6]
    # NumPy integer types are integers too
    assert U.sliding_windows(np.arange(5), np.int64(2), step=np.int32(3)).tolist() == [[0, 1], [3, 4]]


def test_states_of_numpy_arrays_and_namedtuples():
    import collections

    h = np.ones((1, 2, 3))
    walk = U.StatefulBatches(np.arange(10.0), 3, initial_state=h)
    assert walk.state is h  # nothing to detach
    State = collections.namedtuple("State", "h c")
    state = State(torch.ones(2, requires_grad=True) * 2, torch.zeros(2, requires_grad=True) * 1)
    detached = U.detach_state(state)
    assert type(detached) is State and not detached.h.requires_grad and detached.h.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("init", [U.xavier_uniform_, U.xavier_normal_, U.he_uniform_, U.he_normal_, U.orthogonal_,
                                  U.identity_])
@pytest.mark.parametrize("shape", [(0, 0), (8, 0), (0, 5)])
def test_initialisers_leave_empty_weights_alone(init, shape):
    # torch.nn.init divides by a zero fan here; an empty block has nothing to draw.
    weight = torch.empty(shape)
    assert init(weight, 4 if shape[0] else 1) is weight


def test_init_rnn_checks_every_argument_before_changing_a_weight():
    gru = torch.nn.GRU(3, 4)
    before = {k: v.clone() for k, v in gru.state_dict().items()}
    with pytest.raises(ValueError, match="forget_bias needs an LSTM or LSTMCell, got GRU"):
        U.init_rnn_(gru, forget_bias=1.0)
    with pytest.raises(TypeError, match="bias must be a real number"):
        U.init_rnn_(gru, bias=None)
    for k, v in gru.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("clip_value", [-1.0, float("nan"), 0.0, "1.5", np.float32(1.0), torch.tensor(0.5)])
def test_clip_grad_value_takes_what_torch_takes(clip_value):
    # torch reads float(clip_value): a negative value clamps to [1, -1] (every gradient -1), a
    # string is parsed, NaN gives NaN. Ours follows, value for value.
    ours, theirs = gradient_parameter(), gradient_parameter()
    U.clip_grad_value_([ours], clip_value)
    torch.nn.utils.clip_grad_value_([theirs], clip_value)
    assert torch.equal(ours.grad.isnan(), theirs.grad.isnan())
    assert torch.equal(ours.grad.nan_to_num(), theirs.grad.nan_to_num())
