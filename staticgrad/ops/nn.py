"""Losses and array helpers users reach for from PyTorch and NumPy, built from primitives.

Like ``composite``, they need no rules of their own: shapes, dtypes, fused code and gradients
come from the primitives, and errors name the function and the primitive that refused.
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error, constant
from . import apply, cast
from .composite import axes_of, log_softmax, mean, named, one_hot, var
from .elementwise import abs, equal, exp, log1p, maximum, sqrt, stop_gradient, where
from .movement import broadcast_to, concatenate, reshape, slice_
from .reduce import max, min, sum

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "argmax", "argmin", "norm",
           "split", "pad", "batch_norm", "batch_norm_updates", "layer_norm"]


def reduce_loss(per_item: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return mean(per_item)
    if reduction == "sum":
        return sum(per_item)
    if reduction == "none":
        return per_item
    raise build_error(ValueError(f"reduction must be 'mean', 'sum' or 'none', got "
                                 f"{reduction!r}"), name, [per_item])


@named
def cross_entropy(logits, labels, reduction: str = "mean") -> Tensor:
    """PyTorch's ``F.cross_entropy``: ``-log_softmax(logits)[..., label]`` for integer
    ``labels`` (classes on the last axis of ``logits``), averaged (``reduction="mean"``),
    summed (``"sum"``) or per item (``"none"``). Stable for large logits.

    >>> import numpy as np, staticgrad as sg
    >>> logits = sg.placeholder((None, 10), np.float32)
    >>> sg.cross_entropy(logits, sg.placeholder((None,), np.int64)).shape
    ()
    """
    logits, labels = as_tensor(logits), as_tensor(labels)
    classes = logits.dims[-1] if logits.ndim else None
    if labels.dtype.kind not in "iu" or not logits.ndim or not sh.is_static(classes) or \
            labels.ndim != logits.ndim - 1:
        raise build_error(ValueError("needs float logits (..., classes) with a fixed class "
                                     "count and integer labels of shape (...)"),
                          "cross_entropy", [logits, labels])
    picked = sum(one_hot(labels, int(classes), logits.dtype) * log_softmax(logits), -1)
    return reduce_loss(-picked, reduction, "cross_entropy")


@named
def binary_cross_entropy_with_logits(logits, targets, reduction: str = "mean") -> Tensor:
    """PyTorch's ``F.binary_cross_entropy_with_logits``: the log loss of ``sigmoid(logits)``
    against ``targets`` in [0, 1], as ``max(x, 0) - x * t + log1p(exp(-|x|))`` (no overflow).

    >>> import staticgrad as sg
    >>> x = sg.placeholder((None,))
    >>> sg.binary_cross_entropy_with_logits(x, sg.placeholder((None,))).shape
    ()
    """
    x, t = as_tensor(logits), as_tensor(targets)
    if t.dtype != x.dtype:
        t = cast(t, x.dtype)
    per_item = maximum(x, 0) - x * t + log1p(exp(-abs(x)))
    return reduce_loss(per_item, reduction, "binary_cross_entropy_with_logits")


def static_length(x: Tensor, axis: int, name: str) -> int:
    """The size of ``axis``, which must be known when the graph is built."""
    length = x.dims[axis]
    if not sh.is_static(length):
        raise build_error(ValueError(f"axis {axis} needs a size known when the graph is "
                                     "built"), name, [x])
    return int(length)


def _arg_extreme(x, axis, extreme, name: str) -> Tensor:
    """The first index along ``axis`` where ``x`` equals its extreme (ties: the first, as
    NumPy). Integers carry no gradient: ``sg.grad`` through it gives zeros."""
    x = as_tensor(x)
    flat = axis is None
    if flat:
        x, axis = reshape(x, (-1,)), 0
    (axis,) = axes_of(x, axis, name)
    length = static_length(x, axis, name)
    where_ = [1] * x.ndim
    where_[axis] = length
    positions = constant(np.arange(length, dtype=np.int64).reshape(where_))
    best = extreme(x, axis, keepdims=True)
    hits = where(equal(x, best), broadcast_to(positions, x.dims), np.int64(length))
    return min(hits, axis)


@named
def argmax(x, axis=None) -> Tensor:
    """Index of the largest element along ``axis`` (of the flattened array when ``None``),
    as ``np.argmax``; int64, with no gradient (zeros).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((3,))
    >>> int(sg.function([x], sg.argmax(x), backend="numpy")(np.array([1.0, 5.0, 5.0])))
    1
    """
    return _arg_extreme(x, axis, max, "argmax")


@named
def argmin(x, axis=None) -> Tensor:
    """Index of the smallest element along ``axis``, as ``np.argmin``; int64, no gradient."""
    return _arg_extreme(x, axis, min, "argmin")


@named
def norm(x, ord=None, axis=None, keepdims: bool = False) -> Tensor:
    """Vector norms over ``axis`` (all elements by default, the Frobenius norm of a matrix),
    as ``np.linalg.norm`` for ``ord`` in ``None``/2 (Euclidean), 1 and ``np.inf``.

    >>> import staticgrad as sg
    >>> sg.norm(sg.placeholder((None, 3)), axis=1).shape
    (None,)
    """
    x = as_tensor(x)
    matrix = axis is None and x.ndim == 2 or isinstance(axis, tuple) and len(axis) == 2
    if ord not in (None, 2, 1, np.inf, "fro") or (matrix and ord not in (None, "fro")) or \
            (ord == "fro" and not matrix):
        raise build_error(NotImplementedError(f"ord={ord!r} with axis={axis!r}: only vector "
                                              "norms (None, 2, 1, inf) and the Frobenius norm"),
                          "norm", [x])
    axes = axes_of(x, axis, "norm")
    if ord in (None, 2, "fro"):
        return sqrt(sum(x * x, axes, keepdims))
    if ord == 1:
        return sum(abs(x), axes, keepdims)
    return max(abs(x), axes, keepdims)


@named
def split(x, indices_or_sections, axis: int = 0) -> list:
    """``np.split``: equal sections (an int that divides the axis) or pieces between the
    given indices, each a view-like slice of ``x``.

    >>> import staticgrad as sg
    >>> [p.shape for p in sg.split(sg.placeholder((6, 2)), [1, 4])]
    [(1, 2), (3, 2), (2, 2)]
    """
    x = as_tensor(x)
    (axis,) = axes_of(x, axis, "split")
    length = static_length(x, axis, "split")
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0 or length % sections:
            raise build_error(ValueError(f"{sections} sections do not divide axis {axis} of "
                                         f"size {length} equally"), "split", [x])
        bounds = list(range(0, length + 1, length // sections))
    else:
        bounds = [0, *[int(i) for i in indices_or_sections], length]
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index = [(None, None, 1)] * x.ndim
        index[axis] = (start, builtins.max(start, stop), 1)
        pieces.append(slice_(x, tuple(index)))
    return pieces


@named
def pad(x, pad_width, constant_values=0) -> Tensor:
    """``np.pad`` in ``"constant"`` mode: ``pad_width`` is ``n``, ``(before, after)`` or one
    such pair per axis. The gradient is the slice of the padded region's interior.

    >>> import staticgrad as sg
    >>> sg.pad(sg.placeholder((None, 3)), ((0, 0), (1, 2))).shape
    (None, 6)
    """
    x = as_tensor(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2)).tolist()
    if any(w < 0 for pair in widths for w in pair):
        raise build_error(ValueError(f"pad widths must not be negative, got {pad_width}"),
                          "pad", [x])
    fill = np.asarray(constant_values, x.dtype)
    padded = [a for a, pair in enumerate(widths) if any(pair)]
    if all(sh.is_static(x.dims[a]) for a in padded):
        # one kernel: zeros with x inside (unslice, whose adjoint is the slice), plus a
        # constant border that broadcasts along the axes that are not padded
        dims = tuple(x.dims[a] + builtins.sum(widths[a]) if a in padded else x.dims[a]
                     for a in range(x.ndim))
        index = tuple((before, before + x.dims[a], 1) if a in padded else (None, None, 1)
                      for a, (before, _) in enumerate(widths))
        out = apply("unslice", [x], index=index, shape=dims)
        if fill != 0:
            inside = np.zeros(tuple(d if a in padded else 1 for a, d in enumerate(dims)), bool)
            inside[tuple(slice(*index[a][:2]) if a in padded else slice(None)
                         for a in range(x.ndim))] = True
            out = out + constant(np.where(inside, 0, fill).astype(x.dtype))
        return out
    fill = constant(fill)
    out = x
    for axis, (before, after) in enumerate(widths):
        parts = []
        for width in (before, after):
            dims = list(out.dims)
            dims[axis] = width
            parts.append(broadcast_to(fill, tuple(dims)) if width else None)
        pieces = [p for p in (parts[0], out, parts[1]) if p is not None]
        out = concatenate(pieces, axis) if len(pieces) > 1 else out
    return out


def channel_axes(x: Tensor, name: str) -> tuple:
    """Batch norm's axes: all but the channels (axis 1), as PyTorch."""
    if x.ndim < 2:
        raise build_error(ValueError("needs an input (N, C, ...)"), name, [x])
    return (0,) + tuple(range(2, x.ndim))


