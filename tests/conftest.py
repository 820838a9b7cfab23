"""Shared fixtures: backends, tolerances per dtype, and finite-difference gradient checks."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg

BACKENDS = ["numpy"]

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
