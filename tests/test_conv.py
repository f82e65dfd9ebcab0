"""fastrnn's Conv2d and fused Conv2d -> ReLU -> MaxPool2d(2, 2) against torch: forward, every
gradient, gradcheck, opcheck, modules and their state_dict, and torch's errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastrnn.ops.conv as conv
import fastrnn.functional as FF
import fastrnn.nn

from conftest import DTYPES, assert_close

# torch (the reference) warns that it copies the input for an even kernel with padding='same'.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

def conv_case(batch, c_in, c_out, H, W, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
    """(batch or None for unbatched, C_in, C_out, H, W, kernel, stride, padding, dilation, groups, bias)."""
    return batch, c_in, c_out, H, W, kernel, stride, padding, dilation, groups, bias


CASES = [
    conv_case(3, 5, 7, 13, 11, 3),
    conv_case(2, 4, 6, 9, 14, (3, 2), stride=(2, 1), padding=(1, 2), groups=2, bias=False),
    conv_case(2, 6, 6, 12, 10, 3, padding="same", groups=6),  # depthwise
    conv_case(1, 3, 5, 10, 9, (4, 2), padding="same", dilation=(1, 2)),  # even kernel: asymmetric padding
    conv_case(None, 3, 4, 11, 8, 3, stride=2, padding=1, dilation=2),  # unbatched
    conv_case(4, 8, 4, 7, 7, 1, groups=2),  # pointwise
    conv_case(3, 2, 5, 15, 13, 5, stride=3, padding="valid"),
    conv_case(2, 1, 32, 28, 28, 5),  # an MNIST first layer
    conv_case(3, 9, 6, 8, 9, 2, padding=1, groups=3, bias=False),
    conv_case(2, 1, 5, 13, 19, 3, padding=1),  # one input channel (the direct kernel): edge columns
    conv_case(None, 1, 3, 9, 7, (2, 3), padding="same", bias=False),
    # One input channel per group at stride 1 also takes the direct kernel (AVX2): channel
    # counts that are not a multiple of its 4-channel block, dilation, padding wider than the
    # kernel, depthwise groups, and a wide image whose output spans several row blocks.
    conv_case(5, 1, 7, 10, 13, 3, padding=(3, 1), dilation=(2, 1)),
    conv_case(3, 4, 12, 11, 12, 3, padding=2, dilation=2, groups=4),
    conv_case(2, 1, 64, 13, 100, 3, padding=1),
    conv_case(1, 1, 6, 8, 9, 1),
    # Every stride-1 conv takes the direct forward, and its input gradient is the direct forward
    # of the transposed conv: several input channels over several row blocks, padding beyond the
    # kernel's reach (no transposed conv: the GEMM input gradient), a padded input copy over the
    # direct kernel's 8 MiB limit (the GEMM forward).
    conv_case(1, 2, 64, 9, 130, 3, padding=1),
    conv_case(2, 3, 4, 8, 9, 2, padding=3),
    conv_case(1, 200, 2, 100, 100, 3, padding=1, bias=False),
    # The direct weight gradient (stride 1) over blocks of 16 (float) / 8 (double) output
    # channels: a partial last block, taps not a multiple of its 6-tap tile, rows in blocks.
    conv_case(3, 5, 33, 10, 30, 3, padding=1),
    conv_case(2, 3, 20, 7, 300, (2, 3), padding=(1, 0), bias=False),
    # 8 or more input channels per group at stride 1: the fused block's sparse weight gradient
    # (channels-last input, input channels not a multiple of a vector, groups, dilation, odd
    # conv outputs whose last row and column no window reads).
    conv_case(3, 11, 6, 11, 13, 3, padding=1),
    conv_case(2, 18, 4, 9, 10, 3, padding=(2, 1), dilation=(2, 1), groups=2, bias=False),
    # ... and its sparse input gradient: a 5x5 kernel (25 taps x 2 vectors of 9 channels: the
    # 12-, 4- and 1-vector tiles), input rows and columns no tap reaches (odd conv outputs).
    conv_case(2, 9, 5, 13, 11, 5, padding=2),
    # Output rows of a whole number of 3-vector tiles (24 floats, 12 doubles) take row-aligned
    # tiles written straight into the output: with and without bias, groups, and (x of width 24)
    # the transposed conv of the input gradient.
    conv_case(3, 3, 7, 10, 26, 3),
    conv_case(2, 4, 6, 7, 50, 3, groups=2, bias=False),
    conv_case(2, 5, 6, 9, 24, 3, padding=1),
    # Input channels in slices (a tile's window over 32 KiB) whose window fits a quarter of L1,
    # the last slice shorter; flattened and row tiles, output channels not a multiple of 4.
    conv_case(2, 64, 6, 5, 40, 3, padding=1),
    conv_case(1, 61, 5, 6, 50, 3),
    # Row tiles of 4 vectors (3 channels, blocks of 4 straddled), 4 + 3 (a ResNet row, with
    # slices), 4 + 1 (one-vector tiles of 12, 8, 4, 3 channels): the last vector of a row spills
    # into the next row and is only partly stored in the last row.
    conv_case(2, 1, 23, 9, 27, 3, padding=1),
    conv_case(3, 1, 32, 6, 28, 3, padding=1, bias=False),
    conv_case(1, 64, 7, 3, 56, 3, padding=1),
    conv_case(2, 1, 27, 5, 38, 3, padding=1),
    # The pooled forward's row tiles over several blocks of conv rows (and rows of 4 x 3 vectors).
    conv_case(1, 1, 64, 12, 98, 3),
    # Few input channels: the forward over shifted planes (one per kernel column), the output
    # plane as one stretch with a partial last vector; a wide kernel with horizontal dilation
    # and padding past its reach.
    conv_case(2, 2, 9, 11, 17, 3, padding=1),
    conv_case(3, 1, 5, 9, 10, (2, 4), padding=(0, 5), dilation=(1, 2), bias=False),
    # Many input channels and output channels a multiple of 32: the AVX-512 forward vectorised
    # over channels (blocks of 4 vectors for 64 and 128 float channels, of 2 for 96), in chunks
    # of 48 positions (a partial last chunk and transpose), several channel groups, groups of
    # the conv, no bias.
    conv_case(2, 40, 64, 9, 20, 3, padding=1),
    conv_case(2, 33, 96, 5, 23, 3, bias=False),
    conv_case(2, 80, 128, 6, 9, 3, padding=1, groups=2),
    # 3x3 stride 1 with 16 or more channels each way: Winograd F(2x2, 3x3) forward (and input
    # gradient, a transposed 3x3 conv): odd output sizes (a tile's second row or column
    # dropped), valid and 2-wide padding, groups, batches in groups of images with a shorter
    # last group, and an image whose tiles take several blocks (block ends inside tile rows).
    conv_case(3, 16, 16, 7, 9, 3, padding=1),
    conv_case(2, 24, 20, 11, 10, 3, bias=False),
    conv_case(2, 16, 18, 6, 7, 3, padding=2),
    conv_case(5, 32, 32, 5, 5, 3, padding=1, groups=2),
    conv_case(2, 64, 64, 41, 38, 3, padding=1),
    # 1x1 stride 1 with several input channels and an even conv output width: the pooled forward
    # reads the input in place as its im2col (an odd last row dropped; groups).
    conv_case(3, 3, 2, 4, 4, 1, bias=False),
    conv_case(2, 6, 4, 5, 8, 1, groups=2),
]


def _inputs(case, dtype, seed=0):
    batch, c_in, c_out, H, W, kernel, stride, padding, dilation, groups, bias = case
    torch.manual_seed(seed)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(*((batch,) if batch else ()), c_in, H, W, dtype=dtype, requires_grad=True)
    w = torch.randn(c_out, c_in // groups, *k, dtype=dtype, requires_grad=True)
    b = torch.randn(c_out, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _grads(out, tensors, seed=1):
    torch.manual_seed(seed)
    dy = torch.randn_like(out)
    live = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, live, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_torch(case, dtype, isa):
    x, w, b, kw = _inputs(case, dtype)
    ours, ref = FF.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    assert_close(ours, ref, dtype, "y")
    for name, g, r in zip("xwb", _grads(ours, (x, w, b)), _grads(ref, (x, w, b))):
        assert_close(g, r, dtype, f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_conv_relu_pool_matches_torch(case, dtype, isa):
    x, w, b, kw = _inputs(case, dtype)
    ours = FF.conv_relu_pool2d(x, w, b, **kw)
    ref = F.max_pool2d(F.relu(F.conv2d(x, w, b, **kw)), 2, 2)
    assert_close(ours, ref, dtype, "y")
    for name, g, r in zip("xwb", _grads(ours, (x, w, b)), _grads(ref, (x, w, b))):
        assert_close(g, r, dtype, f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in", [1, 3, 9])
def test_conv_relu_pool_nan_and_ties(c_in, dtype, isa):
    """NaN wins its window and equal maxima keep the first, in the SIMD epilogue (8 windows)
    and its scalar tail alike: compared through the pooled values and the gradient routing."""
    torch.manual_seed(5)
    x = torch.randn(2, c_in, 9, 41, dtype=dtype)
    x[0, 0, 2, 5] = float("nan")
    x[1, :, 2:9, 16:34] = 0.0  # a constant patch: ties of equal conv outputs
    w = torch.randn(5, c_in, 3, 3, dtype=dtype)
    w[:, :, 1, 1] += 1.0
    b = torch.randn(5, dtype=dtype)
    assert_close(FF.conv_relu_pool2d(x, w, b, padding=1), F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2, 2),
                 dtype, "y")
    y, idx = conv.conv_relu_pool2d_op(x, w, b, [1, 1], [1, 1], [1, 1], 1, [9, 41])
    _, ref_idx = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2, 2, return_indices=True)
    positive = y > 0
    assert torch.equal(idx.long()[positive], ref_idx[positive])


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_inf_and_nan_as_torch(dtype, isa):
    """An Inf in the input stays Inf (or becomes NaN) exactly where torch's does: the Winograd
    forward, plain or pooled (these channel counts), would mix it into NaN across its 4x4
    patch, so an image with an Inf or NaN runs direct; the other images of the batch keep
    Winograd. The input gradient (a transposed 3x3 conv of dy) likewise with an Inf in dy, and
    the weight gradient (direct) with Inf and NaN in x and dy."""
    torch.manual_seed(7)
    x = torch.randn(5, 16, 9, 10, dtype=dtype, requires_grad=True)
    w = torch.randn(20, 16, 3, 3, dtype=dtype, requires_grad=True)
    b = torch.randn(20, dtype=dtype)
    with torch.no_grad():
        x[1, 3, 4, 5] = float("inf")
        x[3, 0, 0, 9] = float("nan")
        x[3, 2, 6, 1] = float("-inf")
    ours, ref = FF.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1)
    assert ours.isinf().any()
    assert_close(ours, ref, dtype, "y")
    pooled = FF.conv_relu_pool2d(x, w, b, padding=1)
    assert pooled.isinf().any()
    assert_close(pooled, F.max_pool2d(F.relu(ref), 2, 2), dtype, "pooled")
    dy = torch.randn_like(ref)
    dy[2, 7, 3, 3] = float("inf")
    dx, dw = torch.autograd.grad(ours, (x, w), dy)
    dx_ref, dw_ref = torch.autograd.grad(ref, (x, w), dy)
    assert dx.isinf().any() and dw.isinf().any()
    assert_close(dx, dx_ref, dtype, "dx")
    assert_close(dw, dw_ref, dtype, "dw")


@pytest.mark.parametrize("wanted", ["x", "w", "b", "wb", "xb"])
@pytest.mark.parametrize("fused", [False, True])
def test_only_requested_gradients(fused, wanted, isa):
    """Any subset of the gradients (frozen weights, a frozen input) matches torch's."""
    x, w, b, kw = _inputs(CASES[0], torch.float64)
    for name, t in zip("xwb", (x, w, b)):
        t.requires_grad_(name in wanted)
    live = [t for name, t in zip("xwb", (x, w, b)) if name in wanted]
    if fused:
        ours = FF.conv_relu_pool2d(x, w, b, **kw)
        ref = F.max_pool2d(F.relu(F.conv2d(x, w, b, **kw)), 2, 2)
    else:
        ours, ref = FF.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    for name, g, r in zip(wanted, _grads(ours, live), _grads(ref, live)):
        assert_close(g, r, torch.float64, f"d{name}")


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4], CASES[8]])
def test_conv_gradients_pass_gradcheck(case):
    batch, c_in, c_out, H, W, *rest = case
    small = (min(batch, 2) if batch else None, c_in, c_out, min(H, 9), min(W, 9), *rest)
    x, w, b, kw = _inputs(small, torch.float64)
    tensors = tuple(t for t in (x, w, b) if t is not None)

    def conv_fn(x, w, *b):
        return FF.conv2d(x, w, b[0] if b else None, **kw)

    def pool_fn(x, w, *b):
        return FF.conv_relu_pool2d(x, w, b[0] if b else None, **kw)

    assert torch.autograd.gradcheck(conv_fn, tensors)
    assert torch.autograd.gradcheck(pool_fn, tensors)


