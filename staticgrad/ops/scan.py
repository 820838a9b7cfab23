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
from . import REGISTRY, Kind, apply, defop
from .movement import broadcast_to, reshape, slice_

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


def scan_shape(shapes, body: Body, length: int, reverse: bool = False, keep=None):
    return (max((stop for _, stop, _, _ in pieces(body, length, keep)), default=0),)


def scan_dtype(dtypes, body: Body, length: int, reverse: bool = False, keep=None):
    return body.outputs[0].dtype if body.outputs else np.dtype(np.float64)


def scan_reference(*arrays, body: Body, length: int, reverse: bool = False, keep=None,
                   evaluate=None):
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
    def slots(h: list) -> list:
        """A history not kept: two slots used in turn, as the compiled loop does; slot p
        holds the last value written at a step index of parity p (h[j] is stored at j, or at
        T - j when the scan runs in reverse)."""
        index = (lambda j: length - j) if reverse else (lambda j: j)
        return [next((h[j] for j in reversed(range(len(h))) if index(j) % 2 == p), h[0])
                for p in (0, 1)]

    history = [order(h) if kept else slots(h) for h, kept in zip(history, keep or [True] * nc)]
    pieces = [np.stack(h).reshape(-1) for h in history] + \
        [np.stack(order(y)).reshape(-1) if y else np.zeros(0, dtype) for y in ys]
    return np.concatenate(pieces).astype(dtype) if pieces else np.zeros(0, dtype)


def pieces(body: Body, length: int, keep=None):
    """Where each piece sits in the packed value: ``(start, stop, shape, is a carry)`` for
    each carry's history (``T + 1`` steps, or 2 used in turn where ``keep`` says it is not
    kept), then each stacked y (``T``)."""
    at = 0
    keep = keep or (True,) * len(body.carries)
    for k, (node, carry) in enumerate([(c, True) for c in body.carries] +
                                      [(y, False) for y in body.ys]):
        steps = (length + 1 if keep[k] else 2) if carry else length
        n = steps * sh.size(node.dims)
        yield at, at + n, (steps,) + node.dims, carry
        at += n


def unpack(packed: Tensor, body: Body, length: int, keep=None) -> tuple:
    """``(carry histories (T+1, ...) each, ys (T, ...) each)`` as views of a packed value."""
    out = [reshape(slice_(packed, ((start, stop, 1),)), shape)
           for start, stop, shape, _ in pieces(body, length, keep)]
    return out[:len(body.carries)], out[len(body.carries):]


def scan_vjp(g, y, *inputs, body: Body, length: int, reverse: bool = False, keep=None,
             needed=None):
    """A scan the other way: walks the stored carries back, carrying the carries' cotangent
    and the captured values' gradient sums; each step's x gradient is stacked. Step ``t``
    read the carry stored at ``t`` (at ``t + 1`` when ``reverse``), so the backward scan reads
    the history, the xs and the cotangents in place, each at its own step. Only the gradients
    ``needed`` (one flag per input) are computed: an RNN's weights, not its inputs."""
    nc, nx = len(body.carries), len(body.xs)
    xs, consts = inputs[nc:nc + nx], inputs[nc + nx:]
    if y.dtype.kind != "f":
        return [None] * len(inputs)
    if keep is not None and not all(keep):
        raise ValueError("cannot differentiate a scan compiled without its history")
    needed = needed or (True,) * len(inputs)
    history, stacked = unpack(y, body, length)
    g_history, g_ys = unpack(g, body, length)
    want_xs = [k for k, x in enumerate(xs) if x.dtype.kind == "f" and needed[nc + k]]
    want_consts = [k for k, c in enumerate(consts) if c.dtype.kind == "f" and needed[nc + nx + k]]

    cotangents, grads = body_gradient(body, want_xs, want_consts)
    # the body's outputs the gradient reads (tanh's VJP reads tanh) are read back from the
    # stored history and ys, not computed again
    used = {id(n) for n in toposort(grads)}
    reused = [k for k, o in enumerate(body.outputs) if o.op is not None and id(o) in used]
    written = slice(0, length) if reverse else slice(1, length + 1)  # the carry step t wrote
    outs = [history[k][written] if k < nc else stacked[k - nc] for k in reused]

    def back(carry, x):
        g_carry, sums = carry[:nc], carry[nc:]
        c_t, x_t = x[:nc], x[nc:nc + nx]
        gy_t = x[nc + nx:nc + nx + body.n_ys]
        gh_t = x[nc + nx + body.n_ys:2 * nc + nx + body.n_ys]
        out_t = x[2 * nc + nx + body.n_ys:]
        # the body's gradient, taken in the body's own variables (captured values are
        # independent there), then placed on this step's values
        mapping = dict(zip(map(id, body.carries + body.xs + body.consts), [*c_t, *x_t, *consts]))
        mapping.update(zip(map(id, cotangents), [*g_carry, *gy_t]))
        mapping.update(zip((id(body.outputs[k]) for k in reused), out_t))
        step = substitute(grads, mapping)
        n_x = len(want_xs)
        new_carry = [gc + gh for gc, gh in zip(step[:nc], gh_t)]
        new_sums = [s + gk for s, gk in zip(sums, step[nc + n_x:])]
        return tuple(new_carry + new_sums), tuple(step[nc:nc + n_x])

    read = slice(1, length + 1) if reverse else slice(0, length)   # the carry step t read
    init = [gh[0 if reverse else length] for gh in g_history]
    init += [constant(np.zeros(consts[k].dims, consts[k].dtype)) for k in want_consts]
    xs_back = [h[read] for h in history] + list(xs) + list(g_ys) + \
        [gh[read] for gh in g_history] + outs
    final, g_xs = scan(back, tuple(init), tuple(xs_back), length=length, reverse=not reverse)
    final = list(final)
    g_xs = dict(zip(want_xs, g_xs or ()))
    g_consts = dict(zip(want_consts, final[nc:]))
    return [*final[:nc], *[g_xs.get(k) for k in range(nx)],
            *[g_consts.get(k) for k in range(len(consts))]]


