"""fastrnn.optim.clip_grad_norm_ against torch.nn.utils.clip_grad_norm_."""

import math
import re

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
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
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


def mixed_grads(dtypes, scale=3.0, seed=1):
    """Twin parameter lists with gradients of the given dtypes, odd sizes."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7,), (13, 5), (), (37, 3)]
    a, b = [], []
    for dtype, shape in zip(dtypes, shapes):
        g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) * scale
        for out in (a, b):
            p = torch.zeros(shape, dtype=dtype, requires_grad=True)
            p.grad = g.clone()
            out.append(p)
    return a, b


def assert_clip_matches(ours, ref, max_norm=1.0, **kwargs):
    """The same norm (dtype, shape, value) and the same clipped gradients as torch; the value
    within float32 rounding where float32 gradients took part (torch sums their squares in
    float32, the kernels in float64)."""
    expected = torch.nn.utils.clip_grad_norm_(ref, max_norm, **kwargs)
    got = fo.clip_grad_norm_(ours, max_norm, **kwargs)
    ours, ref = ([ours], [ref]) if isinstance(ref, torch.Tensor) else (ours, ref)
    assert (got.dtype, got.shape, got.device) == (expected.dtype, expected.shape, expected.device)
    float32 = any(p.grad.dtype == torch.float32 for p in ref if p.grad is not None)
    tol = dict(rtol=2e-6, atol=1e-30) if float32 else dict(rtol=1e-12, atol=0)
    torch.testing.assert_close(got, expected, **tol, equal_nan=True)
    for a, b in zip(ours, ref):
        if b.grad is not None:
            assert a.grad.dtype == b.grad.dtype
            torch.testing.assert_close(a.grad, b.grad, **tol, equal_nan=True)


ORDERS = [(torch.float32, torch.float64), (torch.float64, torch.float32, torch.float64, torch.float32),
          (torch.float32,) * 3, (torch.float64,) * 3]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, 0.0, -1.0, -2.0, math.nan])
@pytest.mark.parametrize("dtypes", ORDERS, ids=lambda d: "-".join(str(t)[6:] for t in d))
def test_mixed_dtypes_follow_torchs_promotion(dtypes, norm_type):
    """torch stacks the per-gradient norms (each in its gradient's dtype), so the total norm has
    the promoted dtype: float64 as soon as one float64 gradient takes part."""
    ours, ref = mixed_grads(dtypes)
    assert_clip_matches(ours, ref, 0.5, norm_type=norm_type)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_foreach_takes_the_same_path(foreach):
    ours, ref = mixed_grads((torch.float32, torch.float64, torch.float32))
    assert_clip_matches(ours, ref, 0.5, foreach=foreach)


@pytest.mark.parametrize("norm_type", [2.0, 3.0, 1.0])
@pytest.mark.parametrize("dtypes", [(torch.float32,) * 2, (torch.float32, torch.float64)], ids=str)
def test_float32_norm_overflows_as_in_torch(dtypes, norm_type):
    """torch accumulates a float32 gradient's norm in float32: with a gradient of 1e30 the 2-
    and 3-norms are infinite (the gradients are then scaled by 0) and error_if_nonfinite
    raises; the 1-norm stays finite."""
    def grads():
        ours, ref = mixed_grads(dtypes)
        for params in (ours, ref):
            params[0].grad[3] = 1e30
        return ours, ref

    assert_clip_matches(*grads(), 1.0, norm_type=norm_type)
    ours, ref = grads()
    if norm_type == 1.0:
        assert_clip_matches(ours, ref, 1.0, norm_type=norm_type, error_if_nonfinite=True)
        return
    with pytest.raises(RuntimeError) as expected:
        torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=re.escape(str(expected.value))):
        fo.clip_grad_norm_(ours, 1.0, norm_type, error_if_nonfinite=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.0])
def test_zero_element_gradients(dtype, norm_type):
    for shapes in (((0,), (4, 0)), ((4, 0), (7,), (0, 3, 5))):
        ours, ref = [], []
        for shape in shapes:
            for out in (ours, ref):
                p = torch.zeros(shape, dtype=dtype, requires_grad=True)
                p.grad = torch.linspace(-3, 5, math.prod(shape), dtype=dtype).reshape(shape)
                out.append(p)
        assert_clip_matches(ours, ref, 0.5, norm_type=norm_type)


@pytest.mark.parametrize("norm_type", [math.inf, -math.inf, -1.0])
@pytest.mark.parametrize("foreach", [None, True, False])
def test_norms_without_identity_of_an_empty_gradient_raise_as_in_torch(foreach, norm_type):
    ours, ref = mixed_grads((torch.float32, torch.float32))
    for params in (ours, ref):
        params.append(torch.zeros(4, 0, requires_grad=True))
        params[-1].grad = torch.zeros(4, 0)
    with pytest.raises(RuntimeError) as expected:
        torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type, foreach=foreach)
    with pytest.raises(RuntimeError, match=re.escape(str(expected.value))):
        fo.clip_grad_norm_(ours, 1.0, norm_type, foreach=foreach)


def test_empty_inputs_as_in_torch():
    # An empty list: a float32 zero, no warning; an empty generator: torch's warning too.
    expected = torch.nn.utils.clip_grad_norm_([], 1.0)
    got = fo.clip_grad_norm_([], 1.0)
    assert (got.dtype, got.shape, got.item()) == (expected.dtype, expected.shape, expected.item())
    with pytest.warns(UserWarning) as expected_warning:
        torch.nn.utils.clip_grad_norm_((p for p in []), 1.0)
    with pytest.warns(UserWarning, match=re.escape(str(expected_warning[0].message))):
        got = fo.clip_grad_norm_((p for p in []), 1.0)
    assert (got.dtype, got.item()) == (expected.dtype, expected.item())
    # A single tensor of either dtype.
    for dtype in (torch.float32, torch.float64):
        ours, ref = mixed_grads((dtype,))
        assert_clip_matches(ours[0], ref[0], 0.5)