def test_opcheck():
    x, w, b, kw = _inputs(CASES[1], torch.float32)
    s, p, d, out = FF._resolve(x.detach(), w.detach(), b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    args = (x, w, b, s, p, d, kw["groups"], out)
    torch.library.opcheck(conv.conv2d_op, args)
    torch.library.opcheck(conv.conv_relu_pool2d_op, args)
    dy = torch.randn(x.shape[0], w.shape[0], *out)
    torch.library.opcheck(conv.conv2d_backward, (dy, x.detach(), w.detach(), s, p, d, kw["groups"],
                                                 [True, True, True]))
    y, idx = conv.conv_relu_pool2d_op(x.detach(), w.detach(), b.detach() if b is not None else None, s, p, d,
                                      kw["groups"], out)
    torch.library.opcheck(conv.conv_relu_pool2d_backward, (torch.randn_like(y), y, idx, x.detach(), w.detach(), s, p,
                                                           d, kw["groups"], out, [True, True, False]))


@pytest.mark.parametrize("fused", [False, True])
def test_eager_training_takes_a_function_with_the_custom_ops_results(fused):
    """A training call in eager mode runs the op bodies in an autograd.Function (no
    torch.library wrapper); its outputs and gradients are the custom op's, bit for bit."""
    x, w, b, kw = _inputs(CASES[0], torch.float64)
    s, p, d, out = FF._resolve(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    leaves = [[t.detach().clone().requires_grad_() for t in (x, w, b)] for _ in range(2)]
    if fused:
        eager = FF.conv_relu_pool2d(*leaves[0], **kw)
        op = conv.conv_relu_pool2d_op(*leaves[1], s, p, d, kw["groups"], out)[0]
    else:
        eager = FF.conv2d(*leaves[0], **kw)
        op = conv.conv2d_op(*leaves[1], s, p, d, kw["groups"], out)
    assert "Function" in type(eager.grad_fn).__name__ and "Function" not in type(op.grad_fn).__name__
    assert torch.equal(eager, op)
    dy = torch.randn_like(op)
    for ours, theirs in zip(torch.autograd.grad(eager, leaves[0], dy), torch.autograd.grad(op, leaves[1], dy)):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_module_state_dict(padding_mode):
    torch.manual_seed(3)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode=padding_mode, groups=2).double()
    ours = fastrnn.nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode=padding_mode, groups=2).double()
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(3, 4, 11, 10, dtype=torch.float64, requires_grad=True)
    assert_close(ours(x), ref(x), torch.float64, "y")
    ours(x).sum().backward()
    gx, gw = x.grad.clone(), ours.weight.grad
    x.grad = None
    ref(x).sum().backward()
    assert_close(gx, x.grad, torch.float64, "dx")
    assert_close(gw, ref.weight.grad, torch.float64, "dw")
    assert repr(ours).replace("Conv2d", "", 1) == repr(ref).replace("Conv2d", "", 1)


