"""PyTorch eager: the graph is recorded on every call and differentiated by autograd.

Written the way the PyTorch tutorials write it (``clamp(min=0)``, ``torch.autograd.grad``,
in-place SGD under ``no_grad``), using library kernels where PyTorch has one
(``cross_entropy``, ``layer_norm``): peers are measured at their idiomatic best.
"""

from __future__ import annotations

import numpy as np

from bench.systems import Runner
from bench.workloads import LAYER_NORM_EPS, LEARNING_RATE


def setup() -> dict:
    import torch
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads()}


def tensors(d: dict, *names: str, grad: bool = False) -> list:
    import torch
    return [torch.from_numpy(d[n].copy()).requires_grad_(grad) for n in names]


def numpy_list(values) -> list:
    return [v.detach().numpy().copy() for v in values]


def w1(d: dict) -> Runner:
    import torch
    x, y = tensors(d, "x", "y")
    w1, w2 = tensors(d, "w1", "w2", grad=True)

    def call():
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            w1.sub_(LEARNING_RATE * w1.grad)   # the tutorial's w1 -= learning_rate * w1.grad
            w2.sub_(LEARNING_RATE * w2.grad)
        w1.grad = None   # what optimizer.zero_grad() does by default
        w2.grad = None
        return loss

    def check() -> list:
        before = [w.detach().numpy().astype(np.float64) for w in (w1, w2)]
        loss = call().item()
        return [np.asarray(loss)] + [b - w.detach().numpy() for b, w in zip(before, (w1, w2))]

    return Runner(call, check)


def grads_runner(f, inputs: list, wrt: list) -> Runner:
    """``f(*inputs)`` is the loss; each call returns it with its gradients wrt ``wrt``."""
    import torch

    def call():
        loss = f(*inputs)
        return (loss, *torch.autograd.grad(loss, wrt))

    return Runner(call, lambda: numpy_list(call()))


def w2(d: dict) -> Runner:
    import torch
    x, w = tensors(d, "x", "w", grad=True)
    f = lambda x, w: (torch.tanh(x * w + 1) ** 2 * torch.exp(-x * x)).sum()
    return grads_runner(f, [x, w], [x, w])


def w3(d: dict) -> Runner:
    x, w = tensors(d, "x", "w", grad=True)
    return grads_runner(lambda x, w: (x + w) * (w + 1), [x, w], [x, w])


def w4(d: dict) -> Runner:
    import torch
    x, = tensors(d, "x", grad=True)
    v, = tensors(d, "v")

    def call():
        g, = torch.autograd.grad((torch.sin(x) * x ** 3).sum(), x, create_graph=True)
        return torch.autograd.grad(g, x, grad_outputs=v)

    return Runner(call, lambda: numpy_list(call()))


def w5(d: dict) -> Runner:
    import torch.nn.functional as F
    X, labels = tensors(d, "X", "labels")
    W, b = tensors(d, "W", "b", grad=True)
    f = lambda X, labels, W, b: F.cross_entropy(X @ W + b, labels)
    return grads_runner(f, [X, labels, W, b], [W, b])


def w6(d: dict) -> Runner:
    import torch.nn.functional as F
    x, gamma, beta = tensors(d, "x", "gamma", "beta", grad=True)
    R, = tensors(d, "R")
    f = lambda x, gamma, beta: (F.layer_norm(x, gamma.shape, gamma, beta, LAYER_NORM_EPS)
                                * R).sum()
    return grads_runner(f, [x, gamma, beta], [x, gamma, beta])


def w9(d: dict) -> Runner:
    import torch.nn.functional as F
    x, labels = tensors(d, "x", "labels")
    params = tensors(d, "w1", "b1", "w2", "b2", "w3", "b3", grad=True)

    def f(x, labels, w1, b1, w2, b2, w3, b3):
        h = F.relu(F.conv2d(x, w1, b1, padding=1))
        h = F.relu(F.conv2d(h, w2, b2, padding=1))
        h = F.max_pool2d(h, 2).flatten(1)
        return F.cross_entropy(F.linear(h, w3, b3), labels)

    return grads_runner(f, [x, labels, *params], params)


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W9": w9}
