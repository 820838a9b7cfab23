"""Optimizer objects with ``torch.optim``'s names, hyperparameters and update rules.

An optimizer holds hyperparameters and, per parameter, its state: parameters of its own
(momentum buffers, moments) and a step count, made the first time it sees the parameter.
``updates(loss, params)`` returns the ``[(parameter, new value), ...]`` pairs for
``sg.function(..., updates=...)``, so the gradients, the step and the new state are nodes of
one compiled graph. Each rule follows the order of operations of PyTorch's single-tensor
implementation, so trajectories agree with ``torch.optim`` to rounding.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from .. import dtypes as dt
from .. import ops
from ..autodiff import grad
from ..module import named_parameters
from ..tensor import Parameter, Tensor, parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm"]


def parameter_list(params, who: str) -> list:
    """``[(label, parameter), ...]`` from one parameter, a list of them (labelled by their
    names), or a dict or model object (labelled by their paths, ``sg.named_parameters``).
    Labels name the state parameters: ``"layers.0.w.exp_avg"``."""
    if isinstance(params, Tensor):
        found = [(params.name or "param", params)]
    elif isinstance(params, (list, tuple)) and all(isinstance(p, Tensor) for p in params):
        found = [(p.name or f"param{k}", p) for k, p in enumerate(params)]
    else:
        found = list(named_parameters(params).items())
        if not found:
            raise TypeError(f"{who}: optimizers update parameters (sg.parameter), found none "
                            f"in {params!r}")
    for _, p in found:
        if not isinstance(p, Parameter):
            raise TypeError(f"{who}: optimizers update parameters (sg.parameter), got {p!r}")
        if not dt.is_float(p.dtype):
            raise TypeError(f"{who}: optimizers update floating-point parameters, got {p!r}")
    return found


def check_lr(lr):
    """A learning rate: a number, a 0-d float tensor (placeholder, parameter) or a schedule
    (a callable of the step count)."""
    if isinstance(lr, Tensor):
        if lr.ndim != 0 or not dt.is_float(lr.dtype):
            raise ValueError(f"a learning rate tensor must be a 0-d float, got {lr!r}")
        return lr
    if callable(lr):
        return lr
    if not 0.0 <= float(lr):
        raise ValueError(f"invalid learning rate: {lr}")
    return float(lr)


def check_range(name: str, value: float, low: float = 0.0, high: float = math.inf) -> None:
    if not low <= value < high:
        raise ValueError(f"invalid {name}: {value} (expected {low} <= {name} < {high})")


def coefficient(x, dtype):
    """A scalar to multiply arrays of ``dtype`` by: a graph scalar cast to it (as PyTorch
    casts a Python-float alpha to the tensor's type), a number as a weak Python float."""
    return ops.cast(x, dtype) if isinstance(x, Tensor) else float(x)


class Optimizer(abc.ABC):
    """The common part of every optimizer: state per parameter, learning rates as numbers,
    graph scalars or schedules, and optional clipping by global norm.

    ``updates(loss, params)`` (or ``updates(loss)`` when the parameters were given to the
    constructor, PyTorch style; or ``updates(params=..., grads=...)`` with gradients you made
    yourself, e.g. clipped) returns the update pairs of one step. ``state[p]`` maps state
    names (``"step"``, ``"exp_avg"``, ...) to the parameters holding them; ``lr`` may be a
    float, a 0-d placeholder you feed each call, a 0-d parameter, or a schedule: a callable
    of the number of steps already taken (``sg.optim.cosine_lr(...)``), evaluated in the graph
    on ``state[p]["step"]``. ``max_grad_norm`` clips the gradients by their global norm first
    (``clip_grad_norm``).

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0, -2.0]), name="w")
    >>> lr = sg.placeholder((), name="lr")                 # fed at each call
    >>> opt = sg.optim.RMSprop([w], lr=lr)
    >>> step = sg.function([lr], sg.sum(w * w), updates=opt.updates(sg.sum(w * w)),
    ...                    backend="numpy")
    >>> _ = step(0.01); _ = step(0.0)                      # the second step moves nothing
    >>> np.round(w.value, 3).tolist(), float(opt.state[w]["step"].value)
    ([0.9, -1.9], 2.0)
    """

    def __init__(self, params=None, *, max_grad_norm: float | None = None, **hyper):
        # (label, parameter) pairs given to the constructor; labels name the state
        self._given: list | None = None if params is None else \
            parameter_list(params, type(self).__name__)
        self.params: list | None = None if params is None else [p for _, p in self._given]
        hyper["lr"] = check_lr(hyper["lr"])
        self.defaults: dict = hyper
        vars(self).update(hyper)
        if max_grad_norm is not None:
            check_range("max_grad_norm", max_grad_norm)
        self.max_grad_norm = max_grad_norm
        self.state: dict = {}

    def slots(self) -> tuple:
        """Names of the per-parameter state besides ``"step"``."""
        return ()

    @abc.abstractmethod
    def rule(self, p: Tensor, g: Tensor, state: dict, t: Tensor, lr) -> tuple:
        """``(new value of p, {slot: new value})`` for one parameter, ``t`` the step count
        after this step, ``lr`` this step's learning rate: what each optimizer defines."""

    def state_of(self, p: Parameter, label: str | None = None) -> dict:
        """``p``'s state, made (zeros, named ``f"{label}.{slot}"``) the first time ``p`` is
        seen."""
        if p not in self.state:
            name = label or p.name or "param"
            state = {"step": parameter(np.zeros((), np.float64), name=f"{name}.step")}
            for slot in self.slots():
                state[slot] = parameter(np.zeros_like(p.value), name=f"{name}.{slot}")
            self.state[p] = state
        return self.state[p]

    def updates(self, loss: Tensor | None = None, params=None, *, grads=None) -> list:
        """The ``[(parameter, new value), ...]`` pairs of one optimizer step.

        >>> import numpy as np, staticgrad as sg
        >>> w = sg.parameter(np.array([1.0, -2.0]), name="w")
        >>> loss = sg.sum(w * w)
        >>> opt = sg.optim.SGD(lr=0.25, momentum=0.5)
        >>> step = sg.function([], loss, updates=opt.updates(loss, [w]), backend="numpy")
        >>> _ = step(); _ = step()
        >>> w.value.tolist(), opt.state[w]["momentum_buffer"].value.tolist()
        ([0.0, 0.0], [2.0, -4.0])
        """
        name = type(self).__name__
        if params is None:
            params = self._given
            if params is None:
                raise TypeError(f"{name}.updates: which parameters? Pass them, "
                                f"opt.updates(loss, params), or to the constructor")
        else:
            params = parameter_list(params, name)
        if grads is None:
            if loss is None:
                raise TypeError(f"{name}.updates needs the loss (or grads=...)")
            grads = list(grad(loss, [p for _, p in params]))
        else:
            grads = [grads] if isinstance(grads, Tensor) else list(grads)
            if len(grads) != len(params):
                raise ValueError(f"{name}.updates: {len(grads)} gradients for "
                                 f"{len(params)} parameters")
        if self.max_grad_norm is not None:
            grads, _ = clip_grad_norm(grads, self.max_grad_norm)
        updates = []
        for (label, p), g in zip(params, grads):
            state = self.state_of(p, label)
            step = state["step"]
            t = step + 1.0
            lr = self.lr(step) if callable(self.lr) else self.lr
            new_p, new_state = self.rule(p, g, state, t, lr)
            updates.append((step, t))
            updates += [(state[slot], value) for slot, value in new_state.items()]
            updates.append((p, new_p))
        return updates

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        clip = "" if self.max_grad_norm is None else f", max_grad_norm={self.max_grad_norm}"
        return f"{type(self).__name__}({args}{clip})"


class SGD(Optimizer):
    """``torch.optim.SGD``: ``g += weight_decay * p``; with ``momentum``, a buffer
    ``b = momentum * b + (1 - dampening) * g`` (``b = g`` on the first step) and ``g = b``, or
    ``g += momentum * b`` with ``nesterov``; then ``p -= lr * g``.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0, -2.0]), name="w")
    >>> opt = sg.optim.SGD([w], lr=0.25)
    >>> step = sg.function([], sg.sum(w * w), updates=opt.updates(sg.sum(w * w)),
    ...                    backend="numpy")
    >>> float(step()), w.value.tolist()
    (5.0, [0.5, -1.0])
    """

    def __init__(self, params=None, lr=1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *,
                 max_grad_norm: float | None = None):
        check_range("momentum", momentum)
        check_range("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov,
                         max_grad_norm=max_grad_norm)

    def slots(self) -> tuple:
        return ("momentum_buffer",) if self.momentum else ()

    def rule(self, p, g, state, t, lr):
        if self.weight_decay:
            g = g + self.weight_decay * p
        new_state = {}
        if self.momentum:
            b = state["momentum_buffer"]
            b_next = b * self.momentum + (1 - self.dampening) * g
            if self.dampening:   # PyTorch starts the buffer at g, undamped
                b_next = ops.where(t == 1.0, g, b_next)
            new_state["momentum_buffer"] = b_next
            g = g + self.momentum * b_next if self.nesterov else b_next
        return p - coefficient(lr, p.dtype) * g, new_state


class Adam(Optimizer):
    """``torch.optim.Adam``: bias-corrected moments, ``eps`` outside the root; ``weight_decay``
    adds ``weight_decay * p`` to the gradient (L2); ``amsgrad`` divides by the largest second
    moment so far.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0]), name="w")
    >>> opt = sg.optim.Adam(lr=0.1)
    >>> step = sg.function([], sg.sum(w * w), updates=opt.updates(sg.sum(w * w), [w]),
    ...                    backend="numpy")
    >>> _ = step(); round(float(w.value[0]), 6), sorted(opt.state[w])   # moves by lr at first
    (0.9, ['exp_avg', 'exp_avg_sq', 'step'])
    """

    decoupled = False

    def __init__(self, params=None, lr=1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 max_grad_norm: float | None = None):
        check_range("beta1", betas[0], 0.0, 1.0)
        check_range("beta2", betas[1], 0.0, 1.0)
        check_range("eps", eps)
        check_range("weight_decay", weight_decay)
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, max_grad_norm=max_grad_norm)

    def slots(self) -> tuple:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def rule(self, p, g, state, t, lr):
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p = p * coefficient(1 - lr * self.weight_decay, p.dtype)
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m_next = m + (1 - b1) * (g - m)          # PyTorch's lerp
        v_next = v * b2 + (1 - b2) * g * g
        new_state = {"exp_avg": m_next, "exp_avg_sq": v_next}
        if self.amsgrad:
            v_next = new_state["max_exp_avg_sq"] = ops.maximum(state["max_exp_avg_sq"], v_next)
        # the bias corrections are scalars of the step count, computed in float64 as PyTorch
        # computes them in Python floats
        step_size = coefficient(lr / (1 - b1 ** t), p.dtype)
        correction = coefficient(ops.sqrt(1 - b2 ** t), p.dtype)
        denom = ops.sqrt(v_next) / correction + self.eps
        return p - step_size * (m_next / denom), new_state


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay``
    before the Adam step (default ``weight_decay=0.01``).

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0]), name="w")
    >>> opt = sg.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> step = sg.function([], sg.sum(w * w), updates=opt.updates(sg.sum(w * w)),
    ...                    backend="numpy")
    >>> _ = step(); round(float(w.value[0]), 6)    # 1 * (1 - 0.05) - 0.1
    0.85
    """

    decoupled = True

    def __init__(self, params=None, lr=1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 max_grad_norm: float | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         max_grad_norm=max_grad_norm)


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: ``s = alpha * s + (1 - alpha) * g²``; divides ``g`` by
    ``sqrt(s) + eps`` (``centered``: by the root of the variance, ``s`` minus the squared mean
    gradient); with ``momentum``, through a buffer ``b = momentum * b + g / (...)``.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.array([1.0]), name="w")
    >>> opt = sg.optim.RMSprop([w], lr=0.01, centered=True, momentum=0.9)
    >>> sorted(p.name for p, _ in opt.updates(sg.sum(w * w)))
    ['w', 'w.grad_avg', 'w.momentum_buffer', 'w.square_avg', 'w.step']
    """

    def __init__(self, params=None, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 max_grad_norm: float | None = None):
        check_range("alpha", alpha)
        check_range("eps", eps)
        check_range("momentum", momentum)
        check_range("weight_decay", weight_decay)
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, max_grad_norm=max_grad_norm)

    def slots(self) -> tuple:
        return (("square_avg",) + (("momentum_buffer",) if self.momentum else ())
                + (("grad_avg",) if self.centered else ()))

    def rule(self, p, g, state, t, lr):
        a = self.alpha
        if self.weight_decay:
            g = g + self.weight_decay * p
        s_next = state["square_avg"] * a + (1 - a) * g * g
        new_state = {"square_avg": s_next}
        if self.centered:
            mean = state["grad_avg"]
            mean_next = new_state["grad_avg"] = mean + (1 - a) * (g - mean)
            avg = ops.sqrt(s_next - mean_next * mean_next) + self.eps
        else:
            avg = ops.sqrt(s_next) + self.eps
        lr = coefficient(lr, p.dtype)
        if self.momentum:
            b_next = new_state["momentum_buffer"] = \
                state["momentum_buffer"] * self.momentum + g / avg
            return p - lr * b_next, new_state
        return p - lr * (g / avg), new_state


