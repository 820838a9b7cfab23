"""``scan`` and ``fori_loop``: a loop whose body is built once, as a graph of its own.

``scan(step, init, xs)`` runs ``carry, y = step(carry, x)`` over the leading axis of ``xs``
(JAX's ``lax.scan``). The body is traced once on placeholders; outer values it reads (weights)
become inputs of the ``scan`` node, so one node stands for the whole loop however long it is.
The node's value packs the carries at every step (``T + 1`` of them: the VJP needs them) and
the stacked ``y``; ``scan`` returns views of the pieces. ``reverse=True`` walks the steps from
the last to the first (the carry after step ``t`` is stored at ``t``, the initial one at ``T``).
Its VJP is a scan the other way over the stored carries, with no flipped copies, so gradients
of gradients work too. The NumPy reference
loops in Python; the numba backend compiles the body's kernels once and calls them from one
compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error, constant, placeholder, toposort
from . import Kind, apply, defop
from .movement import reshape, slice_

__all__ = ["scan", "fori_loop"]


class Body:
    """A step function's graph: placeholders for the carries, the per-step slices of ``xs``
    and the captured outer values, and its outputs (the new carries, then the ys)."""

    def __init__(self, carries: list, xs: list, consts: list, outputs: list, n_ys: int):
        self.carries, self.xs, self.consts = tuple(carries), tuple(xs), tuple(consts)
        self.outputs, self.n_ys = tuple(outputs), n_ys

    @property
    def ys(self) -> tuple:
        return self.outputs[len(self.carries):]

    def __repr__(self) -> str:
        nodes = len(toposort(self.outputs))
        return (f"<body: {len(self.carries)} carr{'y' if len(self.carries) == 1 else 'ies'}, "
                f"{len(self.xs)} xs, {len(self.consts)} captured, {self.n_ys} ys, "
                f"{nodes} nodes>")


def scan_shape(shapes, body: Body, length: int, reverse: bool = False):
    return (max((stop for _, stop, _, _ in pieces(body, length)), default=0),)


def scan_dtype(dtypes, body: Body, length: int, reverse: bool = False):
    return body.outputs[0].dtype if body.outputs else np.dtype(np.float64)


def scan_reference(*arrays, body: Body, length: int, reverse: bool = False, evaluate=None):
    """Python's loop over the body, evaluated node by node."""
    if evaluate is None:
        from ..backends.reference import evaluate  # the body runs on the reference
    nc, nx = len(body.carries), len(body.xs)
    carry = [np.asarray(a) for a in arrays[:nc]]
    xs, consts = arrays[nc:nc + nx], arrays[nc + nx:]
    nodes = toposort(body.outputs)
    history, ys = [[c] for c in carry], [[] for _ in body.ys]
    for t in (reversed(range(length)) if reverse else range(length)):
        feeds = {id(p): v for p, v in zip(body.carries, carry)}
        feeds.update({id(p): np.asarray(x)[t] for p, x in zip(body.xs, xs)})
        feeds.update({id(p): v for p, v in zip(body.consts, consts)})
        values = evaluate(nodes, feeds, {})
        outs = [values[id(o)] for o in body.outputs]
        carry = outs[:nc]
        for k, c in enumerate(carry):
            history[k].append(c)
        for j, y in enumerate(outs[nc:]):
            ys[j].append(y)
    dtype = scan_dtype(None, body, length)
    order = (lambda steps: steps[::-1]) if reverse else (lambda steps: steps)
    pieces = [np.stack(order(h)).reshape(-1) for h in history] + \
        [np.stack(order(y)).reshape(-1) if y else np.zeros(0, dtype) for y in ys]
    return np.concatenate(pieces).astype(dtype) if pieces else np.zeros(0, dtype)


def pieces(body: Body, length: int):
    """Where each piece sits in the packed value: ``(start, stop, shape, is a carry)`` for
    each carry's history (``T + 1`` steps), then each stacked y (``T``)."""
    at = 0
    for node, carry in [(c, True) for c in body.carries] + [(y, False) for y in body.ys]:
        steps = length + 1 if carry else length
        n = steps * sh.size(node.dims)
        yield at, at + n, (steps,) + node.dims, carry
        at += n


