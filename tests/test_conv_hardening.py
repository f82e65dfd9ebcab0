"""Conv2d, the fused conv + ReLU + 2x2 max-pool and pooling at the edges torch defines too:
zero-size inputs and weights (torch's result or torch's error, never a crash), NaN and Inf in
the fused backward, the C++ core's own checks, and torch.jit (trace runs fastrnn's kernels,
script says what to use instead)."""

import re
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.utils.dlpack import to_dlpack

import fastrnn
import fastrnn.functional as FF
import fastrnn.nn

from conftest import DTYPES, assert_close

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.trace` is deprecated:DeprecationWarning",
    "ignore:`torch.jit.trace_method` is deprecated:DeprecationWarning",
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning",
    # torch.nn.Conv2d with no output channels initialises an empty weight
    "ignore:Initializing zero-element tensors is a no-op:UserWarning",
    "ignore:Using padding='same' with even kernel",
)


def _torch_fused(x, w, b=None, **kw):
    return F.max_pool2d(F.relu(F.conv2d(x, w, b, **kw)), 2, 2)


def _outcome(fn, *tensors, **kw):
    """('ok', y, gradients of every tensor given dy = 1.5) or ('error', type, message)."""
    tensors = [t if t is None else t.detach().clone().requires_grad_() for t in tensors]
    try:
        y = fn(*tensors, **kw)
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return "error", type(error), str(error)
    live = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(y, live, torch.full_like(y, 1.5), allow_unused=True)
    return "ok", y, [torch.zeros_like(t) if g is None else g for t, g in zip(live, grads)]


def _assert_same(ours, theirs, dtype=torch.float64):
    assert ours[0] == theirs[0], f"fastrnn: {ours[:3]}, torch: {theirs[:3]}"
    if ours[0] == "error":
        assert ours[1:] == theirs[1:]
        return
    assert_close(ours[1], theirs[1], dtype, "y")
    for i, (g, r) in enumerate(zip(ours[2], theirs[2])):
        assert_close(g, r, dtype, f"gradient {i}")


# ---- Zero-size inputs and weights ----------------------------------------------------------------

# (x shape, weight shape, bias, conv2d keywords): batch 0, no channels, empty planes, empty
# kernels, with groups and padding; torch accepts some (with its own output shapes) and refuses
# the others, with a RuntimeError or an IndexError.
ZERO_SIZE = [
    ((0, 3, 8, 8), (4, 3, 3, 3), True, {}),
    ((0, 3, 8, 8), (4, 3, 3, 3), False, {"padding": 1}),
    ((0, 4, 8, 8), (6, 2, 3, 3), True, {"groups": 2}),
    ((2, 0, 8, 8), (4, 0, 3, 3), True, {}),
    ((2, 0, 8, 8), (4, 0, 3, 3), False, {"groups": 2}),
    ((0, 0, 8, 8), (4, 0, 3, 3), True, {}),
    ((2, 0, 8, 8), (4, 0, 0, 3), False, {}),
    ((0, 3, 8, 8), (4, 3, 0, 3), True, {}),
    ((2, 3, 8, 8), (4, 3, 0, 3), True, {}),
    ((2, 3, 8, 8), (4, 3, 3, 0), False, {}),
    ((3, 8, 8), (4, 3, 0, 0), False, {}),
    ((2, 3, 0, 8), (4, 3, 1, 1), False, {}),
    ((2, 3, 0, 8), (4, 3, 1, 1), True, {"padding": 1}),
    ((2, 3, 8, 0), (4, 3, 3, 3), False, {"padding": 2}),
    ((0, 3, 0, 8), (4, 3, 1, 1), False, {}),
    ((0, 8, 8), (4, 0, 3, 3), True, {}),
]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("case", ZERO_SIZE)
def test_zero_size_as_torch(case, fused):
    """torch's output and gradients, or its exception type and message (an empty kernel:
    RuntimeError batched, IndexError for an empty batch; no channels: torch's own output
    shape). Before, fastrnn's kernels ran these: outputs of other shapes, other errors."""
    x_shape, w_shape, bias, kw = case
    torch.manual_seed(0)
    x, w = torch.randn(x_shape, dtype=torch.float64), torch.randn(w_shape, dtype=torch.float64)
    b = torch.randn(w_shape[0], dtype=torch.float64) if bias else None
    ours, theirs = (FF.conv_relu_pool2d, _torch_fused) if fused else (FF.conv2d, F.conv2d)
    _assert_same(_outcome(ours, x, w, b, **kw), _outcome(theirs, x, w, b, **kw))


@pytest.mark.parametrize("module", [fastrnn.nn.Conv2d, fastrnn.nn.ConvReLUPool2d])
@pytest.mark.parametrize("args", [(0, 4, 3), (3, 4, (0, 3)), (3, 4, 0)])
def test_zero_size_modules_as_torch(module, args):
    """Modules with no input channels or an empty kernel: torch.nn.Conv2d's result or error
    (before, ConvReLUPool2d(3, 4, (0, 3)) returned a conv over an empty kernel)."""
    torch.manual_seed(1)
    ref = torch.nn.Conv2d(*args).double()
    ours = module(*args).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, args[0], 7, 8, dtype=torch.float64)
    theirs = ref if module is fastrnn.nn.Conv2d else (lambda x: F.max_pool2d(F.relu(ref(x)), 2, 2))
    _assert_same(_outcome(ours, x), _outcome(theirs, x))


def _run_child(code: str) -> None:
    """Runs code in a fresh python: a crash (SIGFPE, SIGSEGV) fails the test, not pytest."""
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, f"child exited with {child.returncode}:\n{child.stdout}\n{child.stderr}"


def test_zero_output_channels_refused_as_torch_in_a_child():
    """No output channels: torch's RuntimeError ("expected weight to be at least 1 at dimension
    0"), from the functions, the modules and the fused block (before: SIGFPE, a division by the
    per-group output channels in the workspace query; ConvReLUPool2d(3, 0, 3) returned an empty
    tensor). The C++ entries refuse it too, and an empty output plane, which divided by zero
    in the same query."""
    _run_child("""
        import warnings
        import torch, torch.nn.functional as F
        import fastrnn, fastrnn.functional as FF, fastrnn.nn
        from torch.utils.dlpack import to_dlpack
        warnings.simplefilter("ignore")

        def error(fn, *args):
            try:
                fn(*args)
            except Exception as e:
                return type(e), str(e)
            raise AssertionError(f"{fn} raised nothing")

        x = torch.randn(2, 3, 8, 8)
        for w_shape, groups in (((0, 3, 3, 3), 1), ((0, 1, 3, 3), 3), ((0, 0, 3, 3), 1)):
            w = torch.randn(w_shape)
            xx = x if w_shape[1] else torch.randn(2, 0, 8, 8)
            theirs = error(F.conv2d, xx, w, None, 1, 0, 1, groups)
            assert "expected weight to be at least" in theirs[1], theirs
            for fn in (FF.conv2d, FF.conv_relu_pool2d):
                assert error(fn, xx, w, None, 1, 0, 1, groups) == theirs, (fn, w_shape)
        theirs = error(torch.nn.Conv2d(3, 0, 3), x)
        for module in (fastrnn.nn.Conv2d, fastrnn.nn.ConvReLUPool2d):
            assert error(module(3, 0, 3), x) == theirs, module

        C = fastrnn._C
        for op in range(4):
            kind, message = error(C.conv_workspace_bytes, op, "float32", [2, 3, 8, 8], [0, 3, 3, 3], 6, 6,
                                  [1, 1], [0, 0], [1, 1], 1)
            assert kind is RuntimeError and "out_channels (0)" in message, message
            kind, message = error(C.conv_workspace_bytes, op, "float32", [2, 3, 8, 8], [4, 3, 3, 3], 0, 6,
                                  [1, 1], [0, 0], [1, 1], 1)
            assert kind is RuntimeError and "output size 0x6" in message, message
        y, work = torch.empty(2, 0, 6, 6), torch.empty(1 << 16, dtype=torch.uint8)
        kind, message = error(C.conv2d_forward, to_dlpack(x), to_dlpack(torch.randn(0, 3, 3, 3)), None, to_dlpack(y),
                              to_dlpack(work), [1, 1], [0, 0], [1, 1], 1)
        assert kind is RuntimeError and "out_channels (0)" in message, message
    """)


def _core_error(fn, *args) -> str:
    with pytest.raises(RuntimeError) as info:
        fn(*[to_dlpack(a) if isinstance(a, torch.Tensor) else a for a in args])
    return str(info.value)


def test_core_checks_its_own_shapes():
    """The C++ entries refuse what their plan does not cover: an empty kernel, no input
    channels, and an output size the geometry does not give (before: a conv over an empty
    kernel, and the top-left corner of a larger output computed without complaint)."""
    C = fastrnn._C
    x, work = torch.randn(2, 3, 8, 8), torch.empty(1 << 22, dtype=torch.uint8)
    geometry = ([1, 1], [0, 0], [1, 1], 1)
    assert "kernel size must be positive, got 0x3" in _core_error(
        C.conv2d_forward, x, torch.randn(4, 3, 0, 3), None, torch.empty(2, 4, 9, 6), work, *geometry)
    assert "in_channels (0)" in _core_error(
        C.conv2d_forward, torch.randn(2, 0, 8, 8), torch.randn(4, 0, 3, 3), None, torch.empty(2, 4, 6, 6), work,
        *geometry)
    assert "output size 5x6 does not match input size 8x8" in _core_error(
        C.conv2d_forward, x, torch.randn(4, 3, 3, 3), None, torch.empty(2, 4, 5, 6), work, *geometry)
    assert "output size 5x5 does not match input size 8x8" in _core_error(
        C.conv2d_backward, torch.randn(2, 4, 5, 5), x, torch.randn(4, 3, 3, 3), torch.empty_like(x), None, None, work,
        *geometry)
    w = torch.randn(4, 3, 3, 3)
    assert "output size 10x6 does not match" in _core_error(
        C.conv_relu_pool2d_forward, x, w, None, torch.empty(2, 4, 5, 3), torch.empty(2, 4, 5, 3, dtype=torch.int64),
        work, 10, 6, *geometry)
    # torch's 'same' padding of an even kernel: one more row and column at the bottom/right
    w = torch.randn(4, 3, 2, 2)
    y = torch.empty(2, 4, 8, 8)
    C.conv2d_forward(to_dlpack(x), to_dlpack(w), None, to_dlpack(y), to_dlpack(work), *geometry)
    assert_close(y, F.conv2d(x, w, padding="same"), torch.float32, "y")


# ---- NaN and Inf in the fused backward -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in", [1, 3, 9, 16])
@pytest.mark.parametrize("where", ["x", "x_inf", "weight", "dy"])
def test_conv_relu_pool_backward_nan_as_torch(where, c_in, dtype, isa):
    """torch's ReLU backward zeroes the gradient where its output is <= 0, so at a NaN it
    passes; and torch's backward is dense: the zeros of the conv's gradient times a NaN or Inf
    of x (weight gradient) or of the weights (input gradient) are NaN. Before, the fused
    backward gated on y > 0 (the input gradient at a NaN input was 0), its sparse paths (8 or
    more input channels) summed over the windows' maxima alone, and the input gradient as a
    transposed conv made NaN where no output reaches. Compared with NaN positions exact."""
    torch.manual_seed(11)
    x = torch.randn(2, c_in, 9, 11, dtype=dtype)
    w = torch.randn(5, c_in, 3, 3, dtype=dtype)
    b = torch.randn(5, dtype=dtype)
    dy = torch.randn(2, 5, 3, 5, dtype=dtype)
    if where == "x":
        x[0, 0, 3, 4] = float("nan")
    elif where == "x_inf":
        x[1, c_in - 1, 5, 6] = float("inf")
    elif where == "weight":
        w[2, c_in // 2, 1, 1] = float("nan")
    else:
        dy[1, 3, 2, 2] = float("nan")
    results = []
    for fn in (FF.conv_relu_pool2d, _torch_fused):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        y = fn(*leaves, padding=(0, 1))
        results.append((y, *torch.autograd.grad(y, leaves, dy)))
    for name, ours, theirs in zip(["y", "dx", "dw", "db"], *results):
        assert_close(ours, theirs, dtype, name)
    if where == "x":
        assert not results[0][1][0, 0, 3, 4].isnan() and results[0][1][0, 0, 3, 4] != 0


@pytest.mark.parametrize("c_in", [4, 16])
def test_conv2d_input_gradient_with_nan_weight_as_torch(c_in, isa):
    """A NaN weight makes the input gradient NaN only where an output reaches, as torch's
    (before: the transposed-conv path multiplied its zero padding by it, NaN everywhere)."""
    torch.manual_seed(12)
    x = torch.randn(2, c_in, 10, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, c_in, 3, 3, dtype=torch.float64)
    w[1, 0, 1, 1] = float("nan")
    w.requires_grad_()
    ours, theirs = FF.conv2d(x, w), F.conv2d(x, w)
    dy = torch.randn_like(theirs)
    for name, g, r in zip(["dx", "dw"], torch.autograd.grad(ours, (x, w), dy), torch.autograd.grad(theirs, (x, w), dy)):
        assert_close(g, r, torch.float64, name)


@pytest.mark.parametrize("shape", [(3, 3, 4, 4), (1, 5, 7, 10), (4, 6, 6, 8)])
def test_pointwise_pooled_forward_on_two_threads(shape):
    """A 1x1 stride-1 conv's input is its own im2col, and its plan has no im2col buffer: the
    fused forward wrote its im2col there anyway, over the conv block it multiplies into (or
    another thread's), so on two threads results were wrong at random (1121 of 3000 fuzz runs
    of one case). Several calls, fresh inputs each, on two threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for seed in range(20):
            torch.manual_seed(seed)
            x = torch.randint(-3, 4, shape).float()
            w = torch.randint(-3, 4, (4, shape[1], 1, 1)).float()
            b = torch.randn(4)
            assert_close(FF.conv_relu_pool2d(x, w, b), _torch_fused(x, w, b), torch.float32, f"seed {seed}")
    finally:
        torch.set_num_threads(previous)


# ---- torch.jit -----------------------------------------------------------------------------------------


def _jit_modules():
    """(fastrnn module, torch reference, the reference's parameters in the module's order)."""
    torch.manual_seed(13)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    ours_conv, ours_fused = fastrnn.nn.Conv2d(3, 4, 3, padding=1), fastrnn.nn.ConvReLUPool2d(3, 4, 3, padding=1)
    for module in (ours_conv, ours_fused):
        module.double().load_state_dict(conv.state_dict())
    return [(ours_conv, conv, list(conv.parameters())),
            (ours_fused, lambda x: F.max_pool2d(F.relu(conv(x)), 2, 2), list(conv.parameters())),
            (fastrnn.nn.MaxPool2d(2), torch.nn.MaxPool2d(2), []),
            (fastrnn.nn.MaxPool2d(3, 2, 1, return_indices=True), torch.nn.MaxPool2d(3, 2, 1, return_indices=True), []),
            (fastrnn.nn.AvgPool2d(2, ceil_mode=True), torch.nn.AvgPool2d(2, ceil_mode=True), [])]


@pytest.mark.parametrize("no_grad", [False, True])
@pytest.mark.parametrize("index", range(5))
def test_jit_trace_runs_the_kernels(index, no_grad):
    """torch.jit.trace records fastrnn's custom op (before: Conv2d failed with
    'unordered_map::at', and the pools' graph held only the output's allocation, returning
    uninitialised memory); the traced module matches torch, forward and backward (traced under
    no_grad too), at another batch size as well, and the convs refuse another spatial size
    (the graph holds the traced one) instead of computing garbage."""
    ours, ref, ref_params = _jit_modules()[index]
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    with torch.no_grad() if no_grad else torch.enable_grad():
        traced = torch.jit.trace(ours, x)
    assert any(node.kind().startswith("fastrnn::") for node in traced.graph.nodes())
    for batch in (2, 5):
        torch.manual_seed(batch)
        x = torch.randn(batch, 3, 8, 10, dtype=torch.float64)
        mine, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        y, r = traced(mine), ref(theirs)
        if isinstance(r, tuple):
            assert torch.equal(y[1], r[1])
            y, r = y[0], r[0]
        assert_close(y, r, torch.float64, "y")
        dy = torch.randn_like(r)
        grads = torch.autograd.grad(y, [mine, *ours.parameters()], dy)
        for name, g, e in zip(["dx", "dw", "db"], grads, torch.autograd.grad(r, [theirs, *ref_params], dy)):
            assert_close(g, e, torch.float64, name)
    if index < 2:
        with pytest.raises(RuntimeError, match="does not match input size 9x10"):
            traced(torch.randn(2, 3, 9, 10, dtype=torch.float64))


@pytest.mark.parametrize("index", range(5))
def test_jit_script_names_the_alternatives(index):
    """torch.jit.script of the modules, alone or inside a model, raises one error naming what
    to use (before: an error about typing.Sequence annotations or nested functions)."""
    ours = _jit_modules()[index][0]
    message = f"fastrnn.nn.{type(ours).__name__} cannot be compiled by torch.jit.script: its forward calls " \
              "fastrnn's kernels from Python, which TorchScript cannot compile. Use torch.jit.trace, torch.compile " \
              "or torch.export instead"
    for module in (ours, torch.nn.Sequential(torch.nn.Identity(), ours)):
        with pytest.raises(RuntimeError, match=re.escape(message)):
            torch.jit.script(module)


# ---- torch.func, torch.compile, torch.export ------------------------------------------------------


def _functional_pairs():
    """(name, fastrnn module, torch function of (params, x), params): the convs share one
    Conv2d's weights; the pools have none."""
    torch.manual_seed(14)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    params = {k: v.detach() for k, v in conv.named_parameters()}
    ours_conv, ours_fused = fastrnn.nn.Conv2d(3, 4, 3, padding=1), fastrnn.nn.ConvReLUPool2d(3, 4, 3, padding=1)
    for module in (ours_conv, ours_fused):
        module.double().load_state_dict(conv.state_dict())
    return [
        ("conv", ours_conv, lambda p, x: F.conv2d(x, p["weight"], p["bias"], padding=1), params),
        ("fused", ours_fused, lambda p, x: _torch_fused(x, p["weight"], p["bias"], padding=1), params),
        ("max", fastrnn.nn.MaxPool2d(3, 2, 1), lambda p, x: F.max_pool2d(x, 3, 2, 1), {}),
        ("avg", fastrnn.nn.AvgPool2d(3, 2, 1), lambda p, x: F.avg_pool2d(x, 3, 2, 1), {}),
    ]


@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented the batching rule")
@pytest.mark.parametrize("index", range(4))
def test_torch_func_transforms_as_torch(index):
    """torch.func.grad (of the input and of the parameters), vjp and jacrev match torch's
    (before: every one raised 'an autograd.Function with functorch transforms must override the
    setup_context staticmethod', from torch.library's autograd wrapper of the custom ops). A
    second derivative: the pools' as torch's; the convs' backward has none, and says so."""
    from torch.func import functional_call, grad, jacrev, vjp

    name, ours, ref, params = _functional_pairs()[index]
    torch.manual_seed(15)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)

    def loss(module_or_ref, p, x):
        module = isinstance(module_or_ref, torch.nn.Module)
        return (functional_call(module_or_ref, p, (x,)) if module else module_or_ref(p, x)).sin().sum()

    assert_close(grad(lambda x: loss(ours, params, x))(x), grad(lambda x: loss(ref, params, x))(x), torch.float64, "dx")
    if params:
        mine, theirs = grad(lambda p: loss(ours, p, x))(params), grad(lambda p: loss(ref, p, x))(params)
        for key in params:
            assert_close(mine[key], theirs[key], torch.float64, key)
    y, pullback = vjp(ours, x)
    y_ref, pullback_ref = vjp(lambda x: ref(params, x), x)
    assert_close(y, y_ref, torch.float64, "y")
    dy = torch.randn_like(y_ref)
    assert_close(pullback(dy)[0], pullback_ref(dy)[0], torch.float64, "vjp")
    assert_close(jacrev(ours)(x), jacrev(lambda x: ref(params, x))(x), torch.float64, "jacobian")

    def second(module_or_ref):
        return grad(lambda x: grad(lambda x: loss(module_or_ref, params, x))(x).square().sum())(x)

    if name in ("conv", "fused"):
        with pytest.raises(RuntimeError, match="no derivative of its own"):
            second(ours)
    else:
        assert_close(second(ours), second(ref), torch.float64, "second derivative")


@pytest.mark.parametrize("index", range(2))
def test_conv_modules_compile_and_export(index):
    """torch.compile (whole graph) trains as eager does, and torch.export keeps fastrnn's op."""
    name, ours, ref, params = _functional_pairs()[index]
    torch.manual_seed(16)
    x = torch.randn(3, 3, 8, 9, dtype=torch.float64)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    leaves = [x.clone().requires_grad_() for _ in range(2)]
    y, y_ref = compiled(leaves[0]), ours(leaves[1])
    assert_close(y, y_ref, torch.float64, "y")
    dy = torch.randn_like(y)
    for g, r in zip(torch.autograd.grad(y, [leaves[0], *ours.parameters()], dy),
                    torch.autograd.grad(y_ref, [leaves[1], *ours.parameters()], dy)):
        assert_close(g, r, torch.float64, "gradient")
    exported = torch.export.export(ours, (x,))
    assert any(str(node.target).startswith("fastrnn.") for node in exported.graph.nodes)
    assert_close(exported.module()(x), ref(params, x), torch.float64, "exported")