def per_channel(v, x: Tensor) -> Tensor:
    """A (C,) vector shaped to broadcast along axis 1 of ``x``."""
    return reshape(as_tensor(v), (-1,) + (1,) * (x.ndim - 2))


@named
def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """PyTorch's ``F.batch_norm`` on ``x`` (N, C, ...): normalized per channel by the batch's
    mean and (biased) variance when ``training``, else by ``running_mean``/``running_var``;
    then scaled by ``weight`` and shifted by ``bias`` (each (C,), optional). The running
    statistics are not changed here: ``batch_norm_updates`` gives their new values, to pass
    as ``sg.function(..., updates=...)`` (``momentum`` is used there).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 16, 8, 8), np.float32)
    >>> sg.batch_norm(x, training=True).shape
    (None, 16, 8, 8)
    """
    x = as_tensor(x)
    axes = channel_axes(x, "batch_norm")
    if training:
        centred = x - mean(x, axes, keepdims=True)
        scale = 1 / sqrt(var(x, axes, keepdims=True) + eps)
    else:
        if running_mean is None or running_var is None:
            raise build_error(ValueError("training=False needs running_mean and running_var"),
                              "batch_norm", [x])
        centred = x - per_channel(running_mean, x)
        scale = 1 / sqrt(per_channel(running_var, x) + eps)
    out = centred * scale
    if weight is not None:
        out = out * per_channel(weight, x)
    if bias is not None:
        out = out + per_channel(bias, x)
    return out


