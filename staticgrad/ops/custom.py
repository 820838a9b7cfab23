"""Custom functions: a forward built from ops, with a VJP rule of the user's own.

PyTorch's ``autograd.Function`` pairs a forward with a hand-written backward; here the forward
is a function of Tensors (its graph is the op's *body*) and the VJP a function building the
gradient nodes. Autodiff calls the user's rule instead of differentiating the body; execution
runs the body itself (the rewrite pass inlines it, so it fuses like any other code).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, composite, toposort
from . import REGISTRY, Kind, OpDef, apply, register

__all__ = ["custom_vjp", "CustomFunction"]


class CustomFunction:
    """A function with a user-defined vector-Jacobian product; see ``custom_vjp``."""

    def __init__(self, forward: Callable, vjp: Callable | None = None, name: str | None = None):
        self.forward = forward
        self.vjp = vjp
        self.name = name or getattr(forward, "__name__", "custom")
        if not self.name.isidentifier() or self.name == "<lambda>":
            self.name = "custom"
        self.op = unique_op_name(self.name)
        register(OpDef(self.op, Kind.CUSTOM, body_shape, lambda dtypes, body, params: body.dtype,
                       run_body, self.rule, keeps_weak=False))

    def defvjp(self, vjp: Callable) -> Callable:
        """Set the VJP rule (usable as a decorator); returns it unchanged."""
        self.vjp = vjp
        return vjp

    def rule(self, g, y, *inputs, body, params):
        if self.vjp is None:
            raise TypeError(f"custom function {self.name!r} has no VJP rule: give one with "
                            f"@{self.name}.defvjp")
        grads = self.vjp(g, y, *inputs)
        grads = [grads] if isinstance(grads, Tensor) or not isinstance(grads, (list, tuple)) \
            else list(grads)
        if len(grads) != len(inputs):
            raise ValueError(f"the VJP rule of {self.name!r} returned {len(grads)} gradient(s) "
                             f"for {len(inputs)} input(s)")
        return grads

    def __call__(self, *args) -> Tensor:
        inputs = [as_tensor(a) for a in args]
        with composite(self.name):
            body = as_tensor(self.forward(*inputs))
        ids = {id(x) for x in inputs}
        for n in toposort([body], stop=ids):
            if n.leaf == "placeholder" and id(n) not in ids:
                raise ValueError(f"custom function {self.name!r}: the forward reads placeholder "
                                 f"{n.name or '(unnamed)'}, which is not one of its arguments; "
                                 "pass it as an argument")
        return apply(self.op, inputs, body=body, params=tuple(inputs))

    def __repr__(self) -> str:
        return f"<staticgrad.custom_vjp {self.name}>"


def custom_vjp(forward: Callable, vjp: Callable | None = None,
               name: str | None = None) -> CustomFunction:
    """A function whose gradient is ``vjp(g, y, *inputs) -> [one gradient per input]`` (a
    Tensor or ``None`` each) instead of the derivative of ``forward``'s ops. ``vjp`` may also be
    given later with the ``.defvjp`` decorator. Gradients of the rule's own nodes are taken
    as usual, so second derivatives follow from what the rule builds.

    >>> import numpy as np, staticgrad as sg
    >>> @sg.custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> @clip_gradient.defvjp
    ... def clip_gradient_vjp(g, y, x):
    ...     return [sg.clip(g, -1.0, 1.0)]
    >>> x = sg.placeholder((3,), name="x")
    >>> g = sg.grad(sg.sum(clip_gradient(x) * 5.0), x)
    >>> sg.function([x], g, backend="numpy")(np.zeros(3)).tolist()
    [1.0, 1.0, 1.0]
    """
    return CustomFunction(forward, vjp, name)


def unique_op_name(name: str) -> str:
    if name not in REGISTRY:
        return name
    k = 2
    while f"{name}_{k}" in REGISTRY:
        k += 1
    return f"{name}_{k}"


def sizes(params: tuple, shapes) -> dict:
    """Call-time sizes of the body, bound from the arguments' concrete shapes."""
    env: dict = {}
    for p, shape in zip(params, shapes):
        for d, n in zip(p.dims, shape):
            s = sh.single_symbol(d)
            if s is not None and sh.is_static(n):
                env[s] = n
    return env


def body_shape(shapes, body: Tensor, params: tuple) -> tuple:
    env = sizes(params, shapes)
    return sh.evaluate(body.dims, env) if env else body.dims


def run_body(*arrays, body: Tensor, params: tuple):
    """The NumPy reference of a custom op: its body evaluated on the argument values."""
    from ..backends.reference import evaluate  # the body runs on the reference

    feeds = {id(p): a for p, a in zip(params, arrays)}
    env = sizes(params, [np.shape(a) for a in arrays])
    values = evaluate(toposort([body], stop=set(feeds)), feeds, env)
    return values[id(body)]


def inline(node: Tensor) -> Tensor:
    """The body of a custom node, rebuilt on the node's current inputs."""
    attrs = dict(node.attrs)
    done = {id(p): x for p, x in zip(attrs["params"], node.inputs)}
    for n in toposort([attrs["body"]], stop=set(done)):
        if id(n) in done:
            continue
        if n.op is None:
            done[id(n)] = n
        else:
            done[id(n)] = apply(n.op, [done[id(i)] for i in n.inputs], **dict(n.attrs))
    return done[id(attrs["body"])]
