"""fastrnn.numpy: the same kernels on NumPy arrays, and without torch in the process."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import fastrnn.numpy as frn
from conftest import DTYPES, assert_close
from reference import CELLS, torch_layer, torch_reference


def numpy_call(cell, x, h0, c0, params, reverse, training):
    if cell == "lstm":
        return frn.lstm(x, h0, c0, *params, reverse=reverse, training=training)
    if cell == "gru":
        return frn.gru(x, h0, *params, reverse=reverse, training=training)
    return frn.rnn(x, h0, *params, nonlinearity=cell.split("_")[1], reverse=reverse, training=training)


def numpy_backward(cell, ctx, dy, dh_n, dc_n):
    if cell == "lstm":
        return frn.lstm_backward(ctx, dy, dh_n, dc_n)
    return (frn.gru_backward if cell == "gru" else frn.rnn_backward)(ctx, dy, dh_n)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_backward_match_torch(cell, dtype, reverse):
    T, B, I, H = 9, 4, 7, 13
    layer = torch_layer(cell, I, H, True, dtype)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(B, H, dtype=dtype, requires_grad=True) if cell == "lstm" else None
    y, h_n, c_n = torch_reference(cell, layer, x, h0, c0, reverse)
    dy, dh_n = torch.randn_like(y), torch.randn_like(h_n)
    dc_n = torch.randn_like(c_n) if c_n is not None else None
    torch.autograd.backward([t for t in (y, h_n, c_n) if t is not None], [t for t in (dy, dh_n, dc_n) if t is not None])

    params = [p.detach().numpy() for p in layer.parameters()]
    outs = numpy_call(cell, x.detach().numpy(), h0.detach().numpy(),
                      None if c0 is None else c0.detach().numpy(), params, reverse, training=True)
    *outs, ctx = outs
    for ours, ref in zip(outs, (y, h_n, c_n)):
        assert isinstance(ours, np.ndarray) and ours.dtype == params[0].dtype
        assert_close(ours, ref, dtype)
    grads = numpy_backward(cell, ctx, dy.numpy(), dh_n.numpy(), None if dc_n is None else dc_n.numpy())
    expected = {"x": x.grad, "h0": h0.grad, "weight_ih": layer.weight_ih_l0.grad, "weight_hh": layer.weight_hh_l0.grad,
                "bias_ih": layer.bias_ih_l0.grad, "bias_hh": layer.bias_hh_l0.grad}
    if cell == "lstm":
        expected["c0"] = c0.grad
    assert set(grads) == set(expected)
    for name, ref in expected.items():
        assert_close(grads[name], ref, dtype, name)


def test_inference_returns_no_context_and_none_gradients_count_as_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3))
    w_ih, w_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    outs = frn.gru(x, None, w_ih, w_hh)
    assert len(outs) == 2
    y, h_n, ctx = frn.gru(x, None, w_ih, w_hh, training=True)
    np.testing.assert_array_equal(y, outs[0])
    grads = frn.gru_backward(ctx, None, None)
    assert grads["bias_ih"] is None and grads["bias_hh"] is None
    for name in ("x", "h0", "weight_ih", "weight_hh"):
        np.testing.assert_array_equal(grads[name], 0.0)


def test_works_in_a_process_without_torch(tmp_path):
    # Block torch outright in a child process, run forward and backward there, and compare
    # the saved results with torch.nn here.
    T, B, I, H = 6, 3, 5, 7
    layer = torch_layer("lstm", I, H, True, torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    inputs = {"x": x.detach().numpy()}
    inputs.update({name: p.detach().numpy() for name, p in layer.named_parameters()})
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None          # any `import torch` now raises ImportError
        import numpy as np
        import fastrnn, fastrnn.numpy as frn
        a = np.load({str(tmp_path / "inputs.npz")!r})
        w = [a[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
        y, h_n, c_n, ctx = frn.lstm(a["x"], None, None, *w, training=True)
        g = frn.lstm_backward(ctx, np.ones_like(y), None, None)
        np.savez({str(tmp_path / "out.npz")!r}, y=y, h_n=h_n, c_n=c_n, dx=g["x"], dw=g["weight_hh"])
        print(fastrnn.build_info()["isa"], "torch" in sys.modules and sys.modules["torch"] is not None)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "False"
    got = np.load(tmp_path / "out.npz")
    y, (h_n, c_n) = layer(x)
    y.sum().backward()
    assert_close(got["y"], y, torch.float64, "y")
    assert_close(got["h_n"], h_n[0], torch.float64, "h_n")
    assert_close(got["c_n"], c_n[0], torch.float64, "c_n")
    assert_close(got["dx"], x.grad, torch.float64, "dx")
    assert_close(got["dw"], layer.weight_hh_l0.grad, torch.float64, "dweight_hh")


def test_read_only_and_non_contiguous_arrays_are_accepted():
    rng = np.random.default_rng(1)
    x = np.asfortranarray(rng.standard_normal((4, 3, 2)))
    w_ih = rng.standard_normal((5, 2))
    w_hh = np.broadcast_to(rng.standard_normal((1, 5)), (5, 5))  # read-only, zero stride
    y, h_n = frn.rnn(x, None, w_ih, w_hh)
    y_ref, h_ref = frn.rnn(np.ascontiguousarray(x), None, w_ih, np.array(w_hh))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(h_n, h_ref)


def test_kernels_release_the_gil():
    # While a long forward runs in a thread, this thread keeps running Python: its loop
    # iterations land inside the kernel calls' intervals. Were the GIL held, none could.
    import threading
    import time

    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 32, 128))
    w_ih, w_hh = rng.standard_normal((512, 128)) * 0.1, rng.standard_normal((512, 128)) * 0.1
    calls = []

    def work():
        for _ in range(3):
            start = time.perf_counter()
            frn.lstm(x, None, None, w_ih, w_hh)
            calls.append((start, time.perf_counter()))

    worker = threading.Thread(target=work)
    stamps = []
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    stamps = np.array(stamps)
    margin = 1e-3  # away from the moments the GIL changes hands at a call's start and end
    inside = sum(int(((stamps > a + margin) & (stamps < b - margin)).sum()) for a, b in calls)
    assert inside > 100, (inside, calls)


# ---- Bad and unusual arguments: a clear Python exception, never an AttributeError or a crash ----

def lstm_arrays(T=4, B=3, I=5, H=6, dtype=np.float64, seed=3):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((T, B, I)).astype(dtype), h0=rng.standard_normal((B, H)).astype(dtype),
                c0=rng.standard_normal((B, H)).astype(dtype),
                weight_ih=rng.standard_normal((4 * H, I)).astype(dtype),
                weight_hh=rng.standard_normal((4 * H, H)).astype(dtype),
                bias_ih=rng.standard_normal(4 * H).astype(dtype), bias_hh=rng.standard_normal(4 * H).astype(dtype))


def forward_calls():
    """(op, its function, its arguments) for each forward, with the LSTM's arrays cut to fit."""
    a = lstm_arrays()
    H = a["h0"].shape[1]
    rnn = {k: (v[:H] if k.startswith(("weight", "bias")) else v) for k, v in a.items() if k != "c0"}
    gru = {k: (v[:3 * H] if k.startswith(("weight", "bias")) else v) for k, v in a.items() if k != "c0"}
    return [("lstm", frn.lstm, a), ("gru", frn.gru, gru), ("rnn", frn.rnn, rnn)]


