"""Shared fixtures: backends, tolerances per dtype, and finite-difference gradient checks."""

from __future__ import annotations

import glob
import inspect
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import staticgrad as sg

BACKENDS = ["numpy", "numba"]

# relative/absolute tolerances for values computed in each dtype
TOL = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
       np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}
# finite differences are taken in float64 and compared with looser bounds
FD_TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every test taking ``backend`` runs once per backend."""
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tol(dtype) -> dict:
    return TOL[np.dtype(dtype)]


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x`` (float64)."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    flat, grad = x.reshape(-1), out.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        hi = float(f(x))
        flat[k] = old - eps
        lo = float(f(x))
        flat[k] = old
        grad[k] = (hi - lo) / (2 * eps)
    return out


# -- shared by test_tensor/test_autodiff/test_function/test_graph -----------------------------
def caller_line() -> int:
    """The line number of the statement that called this (for 'file.py:LINE' in errors)."""
    return inspect.currentframe().f_back.f_lineno


def run(inputs, outputs, *args, backend: str = "numpy"):
    """Compile ``outputs`` of ``inputs`` for ``backend`` and call it once with ``args``."""
    return sg.function(inputs, outputs, backend=backend)(*args)


@pytest.fixture(scope="module")
def compile_once():
    """A per-module cache of compiled functions: ``compile_once(key, build)`` calls ``build()``
    once per key, so tests that can share a compiled function (each costs ~1 s with numba) do.
    Put the backend in the key."""
    cache: dict = {}

    def get(key, build):
        if key not in cache:
            cache[key] = build()
        return cache[key]

    return get


# -- shared by test_ops/test_random_graphs ------------------------------------------------------
def grad_tol(dtype) -> dict:
    """Tolerances for a gradient computed in ``dtype`` against float64 finite differences."""
    t = tol(dtype)
    return dict(rtol=max(t["rtol"], FD_TOL["rtol"]), atol=max(t["atol"], FD_TOL["atol"]))


def numerical_vjp(f, arrays, v, wrt, eps: float = 1e-6) -> list:
    """Central differences of ``sum(v * f(*arrays))`` with respect to ``arrays[k]``, k in
    ``wrt`` (all in float64): the vector-Jacobian product a VJP rule must reproduce."""
    arrays = [np.asarray(a) for a in arrays]
    v = np.asarray(v, dtype=np.float64)
    grads = []
    for k in wrt:
        def scalar(xk, k=k):
            args = arrays[:k] + [xk] + arrays[k + 1:]
            return np.sum(np.asarray(f(*args), dtype=np.float64) * v)
        grads.append(numerical_grad(scalar, arrays[k], eps))
    return grads


# -- tiers and parallel runs --------------------------------------------------------------------
def pytest_collection_modifyitems(config, items):
    """``test_ops`` on numba compiles hundreds of kernels: it is the ``slow`` tier (skip it with
    ``-m "not slow"`` for everyday work). Its tests share compiled results per backend and
    dtype, so each such group runs on one xdist worker (``--dist loadgroup``), groups in
    parallel."""
    for item in items:
        if item.path.name != "test_ops.py":
            continue
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        backend = params.get("backend", "any")
        dtype = params.get("dtype")
        group = f"ops-{backend}-{np.dtype(dtype).name if dtype is not None else 'all'}"
        item.add_marker(pytest.mark.xdist_group(group))
        if backend == "numba":
            item.add_marker(pytest.mark.slow)


# -- shared by test_blas/test_cache ----------------------------------------------------------
def runs_after_a_cache_race(script: str, env: dict, index: str) -> list:
    """Run ``script`` (it prints whether its numbers are right) in a fresh process, then make
    the Numba cache index ``index`` (a glob under ``env["NUMBA_CACHE_DIR"]``) what two
    processes saving a signature each at once can leave: each signature's key naming the data
    file of the other's machine code; then run it twice more. Returns the three runs."""
    def run():
        return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                              capture_output=True, text=True, timeout=300)

    runs = [run()]
    (path,) = glob.glob(os.path.join(env["NUMBA_CACHE_DIR"], "**", index), recursive=True)
    with open(path, "rb") as f:
        version = pickle.load(f)
        stamp, overloads = pickle.loads(f.read())
    first, second = overloads
    overloads[first], overloads[second] = overloads[second], overloads[first]
    with open(path, "wb") as f:
        pickle.dump(version, f, protocol=-1)
        f.write(pickle.dumps((stamp, overloads), protocol=-1))
    return runs + [run(), run()]
