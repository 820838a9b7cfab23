"""``sg.optim``: SGD (with momentum, weight decay) and Adam as graph updates, step by step
equal to hand-written NumPy versions of ``torch.optim``'s update rules, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg


def problem(rng, dtype):
    """A least-squares loss of two parameters, and its gradient written by hand."""
    X = rng.standard_normal((8, 3)).astype(dtype)
    y = rng.standard_normal(8).astype(dtype)
    w0 = rng.standard_normal(3).astype(dtype)
    b0 = np.array(0.5, dtype)

    def grads(w, b):
        r = X @ w + b - y
        return [2 * X.T @ r, 2 * np.sum(r)]
    return X, y, w0, b0, grads


def staticgrad_run(backend, dtype, rng, make_updates, steps=5):
    X, y, w0, b0, grads = problem(rng, dtype)
    x = sg.placeholder(X.shape, dtype, name="X")
    t = sg.placeholder(y.shape, dtype, name="y")
    w = sg.parameter(w0, name="w")
    b = sg.parameter(b0, name="b")
    loss = sg.sum((x @ w + b - t) ** 2)
    step = sg.function([x, t], loss, updates=make_updates(loss, [w, b]), backend=backend)
    history = [(w.value.copy(), b.value.copy())]
    for _ in range(steps):
        step(X, y)
        history.append((w.value.copy(), b.value.copy()))
    return history, (w0, b0, grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01)])
def test_sgd_matches_torch_rules(backend, dtype, momentum, decay, rng):
    lr = 0.01
    history, (w, b, grads) = staticgrad_run(
        backend, dtype, rng, lambda loss, ps: sg.optim.sgd(loss, ps, lr, momentum, decay))
    params, velocity = [w.astype(np.float64), b.astype(np.float64)], [0.0, 0.0]
    for k in range(1, len(history)):
        gs = [g + decay * p for g, p in zip(grads(*params), params)]
        velocity = [momentum * v + g if momentum else g for v, g in zip(velocity, gs)]
        params = [p - lr * v for p, v in zip(params, velocity)]
        for got, want in zip(history[k], params):
            np.testing.assert_allclose(got, want, rtol=2e-5 if dtype == np.float32 else 1e-12)
            assert got.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_torch_rules(backend, dtype, rng):
    lr, (b1, b2), eps = 0.05, (0.9, 0.999), 1e-8
    history, (w, b, grads) = staticgrad_run(
        backend, dtype, rng, lambda loss, ps: sg.optim.adam(loss, ps, lr, (b1, b2), eps))
    params = [w.astype(np.float64), b.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for k in range(1, len(history)):
        gs = grads(*params)
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, gs)]
        v = [b2 * vi + (1 - b2) * g * g for vi, g in zip(v, gs)]
        params = [p - lr * (mi / (1 - b1 ** k)) / (np.sqrt(vi / (1 - b2 ** k)) + eps)
                  for p, mi, vi in zip(params, m, v)]
        for got, want in zip(history[k], params):
            np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_optimizers_need_parameters():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(TypeError, match="optimizers update parameters"):
        sg.optim.sgd(sg.sum(x * x), [x], lr=0.1)
