"""Optimizers as graph updates: ``torch.optim``'s step, written as ``sg.function`` updates.

Each optimizer takes a loss and its parameters and returns ``[(parameter, new value), ...]``
for ``sg.function(..., updates=...)``: the gradients, the step and any state (momentum,
Adam's moments and step count, kept in parameters of their own) are nodes of the same compiled
graph, so one call computes the loss, the gradients and the new values together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import ops
from .autodiff import grad
from .tensor import Parameter, Tensor, parameter


def params_list(params) -> list:
    params = [params] if isinstance(params, Tensor) else list(params)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"optimizers update parameters (sg.parameter), got {p!r}")
    return params


def sgd(loss: Tensor, params: Sequence[Parameter], lr: float, momentum: float = 0.0,
        weight_decay: float = 0.0) -> list:
    """Updates of ``torch.optim.SGD``: ``p -= lr * g`` (with ``momentum``, a velocity
    ``v = momentum * v + g`` kept per parameter, and ``p -= lr * v``).

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0, -2.0]), name="w")
    >>> step = sg.function([], sg.sum(w * w), updates=sg.optim.sgd(sg.sum(w * w), [w], lr=0.25),
    ...                    backend="numpy")
    >>> float(step()), w.value.tolist()
    (5.0, [0.5, -1.0])
    """
    params = params_list(params)
    updates = []
    for p, g in zip(params, grad(loss, params)):
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            v = parameter(np.zeros_like(p.value), name=f"{p.name or 'param'}.momentum")
            g = momentum * v + g
            updates.append((v, g))
        updates.append((p, p - lr * g))
    return updates


def adam(loss: Tensor, params: Sequence[Parameter], lr: float = 1e-3,
         betas: tuple = (0.9, 0.999), eps: float = 1e-8) -> list:
    """Updates of ``torch.optim.Adam`` (bias-corrected moments, ``eps`` outside the root);
    the moments and the step count are parameters created here, updated with the weights.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0]), name="w")
    >>> step = sg.function([], sg.sum(w * w), updates=sg.optim.adam(sg.sum(w * w), [w], lr=0.1),
    ...                    backend="numpy")
    >>> _ = step(); round(float(w.value[0]), 6)   # the first Adam step moves by lr
    0.9
    """
    params = params_list(params)
    b1, b2 = betas
    dtype = np.result_type(*[p.dtype for p in params])
    t = parameter(np.zeros((), dtype), name="adam.step")
    t_next = t + 1.0
    updates = [(t, t_next)]
    for p, g in zip(params, grad(loss, params)):
        name = p.name or "param"
        m = parameter(np.zeros_like(p.value), name=f"{name}.exp_avg")
        v = parameter(np.zeros_like(p.value), name=f"{name}.exp_avg_sq")
        m_next = b1 * m + (1 - b1) * g
        v_next = b2 * v + (1 - b2) * g * g
        m_hat = m_next / (1 - ops.cast(b1 ** t_next, p.dtype))
        v_hat = v_next / (1 - ops.cast(b2 ** t_next, p.dtype))
        updates += [(m, m_next), (v, v_next), (p, p - lr * m_hat / (ops.sqrt(v_hat) + eps))]
    return updates
