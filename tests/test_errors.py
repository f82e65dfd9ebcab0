"""Bad input: the exception torch.nn raises for the same mistake, never a crash."""

import re

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn.functional as F
import fastrnn.nn as fnn
import fastrnn.numpy as frn
from fastrnn import _C
from reference import twins


def lstm_args(T=4, B=3, I=5, H=6, dtype=torch.float32):
    return dict(x=torch.randn(T, B, I, dtype=dtype), h0=torch.randn(B, H, dtype=dtype),
                c0=torch.randn(B, H, dtype=dtype), weight_ih=torch.randn(4 * H, I, dtype=dtype),
                weight_hh=torch.randn(4 * H, H, dtype=dtype), bias_ih=torch.randn(4 * H, dtype=dtype),
                bias_hh=torch.randn(4 * H, dtype=dtype))


def call_torch(args):
    return F.lstm(**args)


def call_numpy(args):
    return frn.lstm(**{k: (None if v is None else v.numpy()) for k, v in args.items()})


def changed(**changes):
    args = lstm_args()
    for key, value in changes.items():
        args[key] = value(args[key]) if callable(value) else value
    return args


CASES = [
    # (name, changed arguments, exception, message fragment)
    ("input 2-D", changed(x=lambda x: x[0]), ValueError, "Expected input to be 3-D"),
    ("input 4-D", changed(x=lambda x: x[None]), ValueError, "got 4-D instead"),
    ("input size", changed(x=torch.randn(4, 3, 7)), RuntimeError,
     "input.size(-1) must be equal to input_size. Expected 5, got 7"),
    ("h0 batch", changed(h0=torch.randn(2, 6)), RuntimeError, "Expected h0 size (3, 6), got (2, 6)"),
    ("h0 3-D", changed(h0=torch.randn(1, 3, 6)), RuntimeError, "Expected h0 to be 2-D"),
    ("c0 size", changed(c0=torch.randn(3, 7)), RuntimeError, "Expected c0 size (3, 6), got (3, 7)"),
    ("weight_hh rows", changed(weight_hh=torch.randn(20, 6)), RuntimeError, "Expected weight_hh of size"),
    ("weight_ih rows", changed(weight_ih=torch.randn(20, 5)), RuntimeError, "Expected weight_ih of size (24, input_size)"),
    ("weight 1-D", changed(weight_ih=torch.randn(24)), RuntimeError, "Expected weight_ih to be 2-D"),
    ("bias size", changed(bias_hh=torch.randn(23)), RuntimeError, "Expected bias_hh of size (24,), got (23,)"),
    ("empty sequence", changed(x=torch.randn(0, 3, 5)), RuntimeError, "Expected sequence length to be larger than 0"),
    ("empty batch", changed(x=torch.randn(4, 0, 5), h0=None, c0=None), RuntimeError,
     "Expected batch size to be larger than 0"),
    ("input dtype", changed(x=lambda x: x.double()), ValueError, "input dtype"),
    ("h0 dtype", changed(h0=lambda h: h.double()), RuntimeError, "expected h0 of dtype"),
    ("bias dtype", changed(bias_ih=lambda b: b.double()), RuntimeError, "expected bias_ih of dtype"),
    ("half", {k: v.half() for k, v in lstm_args().items()}, RuntimeError, "not supported"),
    ("int", {k: v.int() for k, v in lstm_args().items()}, RuntimeError, "not supported"),
]


