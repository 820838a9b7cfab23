"""Composite ops: plain functions of primitives, so they need no rules of their own.

Their gradients come from the primitives' VJPs; errors name the composite and the primitive
that refused (``softmax (max): axis 2 is out of bounds ...``).
"""

from __future__ import annotations

import functools

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error, composite, constant
from . import cast
from .elementwise import equal, exp, greater, isfinite, less, log, stop_gradient, where
from .movement import broadcast_to, concatenate, expand_dims, numel, squeeze
from .reduce import max, sum

__all__ = ["mean", "var", "std", "square", "logsumexp", "softmax", "log_softmax", "clip",
           "one_hot", "stack", "zeros_like", "ones_like"]


def axes_of(x: Tensor, axis, name: str) -> tuple:
    """``sh.normalize_axes``, its complaint naming the op, ``x``'s shape and the user's line."""
    try:
        return sh.normalize_axes(axis, x.ndim)
    except ValueError as err:
        raise build_error(err, name, [x]) from None


def named(fn):
    """Build ``fn`` inside an error label carrying its name."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with composite(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper


@named
def mean(x, axis=None, keepdims=False) -> Tensor:
    """The arithmetic mean over ``axis`` (all by default), as ``np.mean``.

    >>> import staticgrad as sg
    >>> sg.mean(sg.placeholder((None, 3)), axis=0).shape
    (3,)
    """
    x = as_tensor(x)
    if not dt.is_float(x.dtype):
        x = cast(x, np.float64)
    axes = axes_of(x, axis, "mean")
    return sum(x, axes, keepdims) / numel(x, axes, x.dtype)


@named
def var(x, axis=None, keepdims=False, ddof: int = 0) -> Tensor:
    """The variance over ``axis``, as ``np.var`` (``ddof`` subtracts from the count)."""
    x = as_tensor(x)
    if not dt.is_float(x.dtype):
        x = cast(x, np.float64)
    axes = axes_of(x, axis, "var")
    centred = x - mean(x, axes, keepdims=True)
    return sum(centred * centred, axes, keepdims) / (numel(x, axes, x.dtype) - ddof)


@named
def std(x, axis=None, keepdims=False, ddof: int = 0) -> Tensor:
    """The standard deviation over ``axis``, as ``np.std``."""
    from .elementwise import sqrt
    return sqrt(var(x, axis, keepdims, ddof))


@named
def square(x) -> Tensor:
    """``x * x``."""
    x = as_tensor(x)
    return x * x


def stable_shift(x: Tensor, axes: tuple) -> Tensor:
    # the row maximum, held constant for differentiation: it cancels out of the result
    m = stop_gradient(max(x, axes, keepdims=True))
    return where(isfinite(m), m, 0)


@named
def logsumexp(x, axis=None, keepdims=False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis`` without overflow, as ``scipy.special.logsumexp``.

    >>> import staticgrad as sg
    >>> sg.logsumexp(sg.placeholder((4, 10)), axis=1).shape
    (4,)
    """
    x = as_tensor(x)
    axes = axes_of(x, axis, "logsumexp")
    m = stable_shift(x, axes)
    out = log(sum(exp(x - m), axes, keepdims=True)) + m
    return out if keepdims else squeeze(out, axes)


@named
def softmax(x, axis: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed without overflow."""
    x = as_tensor(x)
    axes = axes_of(x, axis, "softmax")
    e = exp(x - stable_shift(x, axes))
    return e / sum(e, axes, keepdims=True)


@named
def log_softmax(x, axis: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis``: log-probabilities, stable for large logits."""
    x = as_tensor(x)
    return x - logsumexp(x, axis, keepdims=True)


@named
def clip(x, min=None, max=None) -> Tensor:
    """``x`` limited to ``[min, max]`` (either may be None, a scalar or a Tensor), as
    ``np.clip``; the gradient passes where ``min <= x <= max``, as PyTorch's ``clamp``.

    >>> import staticgrad as sg
    >>> sg.clip(sg.placeholder((3,)), min=0.0).op
    'where'
    """
    x = as_tensor(x)
    out = x
    if min is not None:
        out = where(less(out, min), min, out)
    if max is not None:
        out = where(greater(out, max), max, out)
    return out


@named
def one_hot(indices, num_classes: int, dtype=np.float64) -> Tensor:
    """Rows of the identity: ``out[..., k] = (indices[...] == k)``, in ``dtype``.

    >>> import numpy as np, staticgrad as sg
    >>> sg.one_hot(sg.placeholder((None,), np.int64), 10, np.float32).shape
    (None, 10)
    """
    indices = as_tensor(indices)
    classes = constant(np.arange(num_classes, dtype=indices.dtype))
    return cast(equal(expand_dims(indices, -1), classes), dtype)


@named
def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors of equal shape along a new axis, as ``np.stack``."""
    xs = [as_tensor(t) for t in tensors]
    if not xs:
        raise ValueError("need at least one tensor to stack")
    axis = sh.normalize_axis(axis, xs[0].ndim + 1)
    return concatenate([expand_dims(t, axis) for t in xs], axis)


def zeros_like(x, dtype=None) -> Tensor:
    """Zeros of ``x``'s shape (and dtype, unless given)."""
    x = as_tensor(x)
    return broadcast_to(constant(np.zeros((), dtype or x.dtype)), x.dims)


def ones_like(x, dtype=None) -> Tensor:
    """Ones of ``x``'s shape (and dtype, unless given)."""
    x = as_tensor(x)
    return broadcast_to(constant(np.ones((), dtype or x.dtype)), x.dims)
