"""Rewrite stage: graph -> graph passes (constant folding, algebraic simplification).

A rule is a small function ``node -> replacement | None`` registered for op names. ``simplify``
rebuilds the graph bottom-up applying rules until nothing changes. Interning makes the rebuild a
common-subexpression elimination, and walking from the outputs drops dead nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from . import shapes as sh
from .ops import REGISTRY, Kind, apply, custom
from .ops.scan import trim_histories, with_step_value
from .sums import distribute
from .tensor import Tensor, constant, derived_from, toposort

Rule = Callable[[Tensor], "Tensor | None"]
FOLD: dict[str, list] = {}
ALGEBRA: dict[str, list] = {}
FOLD_LIMIT = 1 << 16  # larger constants stay as ops: generated code recomputes them for free


def rule(table: dict, *ops: str):
    """Register the decorated function as a rule for each op name in ``ops``."""
    def register(fn: Rule) -> Rule:
        for op in ops:
            table.setdefault(op, []).append(fn)
        return fn
    return register


def simplify(outputs: Sequence[Tensor]) -> tuple:
    """Rewrite to a fixed point; returns ``(new outputs, stats)`` with node counts per pass."""
    outputs = list(outputs)
    stats = {"nodes": [("built", len(toposort(outputs)))], "rules": Counter()}
    for _ in range(20):
        before = outputs
        for name, table in (("fold", FOLD), ("algebra", ALGEBRA)):
            outputs = rewrite(outputs, table, stats["rules"])
            stats["nodes"].append((name, len(toposort(outputs))))
        if all(a is b for a, b in zip(before, outputs)):
            break
    trimmed = trim_histories(outputs)
    if any(a is not b for a, b in zip(trimmed, outputs)):
        outputs = trimmed
        stats["nodes"].append(("histories", len(toposort(outputs))))
    return outputs, stats


def rewrite(outputs: Sequence[Tensor], table: dict, fired: Counter) -> list:
    """One bottom-up pass: rebuild each node on rewritten inputs, then try its rules."""
    # keyed by id, so every key node is kept alive here: a rule's discarded intermediate,
    # freed, would hand its id to a later node, which would then find the wrong result
    done: dict = {}
    alive: list = []

    def visit(node: Tensor) -> Tensor:
        for n in toposort([node]):
            if id(n) in done:
                continue
            alive.append(n)
            if n.op is None:
                done[id(n)] = n
                continue
            inputs = [done[id(i)] for i in n.inputs]
            new = n
            if any(a is not b for a, b in zip(inputs, n.inputs)):
                with derived_from(n):
                    new = apply(n.op, inputs, **dict(n.attrs))
            done[id(n)] = try_rules(new, table, fired, visit)
        return done[id(node)]

    return [visit(o) for o in outputs]


def try_rules(node: Tensor, table: dict, fired: Counter, visit) -> Tensor:
    # rules are keyed by op name, or by kind for ops made at run time (custom functions)
    for fn in table.get(node.op, []) + table.get(REGISTRY[node.op].kind, []):
        with derived_from(node):
            out = fn(node)
        if out is not None and out is not node:
            fired[fn.__name__] += 1
            out = fit(out, node)
            return visit(out) if out.op is not None else out
    return node


def fit(value: Tensor, like: Tensor) -> Tensor:
    """A replacement must keep the replaced node's shape and dtype."""
    if value.dtype != like.dtype:
        value = apply("cast", [value], to=like.dtype)
    if value.dims != like.dims:
        if sh.size(value.dims) == sh.size(like.dims) and \
                sh.broadcast_shapes(value.dims, like.dims) != like.dims:
            value = apply("reshape", [value], shape=like.dims)
        else:
            value = apply("broadcast_to", [value], shape=like.dims)
    return value


# -- helpers -------------------------------------------------------------------------------
def const_value(t: Tensor):
    """The scalar every element of ``t`` equals, if ``t`` is a constant (maybe broadcast or
    cast) with a single repeated value; else ``None``."""
    while t.op in ("broadcast_to", "cast", "reshape"):
        t = t.inputs[0]
    if t.leaf != "constant" or t.value.size == 0:
        return None
    flat = t.value.reshape(-1)
    first = flat[0]
    return first.item() if np.all(flat == first) else None


def is_const(t: Tensor, value) -> bool:
    v = const_value(t)
    return v is not None and v == value and not (isinstance(v, float) and np.isnan(v))


def nonnegative(t: Tensor) -> bool:
    if t.op in ("exp", "sqrt", "abs", "sigmoid", "relu"):
        return True
    if t.op == "mul" and t.inputs[0] is t.inputs[1]:
        return True
    return t.leaf == "constant" and bool(np.all(t.value >= 0))