@pytest.mark.parametrize("name", ["x", "weight_ih", "weight_hh"])
@pytest.mark.parametrize("op", ["lstm", "gru", "rnn"])
def test_none_for_a_required_array_is_a_type_error_naming_it(op, name):
    _, fn, args = next(c for c in forward_calls() if c[0] == op)
    with pytest.raises(TypeError, match=rf"^{op}: expected {name} to be a float32 or float64 array, got None$"):
        fn(**{**args, name: None})


NOT_NUMBERS = {
    "str": ("abc", "of dtype <U3"),
    "dict": ({}, "of dtype object"),
    "object": (object(), "of dtype object"),
    "list of str": (["a", "b"], "of dtype <U1"),
    "ragged list": ([[1.0, 2.0], [3.0]], "NumPy cannot convert the list given"),
    "tensor needing grad": (torch.zeros(2, requires_grad=True), "NumPy cannot convert the Tensor given"),
    "bfloat16 tensor": (torch.zeros(2, dtype=torch.bfloat16), "NumPy cannot convert the Tensor given"),
}


@pytest.mark.parametrize("value,message", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
@pytest.mark.parametrize("name", ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"])
def test_arguments_that_are_not_numbers_are_type_errors_naming_them(name, value, message):
    with pytest.raises(TypeError, match=rf"^lstm: expected {name} to be a float32 or float64 array") as info:
        frn.lstm(**{**lstm_arrays(), name: value})
    assert message in str(info.value)


@pytest.mark.parametrize("value,message", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
@pytest.mark.parametrize("name", ["dy", "dh_n", "dc_n"])
def test_gradients_that_are_not_numbers_are_type_errors_naming_them(name, value, message):
    *_, ctx = frn.lstm(**lstm_arrays(), training=True)
    grads = {"dy": None, "dh_n": None, "dc_n": None, name: value}
    with pytest.raises(TypeError, match=rf"^lstm_backward: expected {name} to be a float32 or float64 array") as info:
        frn.lstm_backward(ctx, **grads)
    assert message in str(info.value)


def test_a_scalar_for_an_array_is_reported_as_0_d():
    with pytest.raises(RuntimeError, match=r"Expected h0 to be 2-D \(batch, hidden_size\), got 0-D"):
        frn.lstm(**{**lstm_arrays(), "h0": 1.0})
    with pytest.raises(ValueError, match="Expected input to be 3-D .* got 0-D"):
        frn.lstm(**{**lstm_arrays(), "x": np.float64(1.0)})
    *_, ctx = frn.lstm(**lstm_arrays(), training=True)
    with pytest.raises(RuntimeError, match=r"Expected dy of size \(4, 3, 6\), got \(\)"):
        frn.lstm_backward(ctx, 0.0, None, None)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, np.bool_, np.longdouble], ids=str)
def test_unsupported_dtypes_are_refused(dtype):
    with pytest.raises(RuntimeError, match="not supported; expected one of float32, float64"):
        frn.lstm(**{k: v.astype(dtype) for k, v in lstm_arrays().items()})
    with pytest.raises(ValueError, match=f"input dtype \\({np.dtype(dtype)}\\) does not match weight dtype"):
        frn.lstm(**{**lstm_arrays(), "x": lstm_arrays()["x"].astype(dtype)})


@pytest.mark.parametrize("name", ["reverse", "training"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_flags_must_be_bools(name, value):
    # bool("no") is True: taking any value's truth would silently run the other direction.
    with pytest.raises(TypeError, match=f"lstm: expected {name} to be a bool, got {type(value).__name__}"):
        frn.lstm(**lstm_arrays(), **{name: value})
    frn.lstm(**lstm_arrays(), **{name: np.bool_(False)})


@pytest.mark.parametrize("value", [["tanh"], None, 0])
def test_nonlinearity_of_another_type_raises_torchs_value_error(value):
    _, _, args = forward_calls()[2]
    with pytest.raises(ValueError, match=re.escape(f"Unknown nonlinearity '{value}'. Select from 'tanh' or 'relu'.")):
        frn.rnn(**args, nonlinearity=value)


def big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def unaligned(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(raw.data, a.dtype, a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def strided(a):  # every other element along each axis of a twice larger array
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    return big[tuple(slice(None, None, 2) for _ in a.shape)]


LAYOUTS = {
    "reversed": lambda a: np.flip(a).copy()[tuple(slice(None, None, -1) for _ in a.shape)],
    "fortran": np.asfortranarray,
    "strided": strided,
    "read-only": read_only,
    "big-endian": big_endian,
    "unaligned": unaligned,
    "list": lambda a: a.tolist(),
    "torch": torch.from_numpy,
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUTS.keys())
def test_any_layout_gives_the_dense_result(layout):
    # Each argument in turn in another layout (the others dense): the same outputs and gradients,
    # to the bit, as with dense arrays; the caller's arrays are never written.
    make = LAYOUTS[layout]
    args = lstm_arrays()  # float64, as a list of Python floats becomes
    y, h_n, c_n, ctx = frn.lstm(**args, training=True)
    rng = np.random.default_rng(4)
    grads = {"dy": rng.standard_normal(y.shape), "dh_n": rng.standard_normal(h_n.shape),
             "dc_n": rng.standard_normal(c_n.shape)}
    expected = frn.lstm_backward(ctx, **grads)
    for name in list(args) + list(grads):
        given = dict(args)
        given_grads = dict(grads)
        target = given if name in args else given_grads
        target[name] = make(target[name])
        before = np.asarray(target[name]).copy()
        y2, h2, c2, ctx2 = frn.lstm(**given, training=True)
        for ours, ref in ((y2, y), (h2, h_n), (c2, c_n)):
            np.testing.assert_array_equal(ours, ref, err_msg=name)
        got = frn.lstm_backward(ctx2, **given_grads)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name}: d{key}")
        np.testing.assert_array_equal(np.asarray(target[name]), before, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_input_size_zero_is_the_recurrence_alone(cell):
    # torch.nn refuses input_size 0 in its constructor; an array API has no constructor, and
    # (T, B, 0) is a valid array: the layer is then its recurrence on the biases, the same as
    # with an input of zeros.
    rng = np.random.default_rng(5)
    T, B, H = 5, 3, 7
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    w_hh, b_ih, b_hh = rng.standard_normal((gates * H, H)), rng.standard_normal(gates * H), rng.standard_normal(gates * H)
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    empty = numpy_call(cell, np.zeros((T, B, 0)), h0, c0, [np.zeros((gates * H, 0)), w_hh, b_ih, b_hh], False, True)
    zeros = numpy_call(cell, np.zeros((T, B, 1)), h0, c0, [rng.standard_normal((gates * H, 1)), w_hh, b_ih, b_hh],
                       False, True)
    for ours, ref in zip(empty[:-1], zeros[:-1]):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H)) if cell == "lstm" else None
    g_empty = numpy_backward(cell, empty[-1], dy, dh_n, dc_n)
    g_zeros = numpy_backward(cell, zeros[-1], dy, dh_n, dc_n)
    assert g_empty["x"].shape == (T, B, 0) and g_empty["weight_ih"].shape == (gates * H, 0)
    for key in set(g_empty) - {"x", "weight_ih"}:
        np.testing.assert_allclose(g_empty[key], g_zeros[key], rtol=1e-12, atol=1e-12, err_msg=key)
