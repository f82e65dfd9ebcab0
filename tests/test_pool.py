"""fastrnn's MaxPool2d / AvgPool2d against torch.nn.functional: every option combination on odd
shapes, values, indices and gradients, NaN/Inf, the SIMD paths under each instruction set,
custom-op registration, the modules, and torch's errors for bad arguments."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastrnn.functional as FF
import fastrnn.nn as fnn
from fastrnn import _C
from fastrnn.ops import pool as _pool

from conftest import DTYPES, assert_close

KERNELS = [1, 2, 3, (2, 3), 4]
STRIDES = [None, 1, 2, (2, 1), 3]
PADDINGS = [0, 1, (1, 0), 2]
DILATIONS = [1, 2, (2, 1)]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's reference runs on one thread: its OpenMP barriers cost tens of milliseconds per
    call on a shared, loaded machine, and these tests run thousands of small calls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _valid(kernel, stride, padding, dilation, shape=(13, 17)):
    """Whether torch accepts these arguments for an input of `shape`."""
    k, p, d = _pair(kernel), _pair(padding), _pair(dilation)
    s = k if stride is None else _pair(stride)
    for i in range(2):
        if p[i] > ((k[i] - 1) * d[i] + 1) // 2 or p[i] > k[i] // 2:
            return False
        if _pool.output_size(shape[i], k[i], p[i], s[i], d[i], False) < 1:
            return False
    return True


MAX_CASES = [c for c in itertools.product(KERNELS, STRIDES, PADDINGS, DILATIONS) if _valid(*c)]
AVG_CASES = [c for c in itertools.product(KERNELS, STRIDES, PADDINGS) if _valid(*c, 1)]


def _input(shape, dtype, batched=True, seed=0):
    torch.manual_seed(seed)
    return torch.randn(shape if batched else shape[1:], dtype=dtype)


def _slots_as_positions(slots, x, kernel, stride=None, padding=0, dilation=1):
    """uint8 window slots (kh * kW + kw) -> torch's int64 flat positions."""
    k, p, d = _pair(kernel), _pair(padding), _pair(dilation)
    s = k if stride is None else _pair(stride)
    return _pool.flat_positions(slots, x.shape[-1], k, s, p, d)


