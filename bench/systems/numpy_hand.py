"""NumPy with hand-written gradients: the baseline every ratio is taken against.

The math functions are written once, dtype-generic: run on float32 data they are the NumPy
system, run on float64 data they are the reference every system is checked against
(``tests/test_bench.py`` checks them against finite differences). Written the way a careful
person would by hand: shared subexpressions reused, no heroic in-place tricks.
"""

from __future__ import annotations

import numpy as np

from bench.systems import Runner

# --- the math (forward and hand-derived backward) ------------------------------------------


def mlp_loss_and_grads(x, y, w1, w2):
    """The tutorial's numpy version: relu MLP, sum-of-squares loss; gradients wrt w1, w2."""
    h = x.dot(w1)
    h_relu = np.maximum(h, 0)
    y_pred = h_relu.dot(w2)
    diff = y_pred - y
    loss = np.square(diff).sum()
    grad_y_pred = 2.0 * diff
    grad_w2 = h_relu.T.dot(grad_y_pred)
    grad_h = grad_y_pred.dot(w2.T)
    grad_h[h < 0] = 0
    grad_w1 = x.T.dot(grad_h)
    return loss, grad_w1, grad_w2


def elementwise_loss_and_grads(x, w):
    """sum(tanh(x*w + 1)**2 * exp(-x*x)) and its gradients wrt x and w."""
    t = np.tanh(x * w + 1)
    e = np.exp(-x * x)
    t2e = t * t * e
    loss = t2e.sum()
    d_u = 2 * t * e * (1 - t * t)       # d loss / d (x*w + 1)
    return loss, d_u * w - 2 * x * t2e, d_u * x


def tiny_graph(x, w):
    """y = (x + w) * (w + 1), dy/dx, dy/dw."""
    a, b = x + w, w + 1
    return a * b, b, b + a


def hessian_vector_product(x, v):
    """H v for f(x) = sum(sin(x) * x**3): the Hessian is diagonal."""
    s, c, x2 = np.sin(x), np.cos(x), x * x
    return (6 * x * s + 6 * x2 * c - x2 * x * s) * v


def softmax_regression(X, labels, W, b):
    """Mean cross-entropy of softmax(X @ W + b) against integer labels; grads wrt W, b."""
    n = X.shape[0]
    rows = np.arange(n)
    z = X @ W + b
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[rows, labels].mean()
    dz = np.exp(log_p)
    dz[rows, labels] -= 1
    dz /= n
    return loss, X.T @ dz, dz.sum(axis=0)


def layer_norm(x, gamma, beta, R, eps):
    """sum(layer_norm(x) * R) over the last axis; grads wrt x, gamma, beta."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    xhat = xc * rstd
    loss = ((xhat * gamma + beta) * R).sum()
    g = R * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return loss, dx, (R * xhat).sum(axis=0), R.sum(axis=0)


# --- the system ----------------------------------------------------------------------------


def setup() -> dict:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # the config layout is not a stable API
        blas = "unknown"
    return {"version": np.__version__, "blas": blas}


def w1(d: dict) -> Runner:
    from bench.workloads import LEARNING_RATE as lr
    x, y, p1, p2 = d["x"], d["y"], d["w1"].copy(), d["w2"].copy()

    def call():
        loss, g1, g2 = mlp_loss_and_grads(x, y, p1, p2)
        p1[...] -= lr * g1   # in place, as the tutorial does
        p2[...] -= lr * g2
        return loss

    return Runner(call, weight_steps(call, [p1, p2]))


def weight_steps(call, weights: list):
    """``check`` for a training step: its loss and how far it moved each weight array."""
    def check() -> list:
        before = [np.array(w, dtype=np.float64) for w in weights]
        loss = call()
        return [np.asarray(loss)] + [b - np.asarray(w, dtype=np.float64)
                                     for b, w in zip(before, weights)]
    return check


def w2(d: dict) -> Runner:
    return plain(lambda: elementwise_loss_and_grads(d["x"], d["w"]))


def w3(d: dict) -> Runner:
    x, w = d["x"][()], d["w"][()]   # NumPy float64 scalars
    return plain(lambda: tiny_graph(x, w))


def w4(d: dict) -> Runner:
    return plain(lambda: [hessian_vector_product(d["x"], d["v"])])


def w5(d: dict) -> Runner:
    return plain(lambda: softmax_regression(d["X"], d["labels"], d["W"], d["b"]))


def w6(d: dict) -> Runner:
    from bench.workloads import LAYER_NORM_EPS
    return plain(lambda: layer_norm(d["x"], d["gamma"], d["beta"], d["R"], LAYER_NORM_EPS))


def plain(call) -> Runner:
    return Runner(call, lambda: [np.asarray(o) for o in call()])


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6}
