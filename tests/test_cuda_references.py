"""The reference side of every CUDA test, run on the CPU in ordinary CI: the same case tables and
the same helpers the cuda-marked tests use, with CPU tensors, each reference checked against
fastrnn's CPU kernels or torch's CPU ops. A broken reference (a gradient asked of a tensor not in
its graph, a wrong shape, a bad case) fails here instead of in the few lent GPU minutes."""

import copy

import pytest
import torch

import fastrnn.functional as FF
import test_conv_cuda as conv
import test_cuda_rnn as cuda_rnn
import test_optim_cuda as optim
import test_rnn_persistent_cuda as persistent
from reference import CELLS
from cuda_references import (fastrnn_run, grad_names, module_input, module_outputs, module_pair, problem,
                             relative_error, rnn_reference)

# float64 on both sides: only summation order differs.
EXACT = 1e-10


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small problems: torch's OpenMP barriers would cost more than the work on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_all(names, got, expected, tolerance):
    assert len(got) == len(expected) == len(names)
    for name, g, e in zip(names, got, expected):
        assert (g is None) == (e is None), name
        if e is not None:
            err = relative_error(g, e)
            assert err <= tolerance, f"{name}: relative error {err:.3e} > {tolerance:.0e}"


def rnn_problems():
    """(cell, dtype, T, B, I, H, seed, reverse) of every RNN problem the CUDA tests build: the full
    tables for the small cases, one dtype per case for the larger ones (the dtype only rounds)."""
    out = [(cell, dtype, *case, case[0] + case[3], reverse) for case in cuda_rnn.FUNCTIONAL_CASES
           for cell in CELLS for dtype in cuda_rnn.ALL_DTYPES for reverse in (False, True)]
    for k, case in enumerate(persistent.CASES):
        T, B, I, H = case
        for cell in CELLS:
            dtype = persistent.ALL_DTYPES[k % len(persistent.ALL_DTYPES)]
            out.append((cell, dtype, *case, T + B + H, k % 2 == 1))
    out.append((*cuda_rnn.LARGER_PROBLEM, False))
    out.append((*cuda_rnn.TF32_PROBLEM, False))
    return out


RNN_PROBLEMS = rnn_problems()


def problem_id(p):
    cell, dtype, T, B, I, H, seed, reverse = p
    return f"{cell}-{str(dtype)[6:]}-T{T}B{B}I{I}H{H}-{'reverse' if reverse else 'forward'}"


@pytest.mark.parametrize("p", RNN_PROBLEMS, ids=problem_id)
def test_rnn_reference_matches_cpu_kernels(p):
    """cuda_references.rnn_reference (torch.nn in float64, the reference of test_cuda_rnn and
    test_rnn_persistent_cuda; on a float32 copy of the layer, the cuDNN side's code path) against
    fastrnn_run (the GPU side's code path) with fastrnn's CPU kernels, outputs and gradients."""
    cell, dtype, T, B, I, H, seed, reverse = p
    layer, x, h0, c0, out_weights = problem(cell, dtype, T, B, I, H, seed)
    for t in (x, h0, c0, *out_weights, *layer.parameters()):  # the inputs are representable in dtype
        assert t is None or (t.dtype == torch.float64 and torch.equal(t, t.to(dtype).double()))
    params = [p.detach() for p in layer.parameters()]
    names = ["y", "h_n", "c_n"] + grad_names(cell)
    ref_out, ref_grads = rnn_reference(layer, cell, x, h0, c0, out_weights, reverse)
    ours_out, ours_grads = fastrnn_run(cell, "cpu", torch.float64, x, h0, c0, params, out_weights, reverse)
    check_all(names, ours_out + ours_grads, ref_out + ref_grads, EXACT)
    single_out, single_grads = rnn_reference(copy.deepcopy(layer).float(), cell, x, h0, c0, out_weights, reverse)
    check_all(names, single_out + single_grads, ref_out + ref_grads, 1e-4)
    inference, no_grads = rnn_reference(layer, cell, x, h0, c0, out_weights, reverse, training=False)
    assert no_grads == []
    check_all(names[:3], inference, ref_out, 0.0)