def _check_max(x, dtype, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Values, indices and the input gradient against torch; training without return_indices
    (uint8 window slots where the window has at most 256 elements) too."""
    ref_x = x.detach().clone().requires_grad_()
    our_x = x.detach().clone().requires_grad_()
    ref_y, ref_i = F.max_pool2d(ref_x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    our_y, our_i = FF.max_pool2d(our_x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    assert_close(our_y, ref_y, dtype, "output")
    assert our_i.dtype == torch.int64 and torch.equal(our_i, ref_i), "indices differ"
    grad = torch.randn_like(ref_y)
    ref_y.backward(grad)
    our_y.backward(grad)
    assert_close(our_x.grad, ref_x.grad, dtype, "grad_input")
    slot_x = x.detach().clone().requires_grad_()
    FF.max_pool2d(slot_x, kernel, stride, padding, dilation, ceil_mode).backward(grad)
    assert_close(slot_x.grad, ref_x.grad, dtype, "grad_input (trained without indices)")
    # Without indices (inference): the same values.
    with torch.no_grad():
        assert_close(FF.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode), ref_y, dtype, "no-index output")


def _check_avg(x, dtype, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    ref_x = x.detach().clone().requires_grad_()
    our_x = x.detach().clone().requires_grad_()
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ref_y = F.avg_pool2d(ref_x, *args)
    our_y = FF.avg_pool2d(our_x, *args)
    assert_close(our_y, ref_y, dtype, "output")
    grad = torch.randn_like(ref_y)
    ref_y.backward(grad)
    our_y.backward(grad)
    assert_close(our_x.grad, ref_x.grad, dtype, "grad_input")
    with torch.no_grad():
        assert_close(FF.avg_pool2d(x, *args), ref_y, dtype, "no-grad output")


# ---- Every option ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,dilation", MAX_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_options(kernel, stride, padding, dilation, ceil_mode, dtype):
    # Batched in float64, unbatched (C, H, W) in float32.
    x = _input((2, 3, 13, 17), dtype, batched=dtype == torch.float64)
    _check_max(x, dtype, kernel, stride, padding, dilation, ceil_mode)


@pytest.mark.parametrize("divisor_override", [None, -3])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kernel,stride,padding", AVG_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_options(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, dtype):
    x = _input((2, 3, 13, 17), dtype, batched=dtype == torch.float64)
    _check_avg(x, dtype, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)


# ---- The SIMD windows (2x2 and 3x3, stride 1 or 2) under every instruction set -----------------------------

FAST_SHAPES = [(2, 3, 28, 28), (1, 2, 37, 53), (2, 2, 56, 57), (3, 5, 11, 7), (1, 1, 9, 40)]
# (kernel, stride, padding); backward: 2x2/2 both pools, 3x3/2 the average (a gather).
FAST_WINDOWS = [(2, 2, 0), (2, 2, 1), (3, 2, 0), (3, 2, 1), (2, 1, 0), (2, 1, 1), (3, 1, 0), (3, 1, 1)]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kernel,stride,padding", FAST_WINDOWS)
@pytest.mark.parametrize("shape", FAST_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_windows_match_the_reference(isa, shape, kernel, stride, padding, ceil_mode, dtype):
    x = _input(shape, dtype, seed=sum(shape))
    _check_max(x, dtype, kernel, stride, padding, 1, ceil_mode)
    for count_include_pad, divisor in ((True, None), (False, None), (True, 5)):
        _check_avg(x, dtype, kernel, stride, padding, ceil_mode, count_include_pad, divisor)


@pytest.mark.parametrize("width", [1023, 1024, 1025, 1030])
def test_avg_gather_width_limit(isa, width):
    """The 3x3/2 average backward's gather takes inputs up to 1024 wide, the portable scatter wider ones."""
    x = _input((1, 2, 5, width), torch.float64, seed=width)
    for padding, ceil_mode, count_include_pad in ((1, False, True), (0, True, False), (1, True, False)):
        _check_avg(x, torch.float64, 3, 2, padding, ceil_mode, count_include_pad)


@pytest.mark.parametrize("kernel,stride,padding", FAST_WINDOWS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_matches_generic(kernel, stride, padding, dtype):
    """The SIMD path gives the portable path's results: same values, same indices, same gradients."""
    x = _input((2, 3, 31, 45), dtype, seed=3)
    results = {}
    previous = _C.get_isa()
    try:
        for isa in _C.supported_isas():
            _C.set_isa(isa)
            xr = x.clone().requires_grad_()
            y, i = FF.max_pool2d(xr, kernel, stride, padding, return_indices=True)
            y.backward(torch.ones_like(y))
            xs = x.clone().requires_grad_()
            FF.max_pool2d(xs, kernel, stride, padding).backward(torch.ones_like(y))
            _, slots = _pool.max_pool2d_impl(x, *_lists(kernel, stride, padding, 1), False, True, True)
            a = FF.avg_pool2d(x, kernel, stride, padding)
            results[isa] = (y.detach(), i, xr.grad, slots, xs.grad, a)
    finally:
        _C.set_isa(previous)
    y0, i0, g0, s0, gs0, a0 = results["generic"]
    for isa, (y, i, g, slots, gs, a) in results.items():
        assert torch.equal(y, y0) and torch.equal(i, i0) and torch.equal(g, g0), isa
        assert torch.equal(slots, s0) and torch.equal(gs, gs0), isa
        assert_close(a, a0, dtype, isa)


# ---- Special values --------------------------------------------------------------------------------


def _with_specials(shape, dtype, seed):
    """Random input with NaN, +-Inf and ties (small integers) sprinkled in."""
    torch.manual_seed(seed)
    x = torch.randint(-3, 4, shape).to(dtype)
    flat = x.view(-1)
    n = flat.numel()
    for value, count in ((float("nan"), n // 40), (float("inf"), n // 40), (float("-inf"), n // 10)):
        flat[torch.randint(0, n, (count,))] = value
    return x


@pytest.mark.parametrize("kernel,stride,padding,dilation", [(2, 2, 0, 1), (3, 2, 1, 1), (2, 2, 1, 1), (3, 1, 1, 2),
                                                            ((2, 3), (1, 2), (1, 1), 1), (3, 1, 1, 1), (2, 1, 0, 1),
                                                            (3, 1, 0, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_and_ties(isa, kernel, stride, padding, dilation, dtype):
    """A NaN in a window wins (its index is the last NaN's, as torch), equal maxima give the first
    index, infinities pass through; average pooling propagates them too."""
    for seed, shape in enumerate([(2, 3, 28, 28), (2, 3, 13, 37)]):
        x = _with_specials(shape, dtype, seed)
        ref_y, ref_i = F.max_pool2d(x, kernel, stride, padding, dilation, return_indices=True)
        our_y, our_i = FF.max_pool2d(x, kernel, stride, padding, dilation, return_indices=True)
        assert_close(our_y, ref_y, dtype, "max output")
        assert torch.equal(our_i, ref_i), "max indices"
        assert_close(FF.max_pool2d(x, kernel, stride, padding, dilation), ref_y, dtype, "max output without indices")
        slot_y, slots = _pool.max_pool2d_impl(x, *_lists(kernel, stride, padding, dilation), False, True, True)
        assert slots.dtype == torch.uint8 and torch.equal(_slots_as_positions(slots, x, kernel, stride, padding,
                                                                               dilation), ref_i), "window slots"
        assert_close(slot_y, ref_y, dtype, "max output with window slots")
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        F.max_pool2d(xr, kernel, stride, padding, dilation).sum().backward()
        FF.max_pool2d(xo, kernel, stride, padding, dilation).sum().backward()
        assert_close(xo.grad, xr.grad, dtype, "max grad")
        assert_close(FF.avg_pool2d(x, kernel, stride, padding), F.avg_pool2d(x, kernel, stride, padding), dtype, "avg")


def _lists(kernel, stride, padding, dilation):
    """The custom ops' argument lists (kernel_size, stride, padding, dilation)."""
    k = list(_pair(kernel))
    return k, k if stride is None else list(_pair(stride)), list(_pair(padding)), list(_pair(dilation))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,dilation", MAX_CASES)
def test_window_slots_are_torch_indices(kernel, stride, padding, dilation, ceil_mode):
    """The uint8 window slots kept for training name the element torch's indices name, ties and
    NaN included, for every option (the portable code; the SIMD windows: test_simd_windows_match_the_reference)."""
    x = _with_specials((2, 3, 13, 17), torch.float64, 7)
    _, ref_i = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    _, slots = _pool.max_pool2d_impl(x, *_lists(kernel, stride, padding, dilation), ceil_mode, True, True)
    assert slots.dtype == torch.uint8
    assert torch.equal(_slots_as_positions(slots, x, kernel, stride, padding, dilation), ref_i)


@pytest.mark.parametrize("kernel,window_slots", [((16, 16), True), ((16, 17), False), ((1, 257), False)])
def test_window_slot_limit(kernel, window_slots):
    """Windows of up to 256 elements train with uint8 slots, larger ones with int64 positions."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 260, dtype=torch.float64)
    ref_x, our_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref_y = F.max_pool2d(ref_x, kernel, (1, 3), (0, 1))
    our_y = FF.max_pool2d(our_x, kernel, (1, 3), (0, 1))
    assert our_y.grad_fn.saved_tensors[0].dtype == (torch.uint8 if window_slots else torch.int64)
    grad = torch.randn_like(ref_y)
    ref_y.backward(grad)
    our_y.backward(grad)
    assert_close(our_y, ref_y, torch.float64, "output")
    assert_close(our_x.grad, ref_x.grad, torch.float64, "grad_input")
    with pytest.raises(RuntimeError, match="at most 256"):
        _pool.max_pool2d_impl(x, [16, 17], [1, 3], [0, 1], [1, 1], False, True, True)


@pytest.mark.parametrize("shape", [(1, 2, 6, 6), (1, 2, 9, 40)])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (3, 1, 1), (2, 2, 1), (2, 1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_minus_infinity_windows(isa, shape, kernel, stride, padding, dtype):
    """An all -inf window's index is its first element inside the input (the SIMD edge blocks
    read the padding as -inf and must not pick it)."""
    x = torch.full(shape, float("-inf"), dtype=dtype)
    x[..., 3, 5] = float("nan")
    for ceil_mode in (False, True):
        ref_y, ref_i = F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        our_y, our_i = FF.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        assert torch.equal(our_y.isnan(), ref_y.isnan()) and torch.equal(our_i, ref_i)
        assert torch.equal(our_y.nan_to_num(), ref_y.nan_to_num())
        _, slots = _pool.max_pool2d_impl(x, *_lists(kernel, stride, padding, 1), ceil_mode, True, True)
        assert torch.equal(_slots_as_positions(slots, x, kernel, stride, padding), ref_i)


# ---- Gradients and registration ---------------------------------------------------------------------------


GRADCHECK_CASES = [
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d", dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    ("max_pool2d", dict(kernel_size=2)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), divisor_override=5)),
    ("avg_pool2d", dict(kernel_size=2)),
]


@pytest.mark.parametrize("pool, args", GRADCHECK_CASES,
                         ids=[f"{pool}-{k % 3}" for k, (pool, _) in enumerate(GRADCHECK_CASES)])
def test_pool_gradients_pass_gradcheck_and_gradgradcheck(pool, args):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: getattr(FF, pool)(t, **args), (x,))
    assert torch.autograd.gradgradcheck(lambda t: getattr(FF, pool)(t, **args), (x,))


def test_custom_ops_keep_their_registered_autograd():
    """Eager training runs autograd.Functions; the custom ops (taken under torch.compile, tensor
    subclasses, dispatch modes) keep their own registered autograd, double backward included."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    for f in (lambda t: _pool.max_pool2d_op(t, [3, 3], [2, 2], [1, 1], [1, 1], True, True)[0],
              lambda t: _pool.max_pool2d_op(t, [3, 2], [2, 1], [1, 1], [1, 2], True, True, True)[0],
              lambda t: _pool.avg_pool2d_op(t, [3, 3], [2, 2], [1, 1], True, False, None)):
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))
    ref = x.detach().clone().requires_grad_()
    _pool.max_pool2d_op(ref, [3, 3], [1, 1], [1, 1], [1, 1], False, True)[0].sum().backward()
    FF.max_pool2d(x, 3, 1, 1).sum().backward()
    assert torch.equal(x.grad, ref.grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 13, dtype=dtype, requires_grad=True)
    max_args = ([3, 3], [2, 2], [1, 1], [1, 1], True)
    avg_args = ([3, 2], [2, 1], [1, 0], True, False, None)
    torch.library.opcheck(_pool.max_pool2d_op, (x, *max_args, True))
    torch.library.opcheck(_pool.avg_pool2d_op, (x, *avg_args))
    _, indices = _pool.max_pool2d_op(x.detach(), *max_args, True)
    grad = torch.randn(indices.shape, dtype=dtype, requires_grad=True)
    torch.library.opcheck(_pool.max_pool2d_backward_op, (grad, indices, list(x.shape), *max_args))
    torch.library.opcheck(_pool.max_pool2d_op, (x, *max_args, True, True))
    _, slots = _pool.max_pool2d_op(x.detach(), *max_args, True, True)
    torch.library.opcheck(_pool.max_pool2d_backward_op, (grad, slots, list(x.shape), *max_args))
    grad = torch.randn(_pool.pooled_shape(x.shape, [3, 2], [2, 1], [1, 0], [1, 1], True), dtype=dtype,
                       requires_grad=True)
    torch.library.opcheck(_pool.avg_pool2d_backward_op, (grad, list(x.shape), *avg_args))


def test_torch_compile():
    x = torch.randn(2, 3, 10, 12)
    fn = torch.compile(lambda t: FF.max_pool2d(t, 2) + FF.avg_pool2d(t, 2), fullgraph=True, backend="aot_eager")
    assert_close(fn(x), F.max_pool2d(x, 2) + F.avg_pool2d(x, 2), torch.float32)
    # Training under compile keeps window slots through the custom op.
    ref_x, our_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    (F.max_pool2d(ref_x, 3, 2, 1) ** 2).sum().backward()
    train = torch.compile(lambda t: (FF.max_pool2d(t, 3, 2, 1) ** 2).sum(), fullgraph=True, backend="aot_eager")
    train(our_x).backward()
    assert_close(our_x.grad, ref_x.grad, torch.float32)


def test_backward_without_indices_raises():
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    y, _ = _pool.max_pool2d_op(x, [2, 2], [2, 2], [0, 0], [1, 1], False, False)
    with pytest.raises(RuntimeError, match="saved nothing"):
        y.sum().backward()


# ---- Layouts and shapes --------------------------------------------------------------------------


def test_strided_and_channels_last_input():
    torch.manual_seed(0)
    base = torch.randn(2, 5, 14, 20)
    for x in (base.to(memory_format=torch.channels_last), base[:, :, ::2, 1:], base.transpose(2, 3)):
        _check_max(x, torch.float32, 3, 2, 1)
        _check_avg(x, torch.float32, 2, 2, 1)


def test_empty_batch_pools_to_torchs_shapes():
    x = torch.randn(0, 3, 9, 9)
    assert FF.max_pool2d(x, 2).shape == F.max_pool2d(x, 2).shape
    y, i = FF.max_pool2d(x, 2, return_indices=True)
    assert i.shape == y.shape == (0, 3, 4, 4)
    assert FF.avg_pool2d(x, 3, 1, 1).shape == F.avg_pool2d(x, 3, 1, 1).shape


def test_many_threads_share_one_plane():
    """A single large plane is split between the threads by rows: the backward must add the
    gradients of windows that straddle two threads' rows. (torch and fastrnn share the OpenMP
    runtime: this sets the thread count of both.)"""
    torch.set_num_threads(3)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 301, 257, dtype=torch.float64)
    _check_max(x, torch.float64, 3, 1, 1)
    _check_max(x, torch.float64, 2, 2, 1)
    _check_avg(x, torch.float64, 3, 2, 1)
    _check_avg(x, torch.float64, 2, 2, 0)


# ---- Modules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=2, padding=1, dilation=(2, 1),
                                                              return_indices=True, ceil_mode=True)])
