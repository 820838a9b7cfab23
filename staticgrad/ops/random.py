"""Randomness in a static graph: counter-based random bits, a pure function of a key the user
feeds (a placeholder, a new integer each step) and of each element's position, so a graph
stays a function of its inputs (no hidden state), a step can be replayed, and the compiled and
the NumPy backends draw the same bits. ``bernoulli`` is the primitive; ``dropout`` uses it.

The bits of element ``i`` (row-major position) under key ``k`` are splitmix64's output for
stream ``mix(k)`` at counter ``i + 1``: ``mix(mix(k) + (i + 1) * 0x9E3779B97F4A7C15)``, where
``mix`` is splitmix64's finalizer. The compiled loop computes them inline (no mask is stored
unless a later kernel needs it); ``True`` where the top 53 bits fall below ``p * 2**53``.
"""

from __future__ import annotations

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error, constant
from . import Kind, apply, broadcast_index, defop
from .composite import named, zeros_like
from .elementwise import where
from .movement import reshape

__all__ = ["bernoulli", "dropout"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def random_bits(key, position):
    """64 random bits of element ``position`` under ``key`` (both uint64; NumPy arrays, or
    scalars in compiled code): splitmix64's finalizer on the key, then on the stream's
    counter. One function for both backends (``backends/numba/mathlib`` compiles it)."""
    z = key
    for round_ in range(2):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        if round_ == 0:
            z = z + (position + np.uint64(1)) * GOLDEN
    return z


def threshold(p: float) -> int:
    return int(round(p * 2.0 ** 53))


def bernoulli_reference(key, shape, p):
    positions = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
    bits = random_bits(np.asarray(key).astype(np.uint64), positions)
    return (bits >> np.uint64(11) < np.uint64(threshold(p))).reshape(shape)


def bernoulli_shape(shapes, shape, p):
    if shapes[0] != ():
        raise ValueError(f"the key must be one integer, got shape {sh.show(shapes[0])}")
    return shape


def bernoulli_dtype(dtypes, shape, p):
    if dtypes[0].kind not in "iu":
        raise TypeError(f"the key must be an integer, not {dtypes[0]}")
    return np.dtype(np.bool_)


defop("bernoulli", Kind.ELEMENTWISE, bernoulli_shape, bernoulli_dtype, bernoulli_reference,
      loop=lambda node, dim: "(mathlib.random_bits(np.uint64({0}), np.uint64({at})) >> "
                             f"np.uint64(11) < np.uint64({threshold(dict(node.attrs)['p'])}))",
      keeps_weak=False, index=broadcast_index)


def bernoulli(key, shape, p: float) -> Tensor:
    """Booleans of ``shape``, each ``True`` with probability ``p``, drawn from ``key`` (an
    integer tensor of one element, e.g. a placeholder fed a new step number each call): the
    same key gives the same booleans, on every backend.

    >>> import numpy as np, staticgrad as sg
    >>> key = sg.placeholder((), np.int64, name="key")
    >>> f = sg.function([key], sg.bernoulli(key, (2, 4), 0.5), backend="numpy")
    >>> bool((f(7) == f(7)).all()), f(7).dtype
    (True, dtype('bool'))
    """
    key = as_tensor(key)
    if key.ndim and sh.is_static(sh.size(key.dims)) and sh.size(key.dims) == 1:
        key = reshape(key, ())
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not 0.0 <= p <= 1.0:
        raise build_error(ValueError(f"p must be in [0, 1], got {p}"), "bernoulli", [key])
    return apply("bernoulli", [key], shape=shape, p=float(p))


@named
def dropout(x, p: float, key, training: bool = True) -> Tensor:
    """PyTorch's ``F.dropout``: each element zeroed with probability ``p`` and the rest
    scaled by ``1 / (1 - p)``; the mask is ``bernoulli(key, x.shape, 1 - p)``, so a step is
    reproducible from its key (feed a new one each step: a placeholder, no hidden state),
    and the gradient is masked by the same booleans. ``training=False`` returns ``x``.

    >>> import numpy as np, staticgrad as sg
    >>> x, key = sg.placeholder((None, 100), np.float32), sg.placeholder((), np.int64)
    >>> f = sg.function([x, key], sg.dropout(x, 0.25, key), backend="numpy")
    >>> out = f(np.ones((8, 100), np.float32), 1)
    >>> sorted(set(out.ravel().tolist())), bool(0.2 < (out == 0).mean() < 0.3)
    ([0.0, 1.3333333730697632], True)
    """
    x = as_tensor(x)
    if not 0.0 <= p <= 1.0:
        raise build_error(ValueError(f"p must be in [0, 1], got {p}"), "dropout", [x])
    if not training or p == 0:
        return x
    if p == 1:
        return zeros_like(x)
    keep = bernoulli(key, x.dims, 1.0 - p)
    return where(keep, x * constant(np.asarray(1.0 / (1.0 - p), x.dtype)), 0)