@pytest.mark.parametrize("api", [call_torch, call_numpy], ids=["functional", "numpy"])
@pytest.mark.parametrize("name,args,exc,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_like_torch(api, name, args, exc, message):
    with pytest.raises(exc) as info:
        api(args)
    assert message in str(info.value)


def test_device_mismatch_raises_torchs_message():
    args = lstm_args()
    args["weight_hh"] = args["weight_hh"].to("meta")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        F.lstm(**args)


def test_unknown_nonlinearity_is_refused_with_torchs_message():
    x, w_ih, w_hh = torch.randn(2, 1, 3), torch.randn(4, 3), torch.randn(4, 4)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'."):
        F.rnn(x, None, w_ih, w_hh, nonlinearity="gelu")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        frn.rnn(x.numpy(), None, w_ih.numpy(), w_hh.numpy(), nonlinearity="gelu")


def test_numpy_backward_checks_its_context_and_gradients():
    rng = np.random.default_rng(0)
    x, w_ih, w_hh = rng.standard_normal((3, 2, 4)), rng.standard_normal((15, 4)), rng.standard_normal((15, 5))
    _, _, ctx = frn.gru(x, None, w_ih, w_hh, training=True)
    with pytest.raises(TypeError, match="expected the context"):
        frn.gru_backward(object(), None, None)
    with pytest.raises(ValueError, match="expected the context of a lstm forward, got one of gru"):
        frn.lstm_backward(ctx, None, None, None)
    with pytest.raises(RuntimeError, match=r"Expected dy of size \(3, 2, 5\)"):
        frn.gru_backward(ctx, np.zeros((3, 2, 4)), None)
    with pytest.raises(RuntimeError, match="expected dh_n of dtype float64"):
        frn.gru_backward(ctx, None, np.zeros((2, 5), np.float32))


# The core's own checks, reached by calling the private module directly: it must refuse
# rather than write outside what it was given.
def core_call(T=3, B=2, I=4, H=5):
    """A valid GRU training forward call for _C.rnn_forward (cell 3)."""
    f = lambda *s: np.random.default_rng(0).standard_normal(s)  # noqa: E731
    reserve_elems, ws_bytes, _ = _C.rnn_buffer_sizes(3, "float64", T * B, B, I, H)
    return dict(reverse=False, x=f(T, B, I), h0=f(B, H), weight_ih=f(3 * H, I), weight_hh=f(3 * H, H),
                y=np.empty((T, B, H)), h_n=np.empty((B, H)), reserve=np.empty((T * B, 4 * H)),
                workspace=np.empty(ws_bytes, np.uint8))


def run_core(*calls):
    _C.rnn_forward(3, True, list(calls))


def test_core_runs_with_its_own_arguments():
    run_core(core_call())


def test_core_refuses_overlapping_outputs():
    call = core_call()
    buffer = np.empty(100)
    call["y"], call["h_n"] = buffer[:30].reshape(3, 2, 5), buffer[20:30].reshape(2, 5)
    with pytest.raises(RuntimeError, match="output y overlaps output h_n"):
        run_core(call)
    call = core_call()
    call["h_n"] = call["h0"]
    with pytest.raises(RuntimeError, match="output h_n overlaps input h0"):
        run_core(call)


def test_core_h_n_may_be_left_out_only_of_a_one_step_call():
    """A one-step call's y is its final state, so it may leave h_n out (the cells' entry); a
    longer call may not."""
    call = core_call()
    del call["h_n"]
    with pytest.raises(RuntimeError, match="h_n"):
        run_core(call)
    call = {**core_call(T=1), "h_n": None}
    run_core(call)
    expected = core_call(T=1)
    run_core(expected)
    np.testing.assert_array_equal(call["y"], expected["y"])
    np.testing.assert_array_equal(call["y"][0], expected["h_n"])


def test_core_backward_takes_absent_state_gradients_as_zeros():
    """dh_n and dc_n may be left out of a backward call (zeros), and give what zeros give."""
    T, B, I, H = 3, 2, 4, 5
    rng = np.random.default_rng(1)
    _, fwd_bytes, bwd_bytes = _C.rnn_buffer_sizes(2, "float64", T * B, B, I, H)
    fwd = dict(reverse=False, x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((B, H)),
               c0=rng.standard_normal((B, H)), weight_ih=rng.standard_normal((4 * H, I)),
               weight_hh=rng.standard_normal((4 * H, H)), y=np.empty((T, B, H)), h_n=np.empty((B, H)),
               c_n=np.empty((B, H)), reserve=np.empty((T * B, 5 * H)), workspace=np.empty(fwd_bytes, np.uint8))
    _C.rnn_forward(2, True, [fwd])
    results = []
    for given in (True, False):
        out = dict(dx=np.empty((T, B, I)), dh0=np.empty((B, H)), dc0=np.empty((B, H)),
                   dweight_ih=np.empty((4 * H, I)), dweight_hh=np.empty((4 * H, H)))
        call = dict(reverse=False, **{k: fwd[k] for k in ("x", "h0", "c0", "weight_ih", "weight_hh", "y", "reserve")},
                    dy=np.ones((T, B, H)), workspace=np.empty(bwd_bytes, np.uint8), **out)
        if given:
            call.update(dh_n=np.zeros((B, H)), dc_n=np.zeros((B, H)))
        _C.rnn_backward(2, [call])
        results.append(out)
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name])