def unpack(packed: Tensor, body: Body, length: int) -> tuple:
    """``(carry histories (T+1, ...) each, ys (T, ...) each)`` as views of a packed value."""
    out = [reshape(slice_(packed, ((start, stop, 1),)), shape)
           for start, stop, shape, _ in pieces(body, length)]
    return out[:len(body.carries)], out[len(body.carries):]


def scan_vjp(g, y, *inputs, body: Body, length: int, reverse: bool = False):
    """A scan the other way: walks the stored carries back, carrying the carries' cotangent
    and the captured values' gradient sums; each step's x gradient is stacked. Step ``t``
    read the carry stored at ``t`` (at ``t + 1`` when ``reverse``), so the backward scan reads
    the history, the xs and the cotangents in place, each at its own step."""
    nc, nx = len(body.carries), len(body.xs)
    xs, consts = inputs[nc:nc + nx], inputs[nc + nx:]
    if y.dtype.kind != "f":
        return [None] * len(inputs)
    history, _ = unpack(y, body, length)
    g_history, g_ys = unpack(g, body, length)
    floats = [k for k, c in enumerate(consts) if c.dtype.kind == "f"]

    cotangents, wrt, grads = body_gradient(body)

    def back(carry, x):
        g_carry, sums = carry[:nc], carry[nc:]
        c_t, x_t = x[:nc], x[nc:nc + nx]
        gy_t, gh_t = x[nc + nx:nc + nx + body.n_ys], x[nc + nx + body.n_ys:]
        # the body's gradient, taken in the body's own variables (captured values are
        # independent there), then placed on this step's values
        mapping = dict(zip(map(id, body.carries + body.xs + body.consts), [*c_t, *x_t, *consts]))
        mapping.update(zip(map(id, cotangents), [*g_carry, *gy_t]))
        step = substitute(grads, mapping)
        n_x = len(wrt) - nc - len(floats)
        new_carry = [gc + gh for gc, gh in zip(step[:nc], gh_t)]
        new_sums = [s + gk for s, gk in zip(sums, step[nc + n_x:])]
        return tuple(new_carry + new_sums), tuple(step[nc:nc + n_x])

    read = slice(1, length + 1) if reverse else slice(0, length)   # the carry step t read
    init = [gh[0 if reverse else length] for gh in g_history]
    init += [constant(np.zeros(consts[k].dims, consts[k].dtype)) for k in floats]
    xs_back = [h[read] for h in history] + list(xs) + list(g_ys) + \
        [gh[read] for gh in g_history]
    final, g_xs = scan(back, tuple(init), tuple(xs_back), length=length, reverse=not reverse)
    final = list(final)
    g_xs = iter(g_xs)
    g_consts = dict(zip(floats, final[nc:]))
    return [*final[:nc], *[next(g_xs) if x.dtype.kind == "f" else None for x in xs],
            *[g_consts.get(k) for k in range(len(consts))]]


def body_gradient(body: Body) -> tuple:
    """``(cotangent placeholders, what it is taken with respect to, the gradient nodes)`` of
    the body: with respect to the carries, the float xs and the float captured values."""
    from ..autodiff import grad  # autodiff imports ops: this runs after both are loaded

    cotangents = [placeholder(o.dims, o.dtype, name=f"g{k}") for k, o in enumerate(body.outputs)]
    wrt = [*body.carries, *[x for x in body.xs if x.dtype.kind == "f"],
           *[c for c in body.consts if c.dtype.kind == "f"]]
    return cotangents, wrt, list(grad(list(body.outputs), wrt, grad_outputs=cotangents))


