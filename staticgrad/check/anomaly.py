"""Anomaly mode: find the node that first made a NaN or inf.

With ``check_finite=True`` or inside ``with detect_anomaly():`` every result of a call is
checked; on a NaN or inf the call is replayed on the NumPy reference and the first node that
turned finite inputs into non-finite values is named, with the user's line. No parameter is
written on such a step.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Sequence

import numpy as np

from ..backends.reference import evaluate
from ..graph import Graph, typed
from ..ops import REGISTRY, Kind
from ..tensor import GradFn, Tensor, toposort

# True inside ``with detect_anomaly():``; functions called there check their results
_anomaly: contextvars.ContextVar = contextvars.ContextVar("detect_anomaly", default=False)


class AnomalyError(FloatingPointError):
    """A call produced NaN or inf; ``.node`` is the node that first made one (``None`` if only
    the compiled code did), and no parameter was updated."""

    def __init__(self, message: str, node: Tensor | None = None):
        super().__init__(message)
        self.node = node



@contextlib.contextmanager
def detect_anomaly():
    """Inside this block every compiled function checks its outputs and updates for NaN/inf
    and raises ``AnomalyError`` naming the node that made them (PyTorch's ``detect_anomaly``).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((2,), name="x")
    >>> f = sg.function([x], sg.log(x), backend="numpy")
    >>> with sg.detect_anomaly():
    ...     f(np.array([1.0, -1.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    staticgrad.check.anomaly.AnomalyError: NaN in log(x) at <doctest ...>:1 ...
    """
    token = _anomaly.set(True)
    try:
        yield
    finally:
        _anomaly.reset(token)


# whether anomaly mode is on in this context: checked on every call, so the contextvar's own
# method (no Python frame)
anomaly_enabled = _anomaly.get


# -- anomaly mode ----------------------------------------------------------------------------
def finite(array: np.ndarray) -> bool:
    array = np.asarray(array)
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def check_results(function, arrays: Sequence[np.ndarray], plan, results: Sequence) -> None:
    """Raise ``AnomalyError`` if a result of this call is NaN or inf (before any update is
    written), naming the node that first produced a non-finite value on the reference."""
    bad = [k for k, r in enumerate(results) if not finite(r)]
    if not bad:
        return
    targets = [function.targets[k] for k in bad]
    feeds = {id(p): a for p, a in zip(function.inputs, arrays)}
    values = evaluate(toposort(targets), feeds, plan.env)
    culprit = first_source(targets, values)
    what = result_name(function, bad[0])
    if culprit is None:
        raise AnomalyError(
            f"{what} is {badness(results[bad[0]])} after this call (backend "
            f"{function.backend!r}), but replaying the call on the NumPy reference gives finite "
            "values everywhere: a difference between the backends. No parameter was updated.")
    labels = Graph(function.targets)
    value = values[id(culprit)]
    raise AnomalyError(
        f"{badness(value)} in {where_made(culprit, labels)}\n"
        f"  {what} is {badness(results[bad[0]])} after this call. Replayed on the NumPy "
        "reference, the first node to turn finite inputs into non-finite values is\n"
        f"  {node_line(culprit, labels)}\n  {element_report(culprit, value, values)}\n"
        "  No parameter was updated.", culprit)


def first_source(targets: Sequence[Tensor], values: dict) -> Tensor | None:
    """Of the non-finite nodes that reach a non-finite target through non-finite values only,
    the first (in topological order) whose inputs are all finite."""
    order = {id(n): k for k, n in enumerate(toposort(targets))}
    sources, seen = [], set()
    stack = [t for t in targets if not finite(values[id(t)])]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        bad = [i for i in node.inputs if not finite(values[id(i)])]
        if bad:
            stack.extend(bad)
        else:
            sources.append(node)
    return min(sources, key=lambda n: order[id(n)], default=None)


def result_name(function, k: int) -> str:
    n = len(function.outputs)
    if k < n:
        name = function.outputs[k].name
        return f"output {k}" + (f" ({name})" if name else "")
    return f"the update of parameter {function.updates[k - n][0].name!r}"


def badness(array) -> str:
    """``"NaN"`` if any element is NaN, else ``"inf"`` or ``"-inf"``."""
    array = np.asarray(array)
    if np.isnan(array).any():
        return "NaN"
    return "inf" if (array == np.inf).any() else "-inf"


def where(node: Tensor) -> str:
    return f"{os.path.basename(node.source[0])}:{node.source[1]}"


def call(node: Tensor, labels: Graph) -> str:
    """``log(x)``: the op applied to its inputs as the listing names them."""
    def label(i):
        return labels.label(i) if any(i is n for n in labels.nodes) else (i.name or i.op)
    return f"{node.op}({', '.join(label(i) for i in node.inputs)})"


def where_made(node: Tensor, labels: Graph) -> str:
    """``LogBackward of log(x) at train.py:12``, ``exp(x) at model.py:8`` or a leaf's role."""
    if node.leaf == "placeholder":
        return f"placeholder {node.name!r} (an argument of this call)"
    if node.leaf == "parameter":
        return f"the value of parameter {node.name!r}"
    if node.leaf == "constant":
        return f"a constant built at {where(node)}"
    if node.origin is not None:
        return f"{GradFn(node.origin).name} of {call(node.origin, labels)} at " \
               f"{where(node.origin)}"
    return f"{call(node, labels)} at {where(node)}"


def node_line(node: Tensor, labels: Graph) -> str:
    if node.op is None:
        return f"{labels.label(node)}: {typed(node)}, built at {where(node)}"
    code, ty, note = labels.row(node)
    return f"{code}  {ty}  built at {note}"


def element_report(node: Tensor, value: np.ndarray, values: dict) -> str:
    """How many elements are bad, and for an elementwise op its operands at the first one."""
    mask = ~np.isfinite(value)
    text = f"{int(mask.sum())} of {value.size} elements are non-finite"
    if node.op is None or REGISTRY[node.op].kind is not Kind.ELEMENTWISE or value.ndim == 0 \
            and not node.inputs:
        return text
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    operands = [np.broadcast_to(values[id(i)], value.shape)[index].item() for i in node.inputs]
    at = f" at index {index}" if index else ""
    return f"{text}; the first{at} comes from {node.op}({', '.join(map(repr, operands))})"
