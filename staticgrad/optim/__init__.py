"""Optimizers as graph updates: ``torch.optim``'s step, written as ``sg.function`` updates.

``SGD``, ``Adam``, ``AdamW`` and ``RMSprop`` are objects with PyTorch's hyperparameters; their
``updates(loss, params)`` returns ``[(parameter, new value), ...]`` for
``sg.function(..., updates=...)``, so the gradients, the step and the optimizer's state
(momentum buffers, moments, step counts: parameters of their own, in ``optimizer.state``) are
nodes of one compiled graph. ``clip_grad_norm`` clips gradient nodes by their global norm;
``step_lr``, ``cosine_lr`` and ``linear_warmup`` are learning-rate schedules that run in Python
or in the graph. ``sgd`` and ``adam`` are the same rules as one function call.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..tensor import Parameter, Tensor
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .schedules import Schedule, cosine_lr, linear_warmup, step_lr

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm", "Schedule",
           "step_lr", "cosine_lr", "linear_warmup", "sgd", "adam"]


def sgd(loss: Tensor, params: Sequence[Parameter], lr: float, momentum: float = 0.0,
        weight_decay: float = 0.0) -> list:
    """The updates of ``SGD(lr=lr, momentum=momentum, weight_decay=weight_decay)``:
    ``p -= lr * g`` (with ``momentum``, a buffer ``b = momentum * b + g`` per parameter, and
    ``p -= lr * b``).

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0, -2.0]), name="w")
    >>> step = sg.function([], sg.sum(w * w), updates=sg.optim.sgd(sg.sum(w * w), [w], lr=0.25),
    ...                    backend="numpy")
    >>> float(step()), w.value.tolist()
    (5.0, [0.5, -1.0])
    """
    return SGD(lr=lr, momentum=momentum, weight_decay=weight_decay).updates(loss, params)


def adam(loss: Tensor, params: Sequence[Parameter], lr: float = 1e-3,
         betas: tuple = (0.9, 0.999), eps: float = 1e-8) -> list:
    """The updates of ``Adam(lr=lr, betas=betas, eps=eps)`` (bias-corrected moments, ``eps``
    outside the root); the moments and step counts are parameters made here.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0]), name="w")
    >>> step = sg.function([], sg.sum(w * w), updates=sg.optim.adam(sg.sum(w * w), [w], lr=0.1),
    ...                    backend="numpy")
    >>> _ = step(); round(float(w.value[0]), 6)   # the first Adam step moves by lr
    0.9
    """
    return Adam(lr=lr, betas=betas, eps=eps).updates(loss, params)