# -- constant folding ----------------------------------------------------------------------
def fold_constants(node: Tensor) -> Tensor | None:
    if not all(i.leaf == "constant" for i in node.inputs) or node.op == "broadcast_to":
        return None
    if not all(sh.is_static(d) for d in node.dims) or sh.size(node.dims) > FOLD_LIMIT:
        return None
    with np.errstate(all="ignore"):
        value = REGISTRY[node.op].numpy(*[i.value for i in node.inputs], **dict(node.attrs))
    return constant(np.asarray(value).astype(node.dtype, copy=False))


for _op, _opdef in REGISTRY.items():
    if _op != "numel" and _opdef.kind is not Kind.CUSTOM:
        rule(FOLD, _op)(fold_constants)


# -- algebra -------------------------------------------------------------------------------
@rule(FOLD, Kind.CUSTOM)
def inline_custom(n):
    return custom.inline(n)  # autodiff has used the user's VJP: now it is just its body


@rule(ALGEBRA, "stop_gradient")
def drop_stop_gradient(n):
    return n.inputs[0]  # autodiff has already run: at execution it is the identity


@rule(ALGEBRA, "cast")
def cast_identity(n):
    (x,) = n.inputs
    if x.dtype == n.dtype:
        return x
    if x.op == "cast" and x.inputs[0].dtype == n.dtype and \
            np.can_cast(n.dtype, x.dtype, casting="safe"):
        return x.inputs[0]  # a round trip through a wider type is exact
    return None


@rule(ALGEBRA, "add")
def add_zero(n):
    a, b = n.inputs
    if is_const(b, 0):
        return a
    if is_const(a, 0):
        return b
    if b.op == "neg":
        return apply("sub", [a, b.inputs[0]])
    if a.op == "neg":
        return apply("sub", [b, a.inputs[0]])
    return None


@rule(ALGEBRA, "sub")
def sub_zero(n):
    a, b = n.inputs
    if is_const(b, 0):
        return a
    if is_const(a, 0):
        return apply("neg", [b])
    if b.op == "neg":
        return apply("add", [a, b.inputs[0]])
    return None


@rule(ALGEBRA, "mul")
def mul_one(n):
    a, b = n.inputs
    for x, other in ((a, b), (b, a)):
        if is_const(other, 1):
            return x
        if is_const(other, -1):
            return apply("neg", [x])
    if a.op == "neg" and b.op == "neg":
        return apply("mul", [a.inputs[0], b.inputs[0]])
    return None


@rule(ALGEBRA, "div")
def div_one(n):
    a, b = n.inputs
    if is_const(b, 1):
        return a
    if is_const(a, 1) and b.op == "div" and is_const(b.inputs[0], 1):
        return b.inputs[1]
    return None


@rule(ALGEBRA, "pow")
def small_powers(n):
    a, b = n.inputs
    p = const_value(b)
    if p == 1:
        return a
    if p == 2:
        return apply("mul", [a, a])
    if p == 3:
        return apply("mul", [apply("mul", [a, a]), a])
    if p == 0.5:
        return apply("sqrt", [a])
    if p == -1:
        return apply("div", [constant(np.ones((), n.dtype)), a])
    return None


@rule(ALGEBRA, "neg")
def double_negation(n):
    return n.inputs[0].inputs[0] if n.inputs[0].op == "neg" else None


@rule(ALGEBRA, "exp")
def exp_log(n):
    (x,) = n.inputs
    if x.op == "log" and nonnegative(x.inputs[0]):
        return x.inputs[0]  # exact for x >= 0, including 0 and inf
    return None


@rule(ALGEBRA, "log")
def log_exp(n):
    (x,) = n.inputs
    return x.inputs[0] if x.op == "exp" else None


@rule(ALGEBRA, "where")
def where_same(n):
    c, a, b = n.inputs
    if a is b:
        return a
    v = const_value(c)
    if v is not None:
        return a if v else b
    return None


@rule(ALGEBRA, "reshape")
def reshape_chain(n):
    (x,) = n.inputs
    if x.dims == n.dims:
        return x
    if x.op == "reshape":
        return apply("reshape", [x.inputs[0]], shape=n.dims)
    return None


@rule(ALGEBRA, "reshape")
def reshape_of_kept_axes(n):
    """Dropping the axes a reduction kept (a bias gradient: ``sum(g, 0, keepdims=True)``
    reshaped to the bias's shape) is the reduction without them: its kernel writes the result
    in place, where the reshape would have been a kernel of its own copying it (W5's
    and W6's last kernels)."""
    (x,) = n.inputs
    if x.op is None or REGISTRY[x.op].kind is not Kind.REDUCE:
        return None
    attrs = dict(x.attrs)
    if not attrs["keepdims"] or \
            n.dims != tuple(d for a, d in enumerate(x.dims) if a not in attrs["axes"]):
        return None
    return apply(x.op, list(x.inputs), **{**attrs, "keepdims": False})


