"""Reductions over axes: sum, max, min, prod. The family supplies axis/keepdims shape rules.

The loop template combines the accumulator ``{0}`` with an element ``{1}``; ``init`` starts it.
"""

from __future__ import annotations

import numpy as np

from . import accumulated_dtype, cast, reduction
from .elementwise import MAX, MIN, equal, where
from .movement import broadcast_to, reshape

__all__ = ["sum", "max", "min", "prod", "restore_axes"]


def restore_axes(g, x, axes, keepdims):
    """A reduced value reshaped to keep its reduced axes as size 1, to broadcast against ``x``."""
    if keepdims:
        return g
    return reshape(g, tuple(1 if a in axes else d for a, d in enumerate(x.dims)))


def sum_vjp(g, y, x, axes, keepdims):
    return [broadcast_to(restore_axes(g, x, axes, keepdims), x.dims)]


def extremum_vjp(g, y, x, axes, keepdims):
    # ties share the gradient evenly, so the rule is symmetric in equal elements
    hit = equal(x, restore_axes(y, x, axes, keepdims))
    count = sum(cast(hit, g.dtype), axes, keepdims=True)
    return [where(hit, restore_axes(g, x, axes, keepdims) / count, 0)]


def prod_vjp(g, y, x, axes, keepdims):
    # d prod / d x_i is the product of the others. Where x_i != 0 that is prod / x_i (zero if
    # another element is, and prod's own VJP then gives its derivative). At a zero x_i it is
    # the product of the non-zero elements times the other zeros: nothing else if x_i is the
    # only zero, the other zero x_l (value 0, derivative 1) if there are two, else 0. Spelling
    # x_l as (sum of the zeros - x_i) keeps second derivatives right.
    zero = equal(x, 0)
    safe = where(zero, 1, x)
    zeros = sum(cast(zero, x.dtype), axes, keepdims=True)
    others = prod(safe, axes, keepdims=True)
    other_zero = sum(where(zero, x, 0), axes, keepdims=True) - x
    at_zero = where(equal(zeros, 1), others, where(equal(zeros, 2), others * other_zero, 0))
    partial = where(zero, at_zero, restore_axes(y, x, axes, keepdims) / safe)
    return [restore_axes(g, x, axes, keepdims) * partial]


sum = reduction("sum", np.sum, "({0} + {1})", 0,
                sum_vjp, dtype=lambda dtypes, **_: accumulated_dtype(np.sum, dtypes[0]))
max = reduction("max", np.max, MAX, -np.inf, extremum_vjp)
min = reduction("min", np.min, MIN, np.inf, extremum_vjp)
prod = reduction("prod", np.prod, "({0} * {1})", 1,
                 prod_vjp, dtype=lambda dtypes, **_: accumulated_dtype(np.prod, dtypes[0]))