def body_gradient(body: Body, xs: list, consts: list) -> tuple:
    """``(cotangent placeholders, the gradient nodes)`` of the body: with respect to the
    carries, then the xs and the captured values at the positions given."""
    from ..autodiff import grad  # autodiff imports ops: this runs after both are loaded

    cotangents = [placeholder(o.dims, o.dtype, name=f"g{k}") for k, o in enumerate(body.outputs)]
    wrt = [*body.carries, *[body.xs[k] for k in xs], *[body.consts[k] for k in consts]]
    return cotangents, list(grad(list(body.outputs), wrt, grad_outputs=cotangents))


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
    keep = attrs.get("keep") or (True,) * len(body.carries)
    nc, nx = len(body.carries), len(body.xs)
    out = code.array(node)
    ins = [code.array(x) for x in node.inputs]
    history, ys, lines = [], [], []
    for start, stop, shape, carry in pieces(body, length, keep):
        name = code.fresh("h" if carry else "y")
        lines.append(f"{name} = {out}[{start}:{stop}].reshape(({', '.join(map(str, shape))},))")
        (history if carry else ys).append(name)
    first = length if reverse else 0
    for h, x, b, kept in zip(history, ins[:nc], body.carries, keep):
        at = first if kept else first % 2
        lines += code.copy(f"{h}[{at}]", x, int(sh.size(b.dims))) if b.ndim else \
            [f"{h}[{at}] = {x}[()]"]
    t = code.fresh("t")
    read, write = (f"{t} + 1", t) if reverse else (t, f"{t} + 1")

    def step(index: str, kept: bool) -> str:    # two slots in turn for a history not kept
        return index if kept else f"({index}) % 2"

    feeds = {id(p): f"{h}[{step(read, kept)}]" for p, h, kept in zip(body.carries, history, keep)}
    feeds.update({id(p): f"{x}[{t}]" for p, x in zip(body.xs, ins[nc:nc + nx])})
    feeds.update({id(p): x for p, x in zip(body.consts, ins[nc + nx:])})
    targets = [f"{h}[{step(write, kept)}]" for h, kept in zip(history, keep)] + \
        [f"{y}[{t}]" for y in ys]
    before, step = code.subgraph(list(body.outputs), feeds, targets)
    steps = f"range({length} - 1, -1, -1)" if reverse else f"range({length})"
    return lines + before + [f"for {t} in {steps}:"] + \
        ["    " + line for line in step or ["pass"]]


def scan_cost(node: Tensor, count) -> dict:
    """The body's work times the length; its largest matrix product is the largest of one
    step (what BLAS threads are chosen by)."""
    attrs = dict(node.attrs)
    work = [REGISTRY[n.op].flops(n, count) for n in toposort(attrs["body"].outputs) if n.op]
    return {"flops": attrs["length"] * sum(w["flops"] for w in work),
            "gemm": attrs["length"] * sum(w["gemm"] for w in work),
            "largest": max((w["largest"] for w in work), default=0)}


