"""``blas.gemm``: NumPy's OpenBLAS called from compiled kernels, every operand layout; and
``blas.matmul``, the package's one compiled product with its transposes as run-time flags."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pytest
from conftest import runs_after_a_cache_race

from staticgrad.backends.numba import blas

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(7, 5, 3), (1, 5, 3), (7, 1, 3), (7, 5, 1), (64, 33, 10)])
@pytest.mark.parametrize("a_t, b_t", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy(dtype, m, k, n, a_t, b_t):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((k, m) if a_t else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if b_t else (k, n)).astype(dtype)
    a, b = (a.T if a_t else a), (b.T if b_t else b)
    out = np.full((m, n), np.nan, dtype)
    blas.gemm(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32
                               else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_of_strided_operands_takes_the_general_path(dtype):
    # neither axis of unit stride: typed as layout "A", multiplied by loops, not BLAS flags
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 10)).astype(dtype)[:, ::2]
    b = rng.standard_normal((5, 8)).astype(dtype)[::1, ::2]
    out = np.full((6, 4), np.nan, dtype)
    blas.gemm(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-5)


def test_gemm_of_an_empty_inner_axis_is_zeros():
    out = np.full((4, 3), np.nan)
    blas.gemm(np.ones((4, 0)), np.ones((0, 3)), out)
    assert (out == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(7, 5, 3), (1, 5, 3), (7, 1, 3), (7, 5, 1), (64, 33, 10),
                                     (4, 0, 3), (0, 5, 3), (7, 5, 0)])
@pytest.mark.parametrize("a_t, b_t", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_matmul_flags_read_the_base_arrays_transposed(dtype, m, k, n, a_t, b_t):
    # the operands are the C-contiguous base arrays; a flag says BLAS reads one transposed
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((k, m) if a_t else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if b_t else (k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    blas.matmul(a, b, out, a_t, b_t)
    want = (a.T if a_t else a).astype(np.float64) @ (b.T if b_t else b)
    np.testing.assert_allclose(out, want, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-5)   # an empty inner axis: zeros, not the NaN there


@pytest.mark.parametrize("a_t, b_t", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_matmul_of_other_layouts_is_still_right(a_t, b_t):
    # a constant keeps the layout it was given (Fortran order, a strided view): typed as
    # such, so it takes the general path, not the flags as they are
    rng = np.random.default_rng(5)
    a = np.asfortranarray(rng.standard_normal((5, 7) if a_t else (7, 5)))
    b = rng.standard_normal((3, 10) if b_t else (5, 6))[:, ::2]
    a.flags.writeable = False
    out = np.full((7, 3), np.nan)
    blas.matmul(a, b, out, a_t, b_t)
    np.testing.assert_allclose(out, (a.T if a_t else a) @ (b.T if b_t else b), rtol=1e-12)


def test_matmul_compiles_once_per_dtype_whatever_the_flags():
    for dtype in (np.float32, np.float64):
        a, out = np.ones((3, 3), dtype), np.empty((3, 3), dtype)
        for flags in ((0, 0), (1, 0), (0, 1), (1, 1)):
            blas.matmul(a, a, out, *flags)
        mine = (numba.typeof(a), numba.typeof(a), numba.typeof(out))
        assert sum(1 for sig in blas.matmul.signatures if sig[:3] == mine) == 1


TWO_SIGNATURES = """
    import numpy as np
    from staticgrad.backends.numba import blas
    a, b = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
    outs = [np.empty((3, 2)), np.empty((3, 2))]
    blas.gemm(a, b, outs[0])                             # two signatures: C and Fortran a
    blas.gemm(np.asfortranarray(a), b, outs[1])
    print(all(np.array_equal(out, a @ b) for out in outs))
"""


def test_cached_code_of_another_signature_is_not_run(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    runs = runs_after_a_cache_race(TWO_SIGNATURES, env, "blas.gemm-*.nbi")
    assert [r.stdout.strip() for r in runs] == ["True"] * 3, [r.stderr[-2000:] for r in runs]


def test_layout_names_row_and_column_major_and_nothing_else():
    x = np.zeros((6, 10))
    assert blas._layout(x) == (blas.NO_TRANS, 10)
    assert blas._layout(x.T) == (blas.TRANS, 10)
    assert blas._layout(x[:, ::2]) == (0, 0)   # gemm then calls np.dot


def test_provider_is_named():
    assert blas.PROVIDER.startswith(("numpy ", "numba np.dot"))
