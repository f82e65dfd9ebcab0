"""The packed CPU GEMM behind every product, on each instruction set, against NumPy."""

import numpy as np
import pytest

from fastrnn import _C

# The last two have a small C over a long depth, which the threads split (when there are two).
SHAPES = [(1, 1, 1), (7, 13, 37), (37, 7, 13), (97, 130, 300), (64, 1030, 257), (300, 64, 600), (37, 29, 700),
          (61, 45, 1001),
          # One or two rows read B in place (two threads from N*K = 256K, column blocks of 512).
          (1, 130, 300), (2, 1030, 257), (2, 7, 13), (3, 45, 50)]


def scratch(dtype):
    return np.empty(_C.gemm_scratch_bytes(dtype), np.uint8)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_numpy(isa, dtype, tol, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (0.5, 2.0)]:
        c = rng.standard_normal((m, n)).astype(dtype)
        expected = alpha * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)) + beta * c
        _C.gemm(trans_a, trans_b, alpha, a, b, beta, c, scratch(dtype))
        err = np.abs(c - expected).max() / np.sqrt(k)
        assert err < tol * max(1.0, np.abs(expected).max()), (alpha, beta, err)


@pytest.mark.parametrize("m", [1, 5])
def test_gemm_beta_zero_does_not_read_c(isa, m):
    a = np.ones((m, 3))
    b = np.ones((3, 4))
    c = np.full((m, 4), np.nan)
    _C.gemm(False, False, 1.0, a, b, 0.0, c, scratch("float64"))
    np.testing.assert_array_equal(c, np.full((m, 4), 3.0))


@pytest.mark.parametrize("trans_a", [False, True])
def test_gemm_split_depth_beta_zero_does_not_read_c(trans_a):
    # A small C over a long depth: each thread sums part of the depth, the partials are added.
    rng = np.random.default_rng(5)
    a = rng.standard_normal((1001, 61) if trans_a else (61, 1001))
    b = rng.standard_normal((1001, 45))
    c = np.full((61, 45), np.nan)
    _C.gemm(trans_a, False, 2.0, a, b, 0.0, c, scratch("float64"))
    np.testing.assert_allclose(c, 2.0 * ((a.T if trans_a else a) @ b), rtol=1e-12, atol=1e-11)


def test_gemm_with_empty_inner_dimension_scales_c():
    c = np.full((3, 2), 4.0)
    _C.gemm(False, False, 1.0, np.empty((3, 0)), np.empty((0, 2)), 0.5, c, scratch("float64"))
    np.testing.assert_array_equal(c, np.full((3, 2), 2.0))


def test_gemm_writes_only_inside_c_with_leading_dimension():
    # C as a window of a larger matrix: the elements around it must stay untouched.
    big = np.full((9, 11), -7.0)
    a = np.arange(12.0).reshape(4, 3)
    b = np.arange(15.0).reshape(3, 5)
    _C.gemm(False, False, 1.0, a, b, 0.0, big[2:6, 3:8], scratch("float64"))
    np.testing.assert_array_equal(big[2:6, 3:8], a @ b)
    big[2:6, 3:8] = -7.0
    np.testing.assert_array_equal(big, np.full((9, 11), -7.0))
