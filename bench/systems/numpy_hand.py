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


def conv3x3(x, w, b):
    """A 3x3 convolution with padding 1 (NCHW, OIHW) and the input's windows it read."""
    from numpy.lib.stride_tricks import sliding_window_view
    cols = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    out = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))          # (N, H, W, O)
    return out.transpose(0, 3, 1, 2) + b[:, None, None], cols


def conv3x3_backward(g, cols, w, input_grad: bool = True):
    """Gradients of ``conv3x3`` wrt its input (None unless asked), weight and bias."""
    gw = np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))           # (O, C, 3, 3)
    gx = None
    if input_grad:
        n, c, h, wd = cols.shape[:4]
        padded = np.zeros((n, c, h + 2, wd + 2), g.dtype)
        for i in range(3):
            for j in range(3):
                part = np.tensordot(g, w[:, :, i, j], axes=([1], [0]))  # (N, H, W, C)
                padded[:, :, i:i + h, j:j + wd] += part.transpose(0, 3, 1, 2)
        gx = padded[:, :, 1:-1, 1:-1]
    return gx, gw, g.sum(axis=(0, 2, 3))


def digits_cnn(x, labels, w1, b1, w2, b2, w3, b3):
    """The digits CNN (two 3x3 convolutions with ReLU, a 2x2 max pool, a linear layer):
    mean cross-entropy and its gradients wrt the six parameters. Ties in a pooling window
    share its gradient evenly (only all-zero windows after a ReLU tie, whose share the ReLU
    then zeroes)."""
    n = x.shape[0]
    a1, cols1 = conv3x3(x, w1, b1)
    h1 = np.maximum(a1, 0)
    a2, cols2 = conv3x3(h1, w2, b2)
    h2 = np.maximum(a2, 0)
    blocks = h2.reshape(n, h2.shape[1], h2.shape[2] // 2, 2, h2.shape[3] // 2, 2)
    pooled = blocks.max(axis=(3, 5))
    features = pooled.reshape(n, -1)
    z = features @ w3.T + b3
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    dz = np.exp(log_p)
    dz[np.arange(n), labels] -= 1
    dz /= n
    hits = blocks == pooled[:, :, :, None, :, None]
    share = hits / hits.sum(axis=(3, 5), keepdims=True)
    dh2 = (share * (dz @ w3).reshape(pooled.shape)[:, :, :, None, :, None]).reshape(h2.shape)
    dh1, gw2, gb2 = conv3x3_backward(dh2 * (a2 > 0), cols2, w2)
    _, gw1, gb1 = conv3x3_backward(dh1 * (a1 > 0), cols1, w1, input_grad=False)
    return loss, gw1, gb1, gw2, gb2, dz.T @ features, dz.sum(axis=0)


# --- the system ----------------------------------------------------------------------------


def setup() -> dict:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # the config layout is not a stable API
        blas = "unknown"
    return {"version": np.__version__, "blas": blas}


CNN_INPUTS = ("x", "labels", "w1", "b1", "w2", "b2", "w3", "b3")


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


def w9(d: dict) -> Runner:
    return plain(lambda: digits_cnn(*(d[k] for k in CNN_INPUTS)))


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W9": w9}