def test_max_pool_module_matches_torch(kwargs):
    ours, ref = fnn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs)
    assert repr(ours) == repr(ref) and ours.extra_repr() == ref.extra_repr()
    assert ours.state_dict() == ref.state_dict()
    assert isinstance(ours, torch.nn.MaxPool2d)
    x = torch.randn(2, 3, 11, 13)
    a, b = ours(x), ref(x)
    if kwargs.get("return_indices"):
        assert_close(a[0], b[0], torch.float32) and torch.equal(a[1], b[1])
    else:
        assert_close(a, b, torch.float32)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=(1, 2), padding=1, ceil_mode=True,
                                                              count_include_pad=False, divisor_override=4)])
def test_avg_pool_module_matches_torch(kwargs):
    ours, ref = fnn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs)
    assert repr(ours) == repr(ref) and ours.state_dict() == ref.state_dict()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 11, 13)
    assert_close(ours(x), ref(x), torch.float32)


# ---- Errors ------------------------------------------------------------------------------------------------

_X = torch.randn(2, 3, 9, 9)
BAD_MAX = [
    (torch.randn(9, 9), (2,), {}), (torch.randn(1, 2, 3, 9, 9), (2,), {}), (torch.randn(9), (2,), {}),
    (_X, (0,), {}), (_X, (0,), dict(stride=1)), (_X, (-1,), dict(stride=1)), (_X, (2,), dict(stride=0)),
    (_X, (2,), dict(stride=-1)), (_X, (2,), dict(dilation=0)), (_X, (2,), dict(dilation=-1)),
    (_X, (3,), dict(padding=2)), (_X, (3,), dict(padding=-1)), (_X, ((3, 2),), dict(padding=(1, 2))),
    (_X, (3,), dict(dilation=3, padding=2)), (_X, (10,), {}), (_X, (4,), dict(dilation=3)),
    (_X, ((2, 3, 4),), {}), (_X, (2,), dict(stride=(1, 2, 3))), (_X, (2,), dict(padding=(1, 2, 3))),
    (_X, (2,), dict(dilation=(1, 2, 3))), (_X, (2.5,), {}), (_X, (2,), dict(stride=1.5)), (_X, (2,), dict(padding=0.5)),
    (_X, (True,), {}), (_X, (2,), dict(ceil_mode=1)), (_X, (2.5,), dict(return_indices=True)),
    (torch.randn(2, 0, 9, 9), (2,), {}), (torch.randn(0, 9, 9), (2,), {}), (torch.randn(2, 3, 1, 9), (2,), {}),
    (_X.int(), (2,), {}), (_X.half(), (2,), {}),
]
BAD_AVG = [
    (torch.randn(9, 9), (2,), {}), (torch.randn(9), (2,), {}), (torch.randn(1, 2, 3, 9, 9), (2,), {}),
    (_X, (0,), {}), (_X, (0,), dict(stride=1)), (_X, (-2,), dict(stride=1)), (_X, (2,), dict(stride=0)),
    (_X, (2,), dict(stride=-1)), (_X, (3,), dict(padding=2)), (_X, (2,), dict(padding=-1)), (_X, (10,), {}),
    (_X, (2,), dict(divisor_override=0)), (_X, ((2, 3, 4),), {}), (_X, (2,), dict(stride=(1, 1, 1))),
    (_X, (2,), dict(padding=(1, 1, 1))), (_X, (2.5,), {}), (_X, ("a",), {}), (_X, (2,), dict(divisor_override=1.5)),
    (_X, (2,), dict(ceil_mode=1)), (torch.randn(2, 0, 9, 9), (2,), {}), (torch.randn(3, 0, 9), (2,), {}),
    (_X.int(), (2,), {}), (_X.to(torch.complex64), (2,), {}),
]


