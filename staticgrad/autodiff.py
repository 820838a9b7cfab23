"""Autodiff stage: reverse mode that returns new graph nodes, not numbers.

``grad`` walks the graph from the outputs back to the requested tensors, calling each op's VJP
rule (kept beside the op in ``ops/``). Broadcasting and dtype are undone here, in one place, so
rules can be written as if every shape matched. Gradients are graphs, so they differentiate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import dtypes as dt
from . import shapes as sh
from .graph import gc_paused
from .ops import REGISTRY, add, broadcast_to, cast, reshape, sum, zeros_like
from .tensor import Tensor, as_tensor, backward_of, build_error, location, toposort, user_line


@gc_paused
def grad(outputs, inputs, grad_outputs=None):
    """Gradient nodes of ``outputs`` with respect to ``inputs`` (vector-Jacobian products).

    One tensor in gives one tensor out; a list or tuple gives a tuple in the same order.
    An output with more than one element needs ``grad_outputs`` (the vector ``v`` in
    ``v^T J``, like PyTorch's ``backward(gradient=v)``).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((), name="x")
    >>> w = sg.parameter(1.0, name="w")
    >>> y = (x + w) * (w + 1)
    >>> dw, dx = sg.grad(y, [w, x])
    >>> [float(v) for v in sg.function([x], [dw, dx], backend="numpy")(2.0)]
    [5.0, 2.0]
    """
    single = isinstance(inputs, Tensor)
    wrt = [inputs] if single else [as_tensor(i) for i in inputs]
    outs = [as_tensor(outputs)] if not isinstance(outputs, (list, tuple)) \
        else [as_tensor(o) for o in outputs]
    if grad_outputs is None or (not isinstance(grad_outputs, (list, tuple)) and len(outs) == 1):
        grad_outputs = [grad_outputs] * len(outs) if grad_outputs is None else [grad_outputs]
    if len(grad_outputs) != len(outs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outs)} outputs"
                         f"{at()}")
    for w in wrt:
        if not dt.is_float(w.dtype):
            raise TypeError(f"grad: cannot differentiate with respect to {describe(w)}: only "
                            f"floating-point tensors have gradients{at()}")
    seeds = [seed(o, g) for o, g in zip(outs, grad_outputs)]
    grads = differentiate(outs, seeds, wrt)
    return grads[0] if single else tuple(grads)


def describe(t: Tensor) -> str:
    kind = t.leaf or t.op
    return (f"{kind} {t.name + ' ' if t.name else ''}({t.dtype}{sh.show(t.dims)}, built at "
            f"{location(t.source)})")


def at() -> str:
    """Where the user called ``grad``, for error messages."""
    return f" — at {location(user_line())}"


def seed(output: Tensor, cotangent) -> Tensor:
    """The starting cotangent of one output: ones for a one-element output, else the given one."""
    if not dt.is_float(output.dtype):
        raise TypeError(f"grad: the output {describe(output)} is not floating-point, so it has "
                        f"no gradient{at()}")
    if cotangent is None:
        if sh.size(output.dims) != 1:
            raise ValueError(f"grad: output {describe(output)} has more than one element; pass "
                             "grad_outputs (a tensor or array of the output's shape), as "
                             f"PyTorch's backward(gradient=...){at()}")
        return cast(np.ones(output.dims, output.dtype), output.dtype)
    cotangent = as_tensor(cotangent)
    try:
        fitted = sh.broadcast_shapes(output.dims, cotangent.dims)  # output sizes win
    except ValueError:
        fitted = None
    if fitted != output.dims:
        raise ValueError(f"grad: grad_outputs of shape {sh.show(cotangent.dims)} does not "
                         f"match the output's shape {sh.show(output.dims)}{at()}")
    return broadcast_to(cast(cotangent, output.dtype), output.dims)


def differentiate(outputs: Sequence[Tensor], seeds: Sequence[Tensor], wrt: Sequence[Tensor]):
    """The reverse sweep: sum each node's cotangents, apply its VJP, pass results to inputs."""
    nodes = toposort(outputs)
    targets = {id(w) for w in wrt}
    # only nodes that some requested tensor influences carry cotangents
    reached: set = set()
    for node in nodes:
        if id(node) in targets or any(id(i) in reached for i in node.inputs):
            reached.add(id(node))
    cotangents: dict = {}
    for out, g in zip(outputs, seeds):
        if id(out) in reached:
            cotangents.setdefault(id(out), []).append(g)
    for node in reversed(nodes):
        parts = cotangents.get(id(node))
        if node.op is None or not parts or not any(id(i) in reached for i in node.inputs):
            continue
        opdef = REGISTRY[node.op]
        if opdef.vjp is None:
            continue
        attrs = dict(node.attrs)
        if opdef.partial_vjp:
            attrs["needed"] = tuple(id(i) in reached and dt.is_float(i.dtype)
                                    for i in node.inputs)
        with backward_of(node):
            g = total(parts)
            try:
                input_grads = opdef.vjp(g, node, *node.inputs, **attrs)
            except (ValueError, TypeError) as err:
                raise build_error(err, f"{node.op} backward", node.inputs) from None
            for x, gx in zip(node.inputs, input_grads):
                if gx is not None and id(x) in reached and dt.is_float(x.dtype):
                    cotangents.setdefault(id(x), []).append(fit(as_tensor(gx), x))
    return [total(cotangents[id(w)]) if id(w) in cotangents else zeros_like(w) for w in wrt]


def total(parts: list) -> Tensor:
    out = parts[0]
    for p in parts[1:]:
        out = add(out, p)
    return out


def fit(g: Tensor, x: Tensor) -> Tensor:
    """``g`` summed over the axes along which ``x`` was broadcast, in ``x``'s dtype."""
    extra = g.ndim - x.ndim
    axes = tuple(range(extra)) + tuple(
        extra + a for a, d in enumerate(x.dims) if d == 1 and g.dims[extra + a] != 1)
    if axes:
        g = reshape(sum(g, axes, keepdims=True), x.dims)
    elif g.dims != x.dims:
        # same rank: sizes differ only in name (call-time sizes assumed equal, checked then)
        # (a broadcast_to fuses into loops, but cannot turn a fixed size into a call-time one)
        fixed_to_call_time = any(sh.is_static(a) and not sh.is_static(b)
                                 for a, b in zip(g.dims[extra:], x.dims))
        g = reshape(g, x.dims) if extra > 0 or fixed_to_call_time else broadcast_to(g, x.dims)
    return cast(g, x.dtype) if g.dtype != x.dtype else g