def batch_norm_updates(x, running_mean, running_var, momentum: float = 0.1) -> list:
    """New running statistics after a training step of ``batch_norm`` on ``x``, as
    ``torch.nn.BatchNorm``: ``(1 - momentum) * old + momentum * batch`` with the batch's
    unbiased variance. A list of ``(parameter, new value)`` for ``sg.function`` updates.

    >>> import numpy as np, staticgrad as sg
    >>> mu, var = sg.parameter(np.zeros(3)), sg.parameter(np.ones(3))
    >>> x = sg.placeholder((4, 3))
    >>> f = sg.function([x], sg.batch_norm(x, mu, var, training=True),
    ...                 updates=sg.batch_norm_updates(x, mu, var), backend="numpy")
    >>> _ = f(np.arange(12.0).reshape(4, 3)); mu.value.tolist()
    [0.45, 0.55, 0.65]
    """
    x = as_tensor(x)
    axes = channel_axes(x, "batch_norm_updates")
    batch_mean = reshape(stop_gradient(mean(x, axes, keepdims=True)), (-1,))
    batch_var = reshape(stop_gradient(var(x, axes, keepdims=True, ddof=1)), (-1,))
    return [(running_mean, (1 - momentum) * running_mean + momentum * batch_mean),
            (running_var, (1 - momentum) * running_var + momentum * batch_var)]


@named
def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """PyTorch's ``F.layer_norm``: normalized over the last ``len(normalized_shape)`` axes
    (mean and biased variance), then scaled by ``weight`` and shifted by ``bias`` (each of
    ``normalized_shape``, optional).

    >>> import numpy as np, staticgrad as sg
    >>> sg.layer_norm(sg.placeholder((None, 5, 32)), (32,)).shape
    (None, 5, 32)
    """
    x = as_tensor(x)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(normalized_shape)
    if not shape or tuple(x.dims[x.ndim - len(shape):]) != shape:
        raise build_error(ValueError(f"normalized_shape {shape} is not the end of the input's "
                                     "shape"), "layer_norm", [x])
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    out = (x - mean(x, axes, keepdims=True)) / sqrt(var(x, axes, keepdims=True) + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