def _error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the point is comparing whatever torch raises
        return type(e), str(e)
    return None


def _cpu_only_dtype(x):
    return x.dtype in (torch.float16, torch.bfloat16, torch.int32)


@pytest.mark.parametrize("case", range(len(BAD_MAX)))
def test_max_pool_errors_match_torch(case):
    x, args, kwargs = BAD_MAX[case]
    ours = _error(FF.max_pool2d, x, *args, **kwargs)
    ref = _error(F.max_pool2d, x, *args, **kwargs)
    if ref is None:
        # torch pools these dtypes on the CPU; fastrnn's CPU kernels take float32 and float64 only.
        assert _cpu_only_dtype(x) and ours is not None and ours[0] is NotImplementedError
    else:
        assert ours == ref


@pytest.mark.parametrize("case", range(len(BAD_AVG)))
def test_avg_pool_errors_match_torch(case):
    x, args, kwargs = BAD_AVG[case]
    ours = _error(FF.avg_pool2d, x, *args, **kwargs)
    ref = _error(F.avg_pool2d, x, *args, **kwargs)
    assert ref is not None and ours == ref


@pytest.mark.parametrize("module,kwargs", [
    ("AvgPool2d", dict(ceil_mode="x")), ("AvgPool2d", dict(count_include_pad=1)),
    ("AvgPool2d", dict(divisor_override="2")), ("AvgPool2d", dict(divisor_override=2.5)),
    ("AvgPool2d", dict(stride="a")), ("MaxPool2d", dict(ceil_mode="x")), ("MaxPool2d", dict(dilation=1.5)),
])
def test_module_errors_match_torch(module, kwargs):
    """The modules pass every argument by position, and torch's type errors then name it:
    "argument 'ceil_mode' (position 5)" (AvgPool2d's named none before)."""
    ours = _error(getattr(fnn, module)(2, **kwargs), _X)
    ref = _error(getattr(torch.nn, module)(2, **kwargs), _X)
    assert ref is not None and ours == ref