def substitute(outputs: list, mapping: dict) -> list:
    """``outputs`` rebuilt with the nodes whose ids ``mapping`` holds replaced."""
    done = dict(mapping)
    for n in toposort(outputs, stop=set(done)):
        if id(n) not in done:
            done[id(n)] = n if n.op is None else \
                apply(n.op, [done[id(i)] for i in n.inputs], **dict(n.attrs))
    return [done[id(o)] for o in outputs]


def scan_emit(node: Tensor, code) -> list:
    """One compiled loop: the body's kernels, compiled once, called T times on views."""
    attrs = dict(node.attrs)
    body, length, reverse = attrs["body"], attrs["length"], attrs.get("reverse", False)
    nc, nx = len(body.carries), len(body.xs)
    out = code.array(node)
    ins = [code.array(x) for x in node.inputs]
    history, ys, lines = [], [], []
    for start, stop, shape, carry in pieces(body, length):
        name = code.fresh("h" if carry else "y")
        lines.append(f"{name} = {out}[{start}:{stop}].reshape(({', '.join(map(str, shape))},))")
        (history if carry else ys).append(name)
    first = length if reverse else 0
    for h, x, b in zip(history, ins[:nc], body.carries):
        lines += code.copy(f"{h}[{first}]", x, int(sh.size(b.dims))) if b.ndim else \
            [f"{h}[{first}] = {x}[()]"]
    t = code.fresh("t")
    read, write = (f"{t} + 1", t) if reverse else (t, f"{t} + 1")
    feeds = {id(p): f"{h}[{read}]" for p, h in zip(body.carries, history)}
    feeds.update({id(p): f"{x}[{t}]" for p, x in zip(body.xs, ins[nc:nc + nx])})
    feeds.update({id(p): x for p, x in zip(body.consts, ins[nc + nx:])})
    targets = [f"{h}[{write}]" for h in history] + [f"{y}[{t}]" for y in ys]
    before, step = code.subgraph(list(body.outputs), feeds, targets)
    steps = f"range({length} - 1, -1, -1)" if reverse else f"range({length})"
    return lines + before + [f"for {t} in {steps}:"] + \
        ["    " + line for line in step or ["pass"]]


defop("scan", Kind.OPAQUE, scan_shape, scan_dtype, scan_reference, scan_vjp, emit=scan_emit,
      cost=lambda node, count: {"flops": dict(node.attrs)["length"] * sum(
          count(n.dims) for n in toposort(dict(node.attrs)["body"].outputs) if n.op), "gemm": 0})


