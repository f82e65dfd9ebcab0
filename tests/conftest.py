"""Shared fixtures and checks: tolerances, instruction sets, NaN-poisoned output buffers. The
torch references themselves live in tests/reference.py (torch_layer and torch_reference are
re-exported here for the suites that import them from conftest)."""

import pytest
import torch

import fastrnn
import fastrnn.numpy
import fastrnn.ops
from fastrnn.ops import _runtime

from reference import CELLS, poisoned_empty, poisoned_numpy_empty, torch_layer, torch_reference  # noqa: F401
DTYPES = [torch.float64, torch.float32]
# Largest error allowed, relative to the largest magnitude of the reference (at least 1).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5}
SUPPORTED_ISAS = fastrnn._C.supported_isas()


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every output and workspace the kernels receive starts as NaN, so an element a kernel
    forgets to write fails the comparison instead of passing on lucky zeros."""

    torch_empty, numpy_empty = poisoned_empty, poisoned_numpy_empty

    def recycled(t):  # a kept reserve handed out again: as if fresh
        return t.fill_(float("nan"))

    monkeypatch.setattr(_runtime, "empty", torch_empty)
    monkeypatch.setattr(_runtime, "recycled", recycled)
    monkeypatch.setattr(fastrnn.numpy, "_empty", numpy_empty)
    fastrnn.ops.empty_cache()  # so each test's first workspace is a poisoned one too


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Runs a test once per instruction set this CPU supports, then restores the best one."""
    previous = fastrnn._C.get_isa()
    fastrnn._C.set_isa(request.param)
    yield request.param
    fastrnn._C.set_isa(previous)


def assert_close(actual, expected, dtype, what=""):
    """Max-norm comparison scaled by the reference; NaN must sit where the reference has NaN."""
    actual = torch.as_tensor(actual).detach().to(torch.float64)
    expected = torch.as_tensor(expected).detach().to(torch.float64)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    nan_a, nan_e = actual.isnan(), expected.isnan()
    assert torch.equal(nan_a, nan_e), f"{what}: NaN positions differ ({int(nan_a.sum())} vs {int(nan_e.sum())})"
    finite = expected.isfinite() & actual.isfinite()
    assert torch.equal(actual[~finite & ~nan_e], expected[~finite & ~nan_e]), f"{what}: infinities differ"
    if finite.any():
        a, e = actual[finite], expected[finite]
        scale = max(1.0, e.abs().max().item())
        err = (a - e).abs().max().item()
        assert err <= TOLERANCE[dtype] * scale, f"{what}: max error {err:.3e} > {TOLERANCE[dtype]:.0e} x {scale:.3g}"


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run only where a GPU and a CUDA build of fastrnn are present."""
    if torch.cuda.is_available() and fastrnn.build_info()["cuda_device_available"]:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of fastrnn")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