def test_conv_relu_pool_module():
    torch.manual_seed(4)
    block = fastrnn.nn.ConvReLUPool2d(1, 8, 5, padding=2)
    ref = torch.nn.Conv2d(1, 8, 5, padding=2)
    block.load_state_dict(ref.state_dict())
    ref.load_state_dict(block.state_dict())
    x = torch.randn(5, 1, 17, 15)
    assert_close(block(x), F.max_pool2d(F.relu(ref(x)), 2, 2), torch.float32, "y")
    assert set(dict(block.named_parameters())) == {"weight", "bias"}


def _torch_error(fn):
    with pytest.raises(Exception) as info:
        fn(F.conv2d)
    return info.type, str(info.value)


@pytest.mark.parametrize("call", [
    lambda f: f(torch.randn(2, 2, 4, 8, 8), torch.randn(6, 4, 3, 3)),  # rank
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 3, 3, 3)),  # channels
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 2, 3, 3), groups=4),  # groups
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), groups=0),
    lambda f: f(torch.randn(2, 4, 8, 8).double(), torch.randn(6, 4, 3, 3)),  # dtype
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(6).double()),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(5)),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), padding="foo"),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), padding=-1),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), stride=0),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), dilation=0),
    lambda f: f(torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), stride=2, padding="same"),
    lambda f: f(torch.randn(2, 4, 2, 2), torch.randn(6, 4, 3, 3)),  # kernel larger than input
])
def test_errors_match_torch(call):
    kind, message = _torch_error(call)
    for fn in (FF.conv2d, FF.conv_relu_pool2d):
        with pytest.raises(kind) as info:
            call(fn)
        assert str(info.value) == message


