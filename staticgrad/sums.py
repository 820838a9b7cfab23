"""Sums of linear combinations, for the rewrite rule ``sum_of_linear``.

``sum(a * c + b)`` over axes along which ``c`` repeats is ``c * sum(a) + sum(b)``. ``distribute``
finds such factors through sums, differences, negations, products and quotients, and writes the
sum with them taken out: one sum per distinct set of factors, repeated terms counted.
"""

from __future__ import annotations

import numpy as np

from .ops import REGISTRY, Kind, apply
from .tensor import Tensor, constant


def constant_along(t: Tensor, axes: tuple, like: Tensor, depth: int = 4,
                   seen: dict | None = None) -> Tensor | None:
    """``t`` computed without its broadcast, if it repeats along ``axes`` of ``like`` (a row
    statistic when ``axes`` is the last axis); else ``None``. Looks through up to ``depth``
    elementwise ops, such as the scaling an adjoint applies to a broadcast row statistic.
    ``seen`` remembers answers across calls (one pass over a long chain, not one per link)."""
    key = (id(t), depth, like.ndim, axes)
    if seen is not None and key in seen:
        return seen[key]
    found = None
    inner = t.inputs[0] if t.op == "broadcast_to" else t
    aligned = (1,) * (like.ndim - inner.ndim) + inner.dims
    if len(aligned) == like.ndim and all(aligned[a] == 1 for a in axes):
        found = inner
    elif depth and inner.op is not None and REGISTRY[inner.op].kind is Kind.ELEMENTWISE:
        inputs = []
        for x in inner.inputs:   # the first input that varies ends the search
            inputs.append(constant_along(x, axes, like, depth - 1, seen))
            if inputs[-1] is None:
                break
        else:
            found = apply(inner.op, inputs, **dict(inner.attrs))
    if seen is not None:
        seen[key] = found
    return found


def linear_parts(u: Tensor, axes: tuple) -> list | None:
    """``u`` as a signed sum of terms, each times factors that repeat along ``axes``:
    ``[(sign, ((factor, "mul" | "div"), ...), term)]``. A sum or difference stays one term
    unless a part of it has such a factor or repeats along ``axes`` itself (splitting it would
    only add sums); ``None`` when nothing in ``u`` does. Iterative: a chain of thousands of
    additions is no deeper for Python than one."""
    seen: dict = {}

    def along(x: Tensor):
        # aligned with u, whatever the rank of the node x feeds (broadcasting aligns right)
        return constant_along(x, axes, u, seen=seen)

    def factored(n: Tensor):   # a product or quotient as (term, factor), if it has one
        # (a constant is no factor: taking it out saves no pass, and the counts of repeated
        # terms are constants that would split one sum into one per count)
        x, y = n.inputs
        for term, other in ((x, y), (y, x)) if n.op == "mul" else ((x, y),):
            factor = along(other)
            if factor is not None and factor.leaf != "constant":
                return term, factor
        return None

    useful: dict = {}   # id -> whether splitting the node gains something (bottom-up)
    stack = [(u, False)]
    while stack:
        n, children_done = stack.pop()
        if id(n) in useful:
            continue
        if n.op in ("add", "sub"):
            inner = [x for x in n.inputs if along(x) is None]
            if not children_done:
                stack += [(n, True)] + [(x, False) for x in inner]
                continue
            useful[id(n)] = len(inner) < 2 or any(useful[id(x)] for x in inner)
        elif n.op == "neg":
            useful[id(n)] = True   # sum(-x) = -sum(x): a negation fewer per element
            stack.append((n.inputs[0], False))
        else:
            useful[id(n)] = n.op in ("mul", "div") and factored(n) is not None
            if useful[id(n)]:
                stack.append((factored(n)[0], False))
    if not useful[id(u)]:
        return None
    parts, stack = [], [(u, 1, (), False)]
    while stack:
        n, sign, factors, whole = stack.pop()
        if whole:
            parts.append((sign, factors, n))
        elif n.op in ("add", "sub") and useful.get(id(n)):
            signs = (1, 1 if n.op == "add" else -1)
            for x, s in reversed(list(zip(n.inputs, signs))):   # left to right, as written
                row = along(x)
                stack.append((x, sign * s, factors, False) if row is None else
                             (row, sign * s, factors, True))
        elif n.op == "neg":
            stack.append((n.inputs[0], -sign, factors, False))
        elif n.op in ("mul", "div") and useful.get(id(n)):
            term, factor = factored(n)
            stack.append((term, sign, (*factors, (factor, n.op)), False))
        else:
            parts.append((sign, factors, n))
    return parts