def test_cell_entry_refuses_wrong_shapes():
    f = lambda *s: np.zeros(s)  # noqa: E731
    _, ws_bytes, _ = _C.rnn_buffer_sizes(3, "float64", 2, 2, 4, 5)
    args = dict(x=f(2, 4), h0=f(2, 5), c0=None, weight_ih=f(15, 4), weight_hh=f(15, 5), bias_ih=None, bias_hh=None,
                h=f(2, 5), c=None, workspace=np.empty(ws_bytes, np.uint8))
    _C.rnn_cell_forward(3, **args)
    for name, value, match in (("x", f(1, 2, 4), "expected x of 2 dimensions"), ("h", f(2, 6), "y"),
                               ("weight_hh", f(15, 4), "weight_hh"), ("workspace", np.empty(8, np.uint8), "workspace")):
        with pytest.raises(RuntimeError, match=match):
            _C.rnn_cell_forward(3, **{**args, name: value})


def test_core_refuses_small_workspace_and_wrong_shapes():
    def refused(exc, match, **changes):
        call = {**core_call(), **changes}
        with pytest.raises(exc, match=match):
            run_core(call)

    refused(RuntimeError, "workspace", workspace=np.empty(16, np.uint8))
    refused(RuntimeError, "expected reserve of shape", reserve=np.empty((6, 3)))
    refused(RuntimeError, "expected y of dtype float64, got float32", y=np.empty((3, 2, 5), np.float32))
    refused(RuntimeError, "expected x to be contiguous", x=np.asfortranarray(core_call()["x"]))
    refused(TypeError, "expected a NumPy array, a DLPack capsule or None", x=[1.0])
    refused(TypeError, "unexpected argument 'weights'", weights=None)
    with pytest.raises(ValueError, match="unknown cell kind 9"):
        _C.rnn_forward(9, True, [core_call()])


def test_core_checks_calls_run_together():
    # Two calls run side by side must be the two directions of one layer: one x, the two
    # halves of one output's rows, nothing else shared.
    a, b = core_call(), core_call()
    b["reverse"] = True
    b["x"] = a["x"]
    y = np.empty((3, 2, 10))
    a["y"], b["y"] = y[..., :5], y[..., 5:]
    run_core(a, b)
    with pytest.raises(RuntimeError, match="must read the same x"):
        run_core(a, {**b, "x": a["x"].copy()})
    with pytest.raises(RuntimeError, match="two halves of one array"):
        run_core(a, {**b, "y": np.empty((3, 2, 5))})
    with pytest.raises(RuntimeError, match="overlaps"):
        run_core(a, {**b, "workspace": a["workspace"]})
    with pytest.raises(RuntimeError, match="between 1 and 2 calls"):
        run_core(a, b, b)


# ---- torch.nn's modules: torch's exception (type and message) for each mistake -----------------
# Every expected error is computed here from torch.nn itself, called with the same arguments.

I, H, B, T = 5, 7, 3, 5  # odd sizes: the input's features, hidden units, batch, steps


def module_pair(name, *args, **kwargs):
    """A torch.nn module and its fastrnn twin holding the same float32 weights."""
    return twins(name, *args, dtype=torch.float32, **kwargs)


def torch_error(call):
    with pytest.raises(Exception) as info:
        call()
    return info.value


def raises_like(expected, call):
    """call() raises expected's type (exactly) with expected's message (exactly)."""
    with pytest.raises(type(expected), match=re.escape(str(expected))) as got:
        call()
    assert type(got.value) is type(expected) and str(got.value) == str(expected)


def same_error(reference, ours):
    raises_like(torch_error(reference), ours)


def same_outcome(reference, ours):
    """torch's error as same_error, or, where torch takes the arguments, results of its shapes."""
    try:
        expected = reference()
    except Exception as e:  # noqa: BLE001 - whatever torch raises
        raises_like(e, ours)
        return
    def shapes(out):
        return [tuple(t.shape) for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]

    assert shapes(ours()) == shapes(expected)


def packed(x, lengths=(5, 4, 2), enforce_sorted=True):
    return pack_padded_sequence(x, list(lengths), enforce_sorted=enforce_sorted)