# Arguments of odd types: torch takes what has __index__ (NumPy ints, integer tensors) and a bool
# after a sequence's first element; it refuses floats and a leading or lone bool, in words that
# depend on how the arguments came (here by position, as the modules pass them).
ODD_ARGS = [("stride", True), ("stride", np.int64(2)), ("stride", (1, True)), ("stride", (True, 1)),
            ("stride", None), ("padding", 1.5), ("padding", (1, 1.5)), ("padding", torch.tensor(1)),
            ("padding", (torch.tensor(1), 1)), ("dilation", [np.int32(1), 2]), ("dilation", 1.0),
            ("groups", True), ("groups", np.int64(1)), ("groups", 1.0)]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name,value", ODD_ARGS, ids=repr)
def test_odd_arguments_as_torch(name, value, fused):
    """torch's result, or its error type and message (before: fastrnn truncated padding 1.5,
    took stride True, and refused NumPy ints and (1, True) with its own RuntimeError)."""
    torch.manual_seed(6)
    x, w, b = torch.randn(2, 2, 7, 6, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64), None
    args = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1, name: value}
    args = (args["stride"], args["padding"], args["dilation"], args["groups"])
    ours = lambda: (FF.conv_relu_pool2d if fused else FF.conv2d)(x, w, b, *args)  # noqa: E731
    theirs = lambda: _torch_conv(fused)(x, w, b, *args)  # noqa: E731
    expected, actual = _outcome(theirs), _outcome(ours)
    assert actual == expected
    if expected is None:
        assert_close(ours(), theirs(), torch.float64, "y")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("module", ["Conv2d", "ConvReLUPool2d"])