def summed(term: Tensor, u: Tensor, axes: tuple) -> Tensor:
    """``sum(term, axes, keepdims=True)`` with ``term`` spread over ``u``'s summed axes."""
    aligned = (1,) * (u.ndim - term.ndim) + term.dims
    spread = tuple(u.dims[a] if a in axes else d for a, d in enumerate(aligned))
    if term.dims != spread:
        term = apply("broadcast_to", [term], shape=spread)
    return apply("sum", [term], axes=axes, keepdims=True)


def scaled(value: Tensor, k: int) -> Tensor:
    """``k * value`` for a whole count ``k``, as plainly as it can be written."""
    if k == 1:
        return value
    if k == -1:
        return apply("neg", [value])
    return apply("mul", [value, constant(np.asarray(k, value.dtype))])


def distribute(n: Tensor) -> Tensor | None:
    """The sum ``n`` (over some, not all, axes of a float) with the factors that repeat along
    its axes taken out, or ``None`` if nothing in its input has one.

    >>> import staticgrad as sg
    >>> x, r = sg.placeholder((3, 4), name="x"), sg.placeholder((3, 1), name="r")
    >>> distribute(sg.sum(x * r, axis=1)).op      # sum(x * r) -> reshape(sum(x) * r)
    'reshape'
    """
    (u,) = n.inputs
    attrs = dict(n.attrs)
    axes = attrs["axes"]
    if u.dtype.kind != "f" or len(axes) == u.ndim:
        return None
    parts = linear_parts(u, axes)
    if parts is None:
        return None
    # one sum per distinct set of factors (thousands of terms times r: r * sum(all of them),
    # not thousands of sums), repeated terms counted (2 * sum(x), which interning shares with
    # an existing sum(x)); terms that repeat along the axes apart (their sum is a product)
    groups: dict = {}
    for sign, factors, term in parts:
        aligned = (1,) * (u.ndim - term.ndim) + term.dims
        key = (tuple((id(f), op) for f, op in factors), all(aligned[a] == 1 for a in axes))
        counts = groups.setdefault(key, (factors, {}))[1]
        counts.setdefault(id(term), [term, 0])[1] += sign
    total = None
    for factors, counts in groups.values():
        terms = [(t, k) for t, k in counts.values() if k]
        if not terms:
            continue
        if len(terms) == 1:      # k * sum(t): the sum itself may already exist
            (term, k), = terms
            value = summed(term, u, axes)
            value = scaled(value, k)
        else:
            term = None
            for t, k in terms:
                t = scaled(t, abs(k))
                term = (t if k > 0 else apply("neg", [t])) if term is None else \
                    apply("add" if k > 0 else "sub", [term, t])
            value = summed(term, u, axes)
        for factor, op in factors:
            value = apply(op, [value, factor])
        total = value if total is None else apply("add", [total, value])
    if total is None:            # every term cancelled (x - x): zero, or NaN where x was not finite
        total = scaled(summed(parts[0][2], u, axes), 0)
    if attrs["keepdims"]:
        return total     # the rewrite broadcasts it to the sum's shape if a factor was smaller
    full = tuple(1 if a in axes else d for a, d in enumerate(u.dims))
    if total.dims != full:
        total = apply("broadcast_to", [total], shape=full)
    return apply("reshape", [total], shape=tuple(d for a, d in enumerate(u.dims) if a not in axes))


