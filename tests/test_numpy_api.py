"""fastrnn.numpy: the same kernels on NumPy arrays, and without torch in the process."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import fastrnn.numpy as frn
from conftest import CELLS, DTYPES, assert_close, torch_layer, torch_reference


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