MODULE_PROBLEMS = ([("cuda_rnn", kind, kwargs, 11, 5, 5, None) for kind, kwargs in cuda_rnn.MODULE_CASES]
                   + [("packed", kind, cuda_rnn.packed_kwargs(kind), 9, 5, 8, cuda_rnn.PACKED_LENGTHS)
                      for kind in ("LSTM", "GRU", "RNN")]
                   + [("persistent", kind, kwargs, 8, 3, 5, None) for kind, kwargs in persistent.MODULE_CASES]
                   + [("persistent-packed", kind, dict(input_size=7, hidden_size=37, num_layers=2, bidirectional=True),
                       6, 4, 8, lengths) for kind in ("LSTM", "GRU", "RNN") for lengths in persistent.PACKED_LENGTHS]
                   + [("proj", "LSTM", dict(input_size=7, hidden_size=37, proj_size=5), 6, 3, 0, None)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("problem_", MODULE_PROBLEMS, ids=lambda p: f"{p[0]}-{p[1]}-{len(p[2])}-{p[6]}")
def test_module_reference_matches_cpu_modules(problem_, dtype):
    """module_pair + module_outputs, the module tests' reference side (torch.nn in float64 on the
    CPU), against fastrnn.nn on the CPU in float64: outputs, states and every gradient."""
    _, kind, kwargs, T, B, seed, lengths = problem_
    ours, reference = module_pair(kind, dtype, "cpu", **kwargs)
    for p in reference.parameters():
        assert torch.equal(p, p.to(dtype).float())
    x = module_input(kwargs, dtype, T, B, seed)
    lengths = None if lengths is None else torch.tensor(lengths)
    expected = module_outputs(reference.double(), x, dtype, "cpu", torch.float64, lengths)
    got = module_outputs(ours.double(), x, dtype, "cpu", torch.float64, lengths)
    check_all([f"output {k}" for k in range(len(expected))], got, expected, EXACT)
    assert len(expected) == 1 + (2 if kind == "LSTM" else 1) + 1 + len(list(reference.parameters()))


@pytest.mark.parametrize("kind", cuda_rnn.CELL_KINDS)
def test_cell_reference_matches_cpu_cells(kind):
    ours, reference, x = cuda_rnn.cell_pair(kind)
    got, expected = cuda_rnn.as_list(ours(x.float())), cuda_rnn.as_list(reference(x))
    check_all(range(len(expected)), got, expected, cuda_rnn.TOLERANCE[torch.float32])


# One mode per case, cycling (the mode only rounds the inputs); every case and every mode runs.
CONV_PROBLEMS = [(case, conv.MODES[k % len(conv.MODES)]) for k, case in enumerate(conv.CASES)]


@pytest.mark.parametrize("case,mode", CONV_PROBLEMS, ids=lambda v: v if isinstance(v, str) else conv.case_id(v))
def test_conv_references_match_cpu_kernels(case, mode):
    """test_conv_cuda's references (conv2d forward with and without ReLU, backward, the fused
    block's forward and its backward routed through a given argmax), built by its own make() on
    CPU tensors, against fastrnn's CPU convolution and torch's three ops end to end, in float64."""
    dtype = conv.dtype_of(mode)
    x, w, b, geo = conv.make(case, dtype, device="cpu")
    assert x.dtype == dtype and (b is None) == (not case[-1])
    xd, wd, bd = conv.double(x), conv.double(w), conv.double(b)
    ours = FF.conv2d(xd, wd, bd, **geo)
    for relu in (False, True):
        expected = ours.relu() if relu else ours
        conv.assert_close(conv.forward_reference(x, w, b, geo, relu), expected, EXACT, f"forward relu={relu}")
    dy = conv.output_gradient(x, w, geo, seed=3)
    assert dy.dtype == dtype and dy.shape == ours.shape
    grads = torch.autograd.grad(ours, [xd, wd] + ([bd] if b is not None else []), conv.double(dy))
    reference = conv.backward_reference(dy, x, w, b, geo)
    assert (reference[2] is None) == (b is None)
    for name, r, g in zip(["dx", "dw", "db"], reference, grads):
        conv.assert_close(r, g, EXACT, name)

    pooled, argmax = conv.fused_reference(x, w, b, geo)
    xf, wf, bf = conv.double(x), conv.double(w), conv.double(b)
    ours_pooled = FF.conv_relu_pool2d(xf, wf, bf, **geo)
    conv.assert_close(pooled, ours_pooled, EXACT, "pooled")
    assert argmax.min() >= 0 and argmax.max() <= 3
    dy = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    reference = conv.fused_backward_reference(dy, pooled.detach().to(dtype), argmax.to(torch.uint8), x, w, b, geo)
    ours_pooled.backward(dy.double())
    for name, r, g in zip(["dx", "dw", "db"], reference, (xf.grad, wf.grad, None if bf is None else bf.grad)):
        if g is not None:
            conv.assert_close(r, g, EXACT, "fused " + name)


# One configuration per optimizer from test_optim_cuda's table (the full table runs on the CPU
# kernels in test_optim.py), its half-precision table, and the clipping test.
OPTIM_PROBLEMS = ([(c, dtype, optim.STEPS, None) for c, dtype in
                   zip({name: (name, kwargs) for name, kwargs in reversed(optim.CONFIGS)}.values(),
                       [torch.float32, torch.float64] * 3)]
                  + [(c, dtype, 10, None) for c in optim.HALF_CONFIGS for dtype in (torch.float16, torch.bfloat16)]
                  + [(("Adam", dict(lr=0.01)), torch.float32, optim.STEPS, "clip")])


@pytest.mark.parametrize("config,dtype,steps,clip", OPTIM_PROBLEMS,
                         ids=lambda v: optim.config_id(v) if isinstance(v, tuple) else str(v))
def test_optim_reference_runs_on_the_cpu(config, dtype, steps, clip):
    """test_optim_cuda's run() and its comparison with CPU tensors: torch.optim against fastrnn.optim
    (its CPU kernels; torch's own step for half precision) on the same parameters and gradients."""
    name, kwargs = config
    extra = dict(ours_kwargs=dict(max_grad_norm=0.5), reference_grads=optim.clip) if clip else {}
    ref, ours, ref_params, our_params = optim.run(name, kwargs, dtype, steps=steps, device="cpu", **extra)
    assert all(p.device.type == "cpu" for p in ref_params + our_params)
    assert any(not torch.equal(p, q) for p, q in zip(ref_params, optim.twins(dtype, "cpu")[0])), "no step taken"
    optim.assert_twins_match(ref, ours, ref_params, our_params, dtype)