def as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def scan(step: Callable, init, xs=None, length: int | None = None, reverse: bool = False):
    """``(final carry, stacked ys)`` of ``carry, y = step(carry, x)`` for each ``x`` along
    the leading axis of ``xs`` (a tensor, a tuple of tensors, or ``None`` with ``length``), as
    JAX's ``lax.scan``. ``init`` and the carry are a tensor or a tuple of tensors of the same
    shapes; ``y`` may be ``None``. The body is built once, whatever the length; outer tensors it
    reads are captured. ``reverse=True`` runs the steps from the last to the first, and stacks
    each y at its own step, as ``lax.scan(..., reverse=True)``. Shapes must be known when the
    graph is built.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((5, 3), name="x")
    >>> total, running = sg.scan(lambda c, xt: (c + xt, c * 1.0), sg.constant(np.zeros(3)), x)
    >>> sg.function([x], total, backend="numpy")(np.ones((5, 3))).tolist()
    [5.0, 5.0, 5.0]
    """
    single_carry = not isinstance(init, (list, tuple))
    init_t = tuple(as_tensor(c) for c in as_tuple(init))
    single_x = xs is not None and not isinstance(xs, (list, tuple))
    xs_t = tuple(as_tensor(x) for x in as_tuple(xs))
    every = list(init_t + xs_t)
    if length is None:
        if not xs_t:
            raise build_error(ValueError("give xs or length"), "scan", every)
        length = xs_t[0].dims[0] if xs_t[0].ndim else None
    bad = [x for x in xs_t if not x.ndim or x.dims[0] != length]
    if bad or not sh.is_static(length) or any(not sh.is_static(d) for t in every
                                               for d in t.dims):
        raise build_error(ValueError(f"every xs must have the leading size {length}, and all "
                                     "sizes must be known when the graph is built"),
                          "scan", every)
    if not init_t:
        raise build_error(ValueError("scan needs at least one carry"), "scan", every)
    carries = [placeholder(c.dims, c.dtype, name=f"carry{k}") for k, c in enumerate(init_t)]
    x_ph = [placeholder(x.dims[1:], x.dtype, name=f"x{k}") for k, x in enumerate(xs_t)]
    result = step(carries[0] if single_carry else tuple(carries),
                  None if not xs_t else x_ph[0] if single_x else tuple(x_ph))
    if not isinstance(result, (list, tuple)) or len(result) != 2:
        raise build_error(TypeError("step must return (new carry, y)"), "scan", every)
    new_carry = [as_tensor(c) for c in as_tuple(result[0])]
    ys = [as_tensor(y) for y in as_tuple(result[1])]
    if [(c.dims, c.dtype) for c in new_carry] != [(c.dims, c.dtype) for c in init_t]:
        raise build_error(ValueError("step must return a carry of the same shapes and dtypes "
                                     "as init: " + ", ".join(f"{c.dtype}{sh.show(c.dims)}"
                                                             for c in new_carry)), "scan", every)
    dtypes = {t.dtype for t in new_carry + ys}
    if len(dtypes) > 1:
        raise build_error(TypeError(f"carries and ys must share one dtype, got {dtypes}"),
                          "scan", every)
    body, captured = trace(carries, x_ph, new_carry + ys, len(ys))
    node = apply("scan", [*init_t, *xs_t, *captured], body=body, length=int(length),
                 reverse=bool(reverse))
    history, stacked = unpack(node, body, int(length))
    final = tuple(h[0 if reverse else int(length)] for h in history)
    ys_out = tuple(stacked)
    return (final[0] if single_carry else final), \
        (None if result[1] is None else ys_out[0] if not isinstance(result[1], (list, tuple))
         else ys_out)


def trace(carries: list, xs: list, outputs: list, n_ys: int) -> tuple:
    """The body with the outer values it reads replaced by placeholders of its own:
    ``(Body, the outer values in order)``."""
    own = {id(p) for p in carries + xs}
    order = toposort(outputs)
    inner = set(own)
    for n in order:
        if n.op is not None and any(id(i) in inner for i in n.inputs):
            inner.add(id(n))
    captured: dict = {}
    for n in order + [None]:
        reads = outputs if n is None else (n.inputs if id(n) in inner and n.op else ())
        for i in reads:
            if id(i) not in inner and i.leaf != "constant" and id(i) not in captured:
                captured[id(i)] = i
    outer = list(captured.values())
    consts = [placeholder(c.dims, c.dtype, name=c.name or f"captured{k}")
              for k, c in enumerate(outer)]
    done = {id(c): p for c, p in zip(outer, consts)}
    done.update({id(p): p for p in carries + xs})
    for n in order:
        if id(n) not in done:
            done[id(n)] = n if n.op is None else \
                apply(n.op, [done[id(i)] for i in n.inputs], **dict(n.attrs))
    return Body(carries, xs, consts, [done[id(o)] for o in outputs], n_ys), outer


def fori_loop(lower: int, upper: int, body_fun: Callable, init_val):
    """``body_fun(i, val) -> val`` for ``i`` from ``lower`` to ``upper - 1``, as JAX's
    ``lax.fori_loop``; ``i`` is an int64 tensor. The body is built once.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((), name="x")
    >>> y = sg.fori_loop(0, 10, lambda i, v: v * 0.5 + 1.0, x)
    >>> round(float(sg.function([x], y, backend="numpy")(0.0)), 6)
    1.998047
    """
    steps = np.arange(lower, upper, dtype=np.int64)
    final, _ = scan(lambda val, i: (body_fun(i, val), None), init_val,
                    as_tensor(steps), length=len(steps))
    return final