# Arguments of odd types: torch's parser words each error by where the wrong element sits and how
# the argument came, and takes a bool after a sequence's first element as an int.
ODD_ARGS = [2.5, True, "a", None, (2.5, 2), (2, 2.5), (True, 2), (2, True), ("a", 2), (2, None), (2, 2, 2.5),
            (np.float64(2.0), 2), (2, np.int64(1)), (torch.tensor(2), 2), (2, torch.tensor(2.0)), [1, 1, 1]]


@pytest.mark.parametrize("name", ["kernel_size", "stride", "padding", "dilation", "ceil_mode"])
@pytest.mark.parametrize("value", ODD_ARGS, ids=repr)
def test_odd_arguments_as_torch(value, name):
    """torch's result, or its error type and message, for max_pool2d and both modules (before:
    fastrnn's own words, "must be tuple of ints, not float" for a tuple's second element, and a
    TypeError for (2, True), which torch takes)."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    kwargs = {"kernel_size": 2, name: value}
    calls = [(lambda x: F.max_pool2d(x, **kwargs), lambda x: FF.max_pool2d(x, **kwargs)),
             (lambda x: torch.nn.MaxPool2d(**kwargs)(x), lambda x: fnn.MaxPool2d(**kwargs)(x))]
    if name != "dilation":
        calls.append((lambda x: torch.nn.AvgPool2d(**kwargs)(x), lambda x: fnn.AvgPool2d(**kwargs)(x)))
    for theirs, ours in calls:
        expected, actual = _error(theirs, x), _error(ours, x)
        assert actual == expected
        if expected is None:
            assert_close(ours(x), theirs(x), torch.float64, "y")


def test_core_checks_its_arguments():
    """A direct call into _C with a wrongly sized output raises instead of writing out of bounds."""
    from torch.utils.dlpack import to_dlpack
    x = torch.randn(2, 3, 9, 9)
    with pytest.raises(RuntimeError, match="pooled size"):
        _C.max_pool2d_forward(to_dlpack(x), to_dlpack(torch.empty(2, 3, 5, 4)), None, (2, 2), (2, 2), (0, 0), (1, 1),
                              False)
    with pytest.raises(RuntimeError, match="int64"):
        _C.max_pool2d_forward(to_dlpack(x), to_dlpack(torch.empty(2, 3, 4, 4)), to_dlpack(torch.empty(2, 3, 4, 4)),
                              (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(RuntimeError, match="contiguous"):
        _C.avg_pool2d_forward(to_dlpack(x.transpose(2, 3)), to_dlpack(torch.empty(2, 3, 4, 4)), (2, 2), (2, 2), (0, 0),
                              False, True, 0)
    with pytest.raises(RuntimeError, match="overlaps"):
        _C.avg_pool2d_forward(to_dlpack(x), to_dlpack(x.view(-1)[:96].view(2, 3, 4, 4)), (2, 2), (2, 2), (0, 0), False,
                              True, 0)


# ---- CUDA -----------------------------------------------------------------------------------------------

CUDA_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
CUDA_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 2e-5, torch.float64: 1e-10}
CUDA_MAX_CASES = [(2, 2, 0, 1, False), (3, 2, 1, 1, True), ((2, 3), (1, 2), (1, 0), (2, 1), True)]
CUDA_AVG_CASES = [(2, 2, 0, False, True, None), (3, 2, 1, True, False, None), ((2, 3), (1, 2), (1, 0), True, True, 5)]


def _close(a, b, dtype, what):
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.equal(a.isnan(), b.isnan()), what
    finite = b.isfinite()
    assert torch.equal(a[~finite & ~b.isnan()], b[~finite & ~b.isnan()]), what
    err = (a[finite] - b[finite]).abs().max().item() if finite.any() else 0.0
    assert err <= CUDA_TOLERANCE[dtype] * max(1.0, b[finite].abs().max().item()), f"{what}: {err}"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", CUDA_MAX_CASES)
def test_cuda_max_pool(dtype, kernel, stride, padding, dilation, ceil_mode):
    compare_max_pool("cuda", dtype, kernel, stride, padding, dilation, ceil_mode)


def compare_max_pool(device, dtype, kernel, stride, padding, dilation, ceil_mode):
    """fastrnn against torch's max_pool2d (the reference) on device: values, indices, gradient."""
    x = _with_specials((2, 5, 29, 31), torch.float32, 0).to(device, dtype)
    x[0] = torch.randn_like(x[0])
    ref_x, our_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref_y, ref_i = F.max_pool2d(ref_x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    our_y, our_i = FF.max_pool2d(our_x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    assert our_y.device == x.device and our_y.dtype == dtype
    _close(our_y, ref_y, dtype, "output")
    assert torch.equal(our_i, ref_i)
    grad = torch.randn_like(ref_y)
    ref_y.backward(grad)
    our_y.backward(grad)
    _close(our_x.grad, ref_x.grad, dtype, "grad_input")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
@pytest.mark.parametrize("kernel,stride,padding,ceil_mode,count_include_pad,divisor_override", CUDA_AVG_CASES)
def test_cuda_avg_pool(dtype, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    compare_avg_pool("cuda", dtype, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)


def compare_avg_pool(device, dtype, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """fastrnn against torch's avg_pool2d (the reference) on device: values and gradient."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 29, 31, device=device, dtype=dtype)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ref_x, our_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref_y, our_y = F.avg_pool2d(ref_x, *args), FF.avg_pool2d(our_x, *args)
    assert our_y.device == x.device and our_y.dtype == dtype
    _close(our_y, ref_y, dtype, "output")
    grad = torch.randn_like(ref_y)
    ref_y.backward(grad)
    our_y.backward(grad)
    _close(our_x.grad, ref_x.grad, dtype, "grad_input")


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream():
    x = torch.randn(8, 16, 64, 64, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = FF.max_pool2d(x, 3, 2, 1)
        a = FF.avg_pool2d(x, 2)
    stream.synchronize()
    _close(y, F.max_pool2d(x, 3, 2, 1), torch.float32, "max")
    _close(a, F.avg_pool2d(x, 2), torch.float32, "avg")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CUDA_MAX_CASES)
def test_cuda_max_pool_comparison_on_the_cpu(case, dtype):
    """The CUDA max-pool test's inputs, reference and comparison, run with CPU tensors."""
    compare_max_pool("cpu", dtype, *case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CUDA_AVG_CASES)
def test_cuda_avg_pool_comparison_on_the_cpu(case, dtype):
    """The CUDA avg-pool test's inputs, reference and comparison, run with CPU tensors."""
    compare_avg_pool("cpu", dtype, *case)