defop("scan", Kind.OPAQUE, scan_shape, scan_dtype, scan_reference, scan_vjp, emit=scan_emit,
      partial_vjp=True, cost=scan_cost)


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
        if n.op is not None and (any(id(i) in inner for i in n.inputs) or free_view(n)):
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


def trim_histories(outputs: list) -> list:
    """Scans of which nobody reads a carry's history but its last step keep two slots of it,
    used in turn, not ``T + 1``: the gradient sums a VJP carries (a weight's gradient at every
    step, T copies of the weight) become one running pair. A pass over a whole graph, run
    after autodiff, when every reader of every scan is known."""
    while True:
        trimmed = trim_one(outputs)
        if trimmed is None:
            return outputs
        outputs = trimmed


def trim_one(outputs: list):
    """``outputs`` with the first scan that can keep fewer steps rebuilt, or ``None``."""
    where: dict = {}     # id of a scan or a view of one -> (scan, start, stop) in its value
    reads: dict = {}     # id of a scan -> [(start, stop)] read of it by a node not a view
    read_views: dict = {}

    def read(t: Tensor) -> None:
        if id(t) in where:
            scan_node, a, b = where[id(t)]
            reads.setdefault(id(scan_node), []).append((a, b))
            read_views[id(t)] = t

    nodes = toposort(outputs)
    for n in nodes:
        if n.op is None:
            continue
        offset = REGISTRY[n.op].alias(n) if REGISTRY[n.op].alias is not None and \
            id(n.inputs[0]) in where else None
        if offset is not None:
            scan_node, a, _ = where[id(n.inputs[0])]
            where[id(n)] = (scan_node, a + offset, a + offset + sh.size(n.dims))
            continue
        for i in n.inputs:
            read(i)
        if n.op == "scan":
            where[id(n)] = (n, 0, n.dims[0])
    for o in outputs:
        read(o)
    for n in nodes:
        if n.op != "scan":
            continue
        attrs = dict(n.attrs)
        body, length = attrs["body"], attrs["length"]
        final = 0 if attrs.get("reverse") else length
        old = list(pieces(body, length, attrs.get("keep")))
        before = tuple(attrs.get("keep") or (True,) * len(body.carries))
        keep = list(before)
        for k, (start, stop, shape, _) in enumerate(old[:len(keep)]):
            step = sh.size(shape[1:])
            lo, hi = start + final * step, start + (final + 1) * step
            if keep[k] and all(b <= start or a >= stop or lo <= a and b <= hi
                               for a, b in reads.get(id(n), [])):
                keep[k] = False
        if tuple(keep) == before:
            continue
        new = apply("scan", list(n.inputs), **{**attrs, "keep": tuple(keep)})
        fresh = list(pieces(body, length, keep))

        def moved(a: int) -> int:
            """Where element ``a`` of the old value is in the new one."""
            for k, ((start, stop, shape, carry), (begin, _, _, _)) in enumerate(zip(old, fresh)):
                if start <= a < stop:
                    if carry and not keep[k]:
                        step = sh.size(shape[1:])
                        return begin + ((a - start) // step) % 2 * step + (a - start) % step
                    return begin + a - start
            return 0    # an empty view

        mapping = {id(v): reshape(slice_(new, ((moved(a), moved(a) + b - a, 1),)), v.dims)
                   for v in read_views.values()
                   for scan_node, a, b in [where[id(v)]] if scan_node is n}
        return substitute(outputs, mapping)
    return None


def free_view(node: Tensor) -> bool:
    """A transpose or reshape of an outer value stays in the body (its base is captured):
    redone each step it costs nothing (a BLAS operand's transpose flag, an index map, a view),
    while hoisted out it would be a copy made by a kernel of its own (``W.T`` in a VJP)."""
    return node.op == "transpose" or \
        node.op is not None and REGISTRY[node.op].alias is not None and \
        REGISTRY[node.op].alias(node) == 0


def with_step_value(node: Tensor, k: int, value) -> Tensor:
    """The scan ``node`` with its ``k``-th xs, a constant ``value`` at every step, dropped
    and the constant put in the body instead (a zero cotangent in a VJP): no array of T
    copies is made, and the body's rewrites fold the constant away."""
    attrs = dict(node.attrs)
    body = attrs["body"]
    nc = len(body.carries)
    step = body.xs[k]
    fill = broadcast_to(constant(np.asarray(value, step.dtype)), step.dims)
    outputs = substitute(list(body.outputs), {id(step): fill})
    body = Body(body.carries, body.xs[:k] + body.xs[k + 1:], body.consts, outputs, body.n_ys)
    inputs = list(node.inputs)
    del inputs[nc + k]
    return apply("scan", inputs, **{**attrs, "body": body})


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