def layer_state_cases(lstm):
    """(description, hx) for states of the wrong kind, count, rank or dtype, for a (T, B, I)
    input into a one-layer module of hidden size H."""
    h = torch.zeros(1, B, H)
    f64 = h.double()
    cases = [("a tuple of one", (h,)), ("a list", [h, h] if lstm else [h]), ("None inside", (h, None)),
             ("None first", (None, h)), ("an int", 3), ("a string", "abc"), ("an empty tuple", ()),
             ("float64", (f64, f64) if lstm else f64), ("int64", (h.long(), h.long()) if lstm else h.long()),
             ("half", (h.half(), h.half()) if lstm else h.half()),
             ("bool", (h.bool(), h.bool()) if lstm else h.bool())]
    if lstm:
        cases += [("three tensors", (h, h, h)), ("three tensors, one float64", (h, f64, h)),
                  ("three, the third a string", (h, h, "abc")), ("three, the third wrong", (h, h, torch.zeros(2))),
                  ("a tensor", h), ("a tensor of two layers", torch.zeros(2, 1, B, H)),
                  ("h float64", (f64, h)), ("c float64", (h, f64))]
    else:
        cases += [("a tuple of two", (h, h))]
    return cases


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layer_states_of_the_wrong_kind_raise_like_torch(name):
    """LSTM with three states once raised ValueError (unpacking) where torch raises
    RuntimeError('lstm expects two hidden states'); every other wrong hx, each as torch."""
    reference, ours = module_pair(name, I, H)
    x = torch.randn(T, B, I)
    for description, hx in layer_state_cases(name == "LSTM"):
        try:
            same_outcome(lambda: reference(x, hx), lambda: ours(x, hx))
            same_outcome(lambda: reference(packed(x), hx), lambda: ours(packed(x), hx))
        except AssertionError as e:
            raise AssertionError(f"{name}, hx {description}: {e}") from e


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_unsorted_packed_states_are_permuted_before_any_check_like_torch(name):
    """torch.nn permutes a packed input's hx (index_select) before checking it: a non-tensor
    hx fails there, a 2-D one is checked after its columns were permuted, and an LSTM's third
    state is dropped by the permutation (accepted)."""
    reference, ours = module_pair(name, I, H)
    x = torch.randn(T, B, I)
    h = torch.zeros(1, B, H)
    cases = [(h, None), 3, [h], (h, None) if name == "LSTM" else (h,), torch.zeros(B, H), (h[0], h[0])]
    for hx in cases:
        same_error(lambda: reference(packed(x, (4, 5, 2), False), hx), lambda: ours(packed(x, (4, 5, 2), False), hx))
    if name == "LSTM":
        y, (h_n, c_n) = ours(packed(x, (4, 5, 2), False), (h, h, h))
        y_ref, (h_ref, c_ref) = reference(packed(x, (4, 5, 2), False), (h, h))
        torch.testing.assert_close(h_n, h_ref)
        torch.testing.assert_close(c_n, c_ref)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_input_and_state_dtypes_raise_like_torch(name):
    """A packed float64 input into a float32 LSTM once raised ValueError where torch raises
    RuntimeError (torch.nn checks nothing of a packed LSTM's arguments: ATen's matmul refuses
    it); states of another dtype than the input: what ATen raises (LSTM: in oneDNN's words)."""
    lstm = name == "LSTM"
    reference, ours = module_pair(name, I, H)
    x = torch.randn(T, B, I)

    def state(dtype):
        h = torch.zeros(1, B, H, dtype=dtype)
        return (h, h) if lstm else h

    dtypes = [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool, torch.complex64]
    for dtype in dtypes:
        for description, args in [("input", (x.to(dtype),)), ("packed input", (packed(x.to(dtype)),)),
                                  ("packed input, hx", (packed(x.to(dtype)), state(torch.float32))),
                                  ("unbatched input", (x[:, 0].to(dtype),)), ("hx", (x, state(dtype))),
                                  ("packed hx", (packed(x), state(dtype)))]:
            try:
                same_error(lambda: reference(*args), lambda: ours(*args))
            except AssertionError as e:
                raise AssertionError(f"{name}, {description} of {dtype}: {e}") from e


