"""Learning-rate schedules: the learning rate as a function of the step count.

A schedule ``lr(t)`` takes the number of optimizer steps already taken (0 on the first step,
as a PyTorch scheduler's ``last_epoch`` when it steps after each optimizer step). Called with
an int it returns a float, to print or plot, or to feed a learning-rate placeholder yourself;
an optimizer given a schedule as its ``lr`` calls it on its step-count parameter, so the
schedule is a few scalar nodes of the compiled step and is saved and restored with the
optimizer's state. Outside their range the schedules hold their last value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import ops
from ..tensor import Tensor

__all__ = ["Schedule", "step_lr", "cosine_lr", "linear_warmup"]


class Schedule:
    """A learning rate of the step count ``t`` (an int, or a 0-d tensor in a graph): ``rule(t,
    **params)``.

    >>> import numpy as np, staticgrad as sg
    >>> halve = sg.optim.Schedule("halve", lambda t, lr: lr * 0.5 ** t, lr=1.0)
    >>> t = sg.placeholder((), name="t")
    >>> halve(3), float(sg.function([t], halve(t), backend="numpy")(3.0)), halve
    (0.125, 0.125, halve(lr=1.0))
    """

    def __init__(self, name: str, rule: Callable, **params):
        self.name, self.rule, self.params = name, rule, params

    def __call__(self, t):
        return self.rule(t, **self.params)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


# the few functions a schedule needs, on numbers and on graph scalars alike
def floor(t):
    return ops.cast(ops.cast(t, np.int64), np.float64) if isinstance(t, Tensor) else math.floor(t)


def cos(x):
    return ops.cos(x) if isinstance(x, Tensor) else math.cos(x)


def minimum(a, b):
    return ops.minimum(a, b) if isinstance(a, Tensor) else min(a, b)


def maximum(a, b):
    return ops.maximum(a, b) if isinstance(a, Tensor) else max(a, b)


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``torch.optim.lr_scheduler.StepLR``: ``lr * gamma ** (t // step_size)``.

    >>> import staticgrad as sg
    >>> schedule = sg.optim.step_lr(1.0, step_size=2, gamma=0.5)
    >>> [schedule(t) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if step_size < 1:
        raise ValueError(f"step_lr: step_size must be at least 1, got {step_size}")
    return Schedule("step_lr", step_rule, lr=lr, step_size=step_size, gamma=gamma)


def step_rule(t, lr, step_size, gamma):
    return lr * gamma ** floor(t / step_size)


def cosine_lr(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max=total_steps``, ``eta_min=
    min_lr``: half a cosine from ``lr`` down to ``min_lr``, then ``min_lr`` (PyTorch's would
    rise again).

    >>> import staticgrad as sg
    >>> schedule = sg.optim.cosine_lr(1.0, total_steps=4)
    >>> [round(schedule(t), 4) for t in range(6)]
    [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    if total_steps < 1:
        raise ValueError(f"cosine_lr: total_steps must be at least 1, got {total_steps}")
    return Schedule("cosine_lr", cosine_rule, lr=lr, total_steps=total_steps, min_lr=min_lr)


def cosine_rule(t, lr, total_steps, min_lr):
    t = minimum(t, float(total_steps))
    return min_lr + (lr - min_lr) * (1 + cos(math.pi * t / total_steps)) / 2


def linear_warmup(schedule, warmup_steps: int, start_factor: float = 0.1) -> Schedule:
    """Warm up linearly over ``warmup_steps`` from ``start_factor`` times the schedule's first
    value to the full value, then follow ``schedule`` (a schedule or a constant lr) from its
    step 0: PyTorch's ``SequentialLR([LinearLR(start_factor, total_iters=warmup_steps),
    schedule], milestones=[warmup_steps])``.

    >>> import staticgrad as sg
    >>> schedule = sg.optim.linear_warmup(sg.optim.cosine_lr(1.0, 2), warmup_steps=2,
    ...                                   start_factor=0.5)
    >>> [schedule(t) for t in range(5)]
    [0.5, 0.75, 1.0, 0.5, 0.0]
    """
    if warmup_steps < 1:
        raise ValueError(f"linear_warmup: warmup_steps must be at least 1, got {warmup_steps}")
    if not 0 < start_factor <= 1:
        raise ValueError(f"linear_warmup: start_factor must be in (0, 1], got {start_factor}")
    return Schedule("linear_warmup", warmup_rule, schedule=schedule, warmup_steps=warmup_steps,
                    start_factor=start_factor)


def warmup_rule(t, schedule, warmup_steps, start_factor):
    peak = float(schedule(0)) if callable(schedule) else float(schedule)
    progress = minimum(t, float(warmup_steps)) / warmup_steps
    ramp = peak * (start_factor + (1 - start_factor) * progress)
    if not callable(schedule):
        return ramp                      # reaches the constant lr and stays there
    rest = schedule(maximum(t - warmup_steps, 0.0))
    if isinstance(t, Tensor):
        return ops.where(t < warmup_steps, ramp, rest)
    return ramp if t < warmup_steps else rest