def clip_grad_norm(grads, max_norm: float, norm_type: float = 2.0) -> tuple:
    """``torch.nn.utils.clip_grad_norm_`` on gradient nodes: ``(clipped, total_norm)``, each
    gradient scaled by ``min(1, max_norm / (total_norm + 1e-6))``, ``total_norm`` the norm of
    all gradients together (``norm_type`` 2, 1 or ``inf``). Give ``clipped`` to an
    optimizer's ``updates(params=..., grads=clipped)``, or build it with ``max_grad_norm=``.

    >>> import numpy as np, staticgrad as sg
    >>> a, b = sg.placeholder((2,), name="a"), sg.placeholder((), name="b")
    >>> (ca, cb), total = sg.optim.clip_grad_norm([a, b], max_norm=1.0)
    >>> f = sg.function([a, b], [ca, cb, total], backend="numpy")
    >>> [np.round(v, 4).tolist() for v in f(np.array([3.0, 0.0]), np.array(4.0))]
    [[0.6, 0.0], 0.8, 5.0]
    """
    single = isinstance(grads, Tensor)
    grads = [grads] if single else list(grads)
    if norm_type not in (1, 2, math.inf):
        raise ValueError(f"clip_grad_norm: norm_type must be 1, 2 or inf, got {norm_type}")
    check_range("max_norm", max_norm)
    common = np.result_type(*[g.dtype for g in grads])
    norms = [ops.cast(ops.norm(ops.reshape(g, (-1,)), ord=norm_type), common) for g in grads]
    total = ops.norm(ops.stack(norms), ord=norm_type)
    scale = ops.minimum(max_norm / (total + 1e-6), 1.0)
    clipped = [g * ops.cast(scale, g.dtype) for g in grads]
    return (clipped[0] if single else clipped), total
