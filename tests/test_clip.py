"""fastrnn.optim.clip_grad_norm_ against torch.nn.utils.clip_grad_norm_."""

import math

import pytest
import torch

import fastrnn.optim as fo


def twin_grads(dtype, special=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7,), (13, 5), (), (37, 3, 2)]
    a = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in shapes]
    b = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in shapes]
    for x, y in zip(a, b):
        g = torch.randn(x.shape, generator=gen, dtype=dtype) * 3
        x.grad, y.grad = g.clone(), g.clone()
    if special is not None:
        a[1].grad[2, 3] = b[1].grad[2, 3] = special
    return a, b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_matches_torch(dtype, norm_type, max_norm):
    ref, ours = twin_grads(dtype)
    expected = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    got = fo.clip_grad_norm_(ours, max_norm, norm_type)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    torch.testing.assert_close(got, expected, **tol)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, **tol)


@pytest.mark.parametrize("special", [math.inf, math.nan])
def test_non_finite_gradients(special):
    ref, ours = twin_grads(torch.float32, special)
    expected = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    got = fo.clip_grad_norm_(ours, 1.0)
    torch.testing.assert_close(got, expected, equal_nan=True)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    ref, ours = twin_grads(torch.float32, special)
    with pytest.raises(RuntimeError) as expected_error:
        torch.nn.utils.clip_grad_norm_(ref, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as got_error:
        fo.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    assert str(got_error.value) == str(expected_error.value)


def test_inputs_torch_accepts():
    # A single tensor, a generator, parameters without gradients, none with a gradient.
    ref, ours = twin_grads(torch.float64)
    ref[0].grad = ours[0].grad = None
    expected = torch.nn.utils.clip_grad_norm_((p for p in ref), 0.1)
    got = fo.clip_grad_norm_((p for p in ours), 0.1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(fo.clip_grad_norm_(ours[1], 0.01), torch.nn.utils.clip_grad_norm_(ref[1], 0.01))
    empty = [torch.zeros(3, requires_grad=True)]
    assert torch.equal(fo.clip_grad_norm_(empty, 1.0), torch.nn.utils.clip_grad_norm_(empty, 1.0))


def test_what_the_kernels_do_not_take_goes_to_torch():
    # float16 gradients and a negative-infinity norm type follow torch's own code.
    for norm_type, dtype in ((2.0, torch.float16), (-math.inf, torch.float32)):
        ref, ours = twin_grads(dtype)
        torch.testing.assert_close(fo.clip_grad_norm_(ours, 1.0, norm_type),
                                   torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type))
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a.grad, b.grad)