def test_packed_lstm_states_of_the_wrong_shape_get_torch_nn_words():
    """torch.nn checks no state of a packed LSTM, and ATen refuses a wrong one only by accident
    (a matmul's or a broadcast's message, some shapes crash the process): fastrnn raises what
    torch.nn raises for the same states with the input unpacked."""
    reference, ours = module_pair("LSTM", I, H)
    x = torch.randn(T, B, I)
    h, c = torch.zeros(1, B, H), torch.zeros(1, B, H)
    for hx in [(torch.zeros(1, B, H - 2), c), (h, torch.zeros(1, B + 1, H)), (torch.zeros(2, B, H), c),
               (h, torch.zeros(2, B, H)), (torch.zeros(1, 1, B, H), c), (h, torch.zeros(1, B, H, 1))]:
        raises_like(torch_error(lambda: reference(x, hx)), lambda: ours(packed(x), hx))
    raises_like(torch_error(lambda: reference(torch.randn(T, B, I + 2))), lambda: ours(packed(torch.randn(T, B, I + 2))))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_zero_length_sequence_raises_like_torch(name):
    """torch's words, not the kernel's ('rnn_forward: expected sequence length ...'), before
    the state's dtype is looked at and before a batch of 0 returns empty results."""
    reference, ours = module_pair(name, I, H)
    reference_bf, ours_bf = module_pair(name, I, H, batch_first=True)
    h = torch.zeros(1, B, H)
    f64 = h.double()
    cases = [(reference, ours, (torch.randn(0, B, I),)), (reference, ours, (torch.randn(0, I),)),
             (reference_bf, ours_bf, (torch.randn(B, 0, I),)), (reference, ours, (torch.randn(0, 0, I),)),
             (reference, ours, (torch.randn(0, B, I), (h, h) if name == "LSTM" else h)),
             (reference, ours, (torch.randn(0, B, I), (f64, f64) if name == "LSTM" else f64))]
    for module_ref, module_ours, args in cases:
        for mode in ("train", "eval"):
            getattr(module_ref, mode)(), getattr(module_ours, mode)()
            same_error(lambda: module_ref(*args), lambda: module_ours(*args))
            with torch.no_grad():
                same_error(lambda: module_ref(*args), lambda: module_ours(*args))


def test_functional_zero_length_sequence_names_the_function():
    """fastrnn.functional has no torch counterpart: torch's words, prefixed by the function."""
    args = lstm_args(T=0)
    with pytest.raises(RuntimeError, match=re.escape("lstm: Expected sequence length to be larger than 0 in RNN")):
        F.lstm(**args)
    with pytest.raises(RuntimeError, match=re.escape("gru: Expected sequence length to be larger than 0 in RNN")):
        F.gru(torch.randn(0, 2, 4), None, torch.randn(15, 4), torch.randn(15, 5))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("argument", ["input_dropout", "recurrent_dropout"])
def test_dropout_arguments_are_checked_like_torchs_dropout(name, argument):
    """None once raised ValueError where torch's `dropout=None` raises TypeError (its float());
    each value is refused as torch refuses it for `dropout`, in its words with our name."""
    for value in [None, 1j, "abc", "0.5", True, False, -0.1, 1.5, float("nan"), torch.tensor(0.5), [0.5]]:
        expected = torch_error(lambda: getattr(torch.nn, name)(I, H, num_layers=2, dropout=value))
        message = str(expected).replace("dropout should", f"{argument} should")
        raises_like(type(expected)(message), lambda: getattr(fnn, name)(I, H, **{argument: value}))
    for value in [0, 0.0, 0.25, 1, np.float64(0.5)]:
        assert getattr(getattr(fnn, name)(I, H, **{argument: value}), argument) == float(value)


CELLS_NN = ["RNNCell", "LSTMCell", "GRUCell"]


def cell_state_cases(lstm):
    h = torch.zeros(B, H)
    cases = [("a tuple of three", (h, h, h)), ("a tuple of one", (h,)), ("a list", [h, h] if lstm else [h]),
             ("None inside", (h, None)), ("None first", (None, h)), ("an int", 3), ("a string", "ab"),
             ("a tensor", h), ("a stacked tensor", torch.zeros(2, B, H)), ("an empty tuple", ()),
             ("three, the third an int", (h, h, 5)), ("wrong batch", (torch.zeros(B + 1, H),) * 2 if lstm else
                                                                  torch.zeros(B + 1, H))]
    if lstm:
        cases += [("c of the wrong batch", (h, torch.zeros(B + 1, H))),
                  ("c of the wrong size", (h, torch.zeros(B, H + 1))),
                  ("h of the wrong size", (torch.zeros(B, H + 1), h))]
    return cases


@pytest.mark.parametrize("name", CELLS_NN)
def test_cell_states_of_the_wrong_kind_raise_like_torch(name):
    """LSTMCell with three states or one once raised nothing or IndexError where torch raises
    'lstm_cell expects two hidden states'; a c of the wrong size is torch's 'hidden0'."""
    reference, ours = module_pair(name, I, H)
    x = torch.randn(B, I)
    for description, hx in cell_state_cases(name == "LSTMCell"):
        for inp in (x, x[0]):
            try:
                same_outcome(lambda: reference(inp, hx), lambda: ours(inp, hx))
            except AssertionError as e:
                raise AssertionError(f"{name}, hx {description}, input {tuple(inp.shape)}: {e}") from e


