"""Reductions over axes: sum, max, min, prod, count_nonzero. The family supplies the
axis/keepdims shape rules; each op gives its ``Accumulator`` (how the loop combines).
"""

from __future__ import annotations

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error
from . import Accumulator, Kind, accumulated_dtype, apply, cast, defop, reduction
from .elementwise import MAX, MIN, equal, where
from .movement import broadcast_to, flip, reshape

__all__ = ["sum", "max", "min", "prod", "count_nonzero", "cumsum", "restore_axes"]


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


sum = reduction("sum", np.sum, Accumulator("({0} + {1})", 0, wide=True, blocked=True),
                sum_vjp, dtype=lambda dtypes, **_: accumulated_dtype(np.sum, dtypes[0]))
max = reduction("max", np.max,
                Accumulator(MAX, -np.inf, ignoring_nan="({0} if {0} >= {1} else {1})"),
                extremum_vjp)
min = reduction("min", np.min,
                Accumulator(MIN, np.inf, ignoring_nan="({0} if {0} <= {1} else {1})"),
                extremum_vjp)
prod = reduction("prod", np.prod, Accumulator("({0} * {1})", 1, wide=True),
                 prod_vjp, dtype=lambda dtypes, **_: accumulated_dtype(np.prod, dtypes[0]))
count_nonzero = reduction("count_nonzero", np.count_nonzero,
                          Accumulator("({0} + ({1} != 0))", 0, identity=False,
                                      converts=False),
                          dtype=lambda dtypes, **_: np.dtype(np.int64))


# -- cumsum: a running sum along one axis (a loop carried from element to element, so not
# fusible into other loops: an opaque op with its own loop) -------------------------------
def cumsum_emit(node: Tensor, code) -> list:
    axis = dict(node.attrs)["axis"]
    out, x = code.array(node), code.array(node.inputs[0])
    j, total = code.fresh("j"), code.fresh("total")

    def row(i):   # each row along ``axis`` summed in order, the running value in a register
        at = ", ".join([*i[:axis], j, *i[axis:]])
        return [f"{total} = np.{node.dtype.name}(0)",
                f"for {j} in range({code.dim(node.dims[axis])}):",
                f"    {total} += {x}[{at}]",
                f"    {out}[{at}] = {total}"]

    return code.each(node.dims[:axis] + node.dims[axis + 1:], row)


defop("cumsum", Kind.OPAQUE, lambda shapes, axis: shapes[0],
      lambda dtypes, axis: accumulated_dtype(np.sum, dtypes[0]),
      lambda x, axis: np.cumsum(x, axis=axis),
      lambda g, y, x, axis: [cast(flip(cumsum(flip(g, axis), axis), axis), x.dtype)],
      emit=cumsum_emit, cost=lambda node, count: {"flops": count(node.dims), "gemm": 0})


def cumsum(x, axis=None) -> Tensor:
    """Running sums along ``axis`` (of the flattened ``x`` if None), as ``np.cumsum``.

    >>> import staticgrad as sg
    >>> sg.cumsum(sg.placeholder((None, 4)), axis=1).shape
    (None, 4)
    """
    x = as_tensor(x)
    if axis is None:
        x, axis = reshape(x, -1), 0
    try:
        axis = sh.normalize_axis(axis, x.ndim)
    except ValueError as err:
        raise build_error(err, "cumsum", [x]) from None
    return apply("cumsum", [x], axis=axis)