@pytest.mark.parametrize("name,value", [a for a in ODD_ARGS if a[0] != "groups" and a[1] is not None
                                        and not isinstance(a[1], torch.Tensor)], ids=repr)
def test_odd_module_arguments_as_torch(module, name, value, padding_mode):
    """As torch.nn.Conv2d, whose call lists the arguments' types in its TypeError: with a padding
    mode other than zeros it pads first and passes padding (0, 0) (before: 0, listed as int)."""
    torch.manual_seed(7)
    ref = torch.nn.Conv2d(2, 4, 3, **{name: value}, padding_mode=padding_mode).double()
    ours = getattr(fastrnn.nn, module)(2, 4, 3, **{name: value}, padding_mode=padding_mode).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    theirs = ref if module == "Conv2d" else (lambda x: F.max_pool2d(F.relu(ref(x)), 2, 2))
    expected, actual = _outcome(lambda: theirs(x)), _outcome(lambda: ours(x))
    assert actual == expected
    if expected is None:
        assert_close(ours(x), theirs(x), torch.float64, "y")


def _torch_conv(fused):
    return (lambda *a: F.max_pool2d(F.relu(F.conv2d(*a)), 2, 2)) if fused else F.conv2d


def _outcome(fn):
    """None if fn() returns, else (its exception's type, message)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - compared with torch's
        return type(e), str(e)
    return None


def test_module_errors_match_torch():
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        fastrnn.nn.Conv2d(4, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        fastrnn.nn.ConvReLUPool2d(4, 6, 3, padding_mode="bad")