@pytest.mark.parametrize("name", CELLS_NN)
def test_cell_dtype_errors_name_dtypes_like_torch(name):
    """torch's matmul names dtypes by its scalar types (Long, Bool, ComplexFloat, ...); fastrnn
    once printed torch.int64 for every dtype outside float32 and float64."""
    lstm = name == "LSTMCell"
    x, h = torch.randn(B, I), torch.zeros(B, H)
    dtypes = [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
              torch.uint8, torch.bool, torch.complex64, torch.complex128]
    for module_dtype in (torch.float32, torch.float64):
        reference, ours = module_pair(name, I, H)
        reference.to(module_dtype), ours.to(module_dtype)
        for dtype in dtypes:
            if dtype == module_dtype:
                continue
            cases = [(x.to(dtype), None), (x.to(module_dtype), (h.to(dtype), h.to(module_dtype)) if lstm else
                                           h.to(dtype)), (x.to(dtype)[0], None)]
            for args in cases:
                try:
                    same_error(lambda: reference(*args), lambda: ours(*args))
                except AssertionError as e:
                    raise AssertionError(f"{name} {module_dtype}, {dtype}: {e}") from e


def test_lstm_cell_state_c_of_another_dtype_is_promoted_like_torch():
    """torch's LSTMCell takes c of another dtype (c' = f * c + i * g promotes): so does ours."""
    reference, ours = module_pair("LSTMCell", I, H)
    x, h = torch.randn(B, I), torch.randn(B, H)
    for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool):
        c = torch.randn(B, H).to(dtype)
        expected, got = reference(x, (h, c)), ours(x, (h, c))
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5, check_dtype=True)
    c = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    sum(t.sum() for t in ours(x, (h, c))).backward()
    c_ref = c.detach().clone().requires_grad_(True)
    sum(t.sum() for t in reference(x, (h, c_ref))).backward()
    torch.testing.assert_close(c.grad, c_ref.grad, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", CELLS_NN)
def test_cell_unbatched_input_with_a_2d_state_of_hidden_size_rows(name):
    """torch.nn's cells pass such a state to ATen, which computes on it: LSTMCell crashes the
    process, GRUCell raises RuntimeError by accident, RNNCell returns (H, H). fastrnn raises
    RuntimeError in the words torch.nn's layers use for the same mistake."""
    lstm = name == "LSTMCell"
    _, ours = module_pair(name, I, H)
    hx = (torch.zeros(H, 2), torch.zeros(H, 2)) if lstm else torch.zeros(H, 2)
    message = ("For unbatched 1-D input, hx and cx should also be 1-D but got (2-D, 2-D) tensors" if lstm
               else "For unbatched 1-D input, hx should also be 1-D but got 2-D tensor")
    with pytest.raises(RuntimeError, match=re.escape(message)):
        ours(torch.randn(I), hx)


def test_rnn_cell_checks_the_input_before_the_nonlinearity_like_torch():
    reference, ours = module_pair("RNNCell", I, H, nonlinearity="sigmoid")
    for x, hx in [(torch.randn(2, B, I), None), (torch.randn(B, I), torch.zeros(2, B, H)), (torch.randn(B, I), None)]:
        same_error(lambda: reference(x, hx), lambda: ours(x, hx))


def test_non_tensor_inputs_raise_like_torch():
    for name in ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]:
        reference, ours = module_pair(name, I, H)
        for x in ([[0.0] * I], None, np.zeros((T, B, I), np.float32), 1.5):
            same_error(lambda: reference(x), lambda: ours(x))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_bidirectional_that_is_no_bool_raises_like_torch(name, value):
    """torch.nn builds a layer with bidirectional='yes' and refuses it in forward (ATen's
    arguments are bools: TypeError); fastrnn ran it as a bidirectional layer. (bias and
    batch_first are refused by torch's constructor, which fastrnn's layers inherit.)"""
    reference, ours = module_pair(name, I, H, bidirectional=value)
    x = torch.randn(T, B, I)
    same_error(lambda: reference(x), lambda: ours(x))
    same_error(lambda: reference(packed(x)), lambda: ours(packed(x)))