@rule(ALGEBRA, "transpose")
def transpose_chain(n):
    (x,) = n.inputs
    axes = dict(n.attrs)["axes"]
    if x.op == "transpose":
        inner = dict(x.attrs)["axes"]
        composed = tuple(inner[a] for a in axes)
        if composed == tuple(range(len(composed))):
            return x.inputs[0]
        return apply("transpose", [x.inputs[0]], axes=composed)
    return None


@rule(ALGEBRA, "broadcast_to")
def broadcast_chain(n):
    (x,) = n.inputs
    if x.dims == n.dims:
        return x
    if x.op == "broadcast_to":
        return apply("broadcast_to", [x.inputs[0]], shape=n.dims)
    return None


@rule(ALGEBRA, "slice")
def slice_of_unslice(n):
    """Reading back the placed slice gives it; reading beside it gives zeros (a scan's VJP
    reads the cotangent of its stored carries, zero everywhere but the final step)."""
    (x,) = n.inputs
    if x.op != "unslice":
        return None
    read, placed = dict(n.attrs)["index"], dict(x.attrs)["index"]
    if read == placed:
        return x.inputs[0]
    if any(disjoint(a, b) for a, b in zip(read, placed)):
        return fit(constant(np.zeros((), n.dtype)), n)
    return None


def disjoint(a: tuple, b: tuple) -> bool:
    """Whether two unit-step ``(start, stop, step)`` ranges of fixed bounds share nothing."""
    if a[2] != 1 or b[2] != 1 or not all(isinstance(v, int) for v in (*a[:2], *b[:2])):
        return False
    return a[1] <= b[0] or b[1] <= a[0]


@rule(ALGEBRA, "sum")
def sum_of_broadcast(n):
    """Summing copies made by a broadcast is a multiplication by their count."""
    (b,) = n.inputs
    if b.op != "broadcast_to" or REGISTRY["sum"].kind is not Kind.REDUCE:
        return None
    attrs = dict(n.attrs)
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    x = b.inputs[0]
    aligned = (1,) * (b.ndim - x.ndim) + x.dims
    copied = tuple(a for a in axes if aligned[a] == 1 and b.dims[a] != 1)
    if not copied:
        return None
    x = apply("reshape", [x], shape=aligned) if aligned != x.dims else x
    rest = tuple(a for a in axes if a not in copied)
    total = apply("sum", [x], axes=rest, keepdims=True) if rest else x
    if total.dtype != n.dtype:
        total = apply("cast", [total], to=n.dtype)
    count = apply("numel", [b], axes=copied, dtype=n.dtype) \
        if not all(sh.is_static(b.dims[a]) for a in copied) \
        else constant(np.asarray(sh.size(b.dims[a] for a in copied), n.dtype))
    scaled = apply("mul", [total, count])
    kept = tuple(1 if a in axes else d for a, d in enumerate(b.dims))
    out = apply("broadcast_to", [scaled], shape=kept) if scaled.dims != kept else scaled
    return out if keepdims else apply("reshape", [out], shape=n.dims)


@rule(ALGEBRA, "sum")
def sum_of_linear(n):
    """A sum distributes over +, - and negation, and a factor that repeats along the summed
    axes moves outside it: ``sum(a * c + b) = c * sum(a) + sum(b)``. When the factor is itself
    a row statistic (layer norm's backward divides by the row's deviation), the sum then no
    longer waits for it, and the fused kernel makes one pass fewer over each row. A sum over
    every axis is left whole: its factors are scalars, and the product would be a kernel of
    its own after the loop instead of a multiply inside it."""
    return distribute(n)


@rule(ALGEBRA, "scan")
def constant_xs_into_body(n):
    body = dict(n.attrs)["body"]
    xs = n.inputs[len(body.carries):len(body.carries) + len(body.xs)]
    for k, x in enumerate(xs):
        value = const_value(x)
        if value is not None:
            return with_step_value(n, k, value)
    return None


@rule(ALGEBRA, *[op for op, d in REGISTRY.items() if d.kind is Kind.REDUCE])
def reduce_single_elements(n):
    """Reducing over no axes, or only axes of size 1, leaves every element as it was."""
    (x,) = n.inputs
    axes = dict(n.attrs)["axes"]
    if not REGISTRY[n.op].accumulator.identity:
        return None
    return x if all(x.dims[a] == 1 for a in axes) else None
