"""Debugging: anomaly mode, gradient checks, and the ``STATICGRAD_DEBUG`` printouts.

Anomaly mode (``check_finite=True`` or ``with detect_anomaly():``) checks every result of a call;
on a NaN or inf it replays the call on the NumPy reference and names the first node that made
one. ``gradcheck``/``gradgradcheck`` compare symbolic gradients, in float64, with central
differences. ``announce`` prints graph, kernels and source as a function is compiled.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Sequence

import numpy as np

from . import dtypes as dt
from . import reference
from .autodiff import grad
from .graph import Graph, typed
from .ops import REGISTRY, Kind
from .tensor import GradFn, Tensor, apply, as_tensor, constant, derived_from, placeholder, toposort

# True inside ``with detect_anomaly():``; functions called there check their results
_anomaly: contextvars.ContextVar = contextvars.ContextVar("detect_anomaly", default=False)


class AnomalyError(FloatingPointError):
    """A call produced NaN or inf; ``.node`` is the node that first made one (``None`` if only
    the compiled code did), and no parameter was updated."""

    def __init__(self, message: str, node: Tensor | None = None):
        super().__init__(message)
        self.node = node


class GradcheckError(AssertionError):
    """``gradcheck``/``gradgradcheck`` found a gradient that disagrees with finite differences."""


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
    staticgrad.debug.AnomalyError: NaN in log(x) at <doctest ...>:1 ...
    """
    token = _anomaly.set(True)
    try:
        yield
    finally:
        _anomaly.reset(token)


def anomaly_enabled() -> bool:
    return _anomaly.get()


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
    values = reference.evaluate(toposort(targets), feeds, plan.env)
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


# -- STATICGRAD_DEBUG --------------------------------------------------------------------------
def debug_level() -> int:
    """``$STATICGRAD_DEBUG`` as a level: 0 off, 1 graph, 2 + kernels, 3 + generated source."""
    text = os.environ.get("STATICGRAD_DEBUG", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        return 1   # any other non-empty value: switched on


def announce(function) -> None:
    """Print what was just compiled to stderr, as much as ``STATICGRAD_DEBUG`` asks for."""
    level = debug_level()
    if level <= 0:
        return
    out = [f"staticgrad: compiled {function!r}", str(function.graph)]
    nodes = function.stats.get("nodes")
    if nodes:
        out.append("rewrites: " + " -> ".join(f"{name} {count}" for name, count in nodes))
    if level >= 2:
        kernels = function.graph.show_kernels(function.kernels)
        out.append(f"kernels ({len(function.kernels)}):\n{kernels}" if function.kernels else
                   f"kernels: none (backend {function.backend!r} runs node by node)")
    if level >= 3:
        out.append(function.source)
    print("\n".join(out), file=sys.stderr)


# -- gradient checks -----------------------------------------------------------------------------
def gradcheck(outputs, inputs, values, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Compare the symbolic Jacobian of ``outputs`` with respect to ``inputs`` (placeholders or
    parameters) at ``values`` with central differences, both in float64 on the NumPy reference,
    like PyTorch's ``gradcheck``. Returns True, or raises ``GradcheckError`` describing the
    worst element (False instead with ``raise_exception=False``).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((3,), np.float32, name="x")
    >>> sg.gradcheck(sg.sin(x) * x, x, np.array([0.5, 1.0, 2.0]))
    True
    """
    problem = Problem(outputs, inputs, values)
    return problem.check(problem.outputs, "gradcheck", "output", eps, atol, rtol,
                         raise_exception)


def gradgradcheck(outputs, inputs, values, grad_outputs=None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  seed: int = 0) -> bool:
    """``gradcheck`` of the first-order gradients ``grad(outputs, inputs, v)`` (``v``:
    ``grad_outputs``, random normal by default), which checks the second derivatives.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((3,), name="x")
    >>> sg.gradgradcheck(sg.exp(x) * x, x, np.array([0.5, 1.0, 2.0]))
    True
    """
    problem = Problem(outputs, inputs, values)
    ys = problem.forward(problem.outputs)(*problem.values)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [rng.standard_normal(np.shape(y)) for y in ys]
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    cotangents = [placeholder(o.dims, np.float64, name=f"v{k}")
                  for k, o in enumerate(problem.outputs)]
    firsts = grad(problem.outputs, [problem.inputs[k] for k in problem.wrt],
                  grad_outputs=cotangents)
    fixed = list(zip(cotangents, [np.asarray(v, np.float64) for v in grad_outputs]))
    return problem.check(list(firsts), "gradgradcheck", "first-order gradient", eps, atol,
                         rtol, raise_exception, fixed)


class Problem:
    """The graph of ``outputs`` rebuilt in float64 on fresh placeholders for ``inputs``."""

    def __init__(self, outputs, inputs, values):
        self.single = isinstance(inputs, Tensor)
        originals = [inputs] if self.single else list(inputs)
        values = [values] if self.single else list(values)
        if len(values) != len(originals):
            raise ValueError(f"gradcheck: {len(values)} values for {len(originals)} inputs")
        outs = [outputs] if not isinstance(outputs, (list, tuple)) else list(outputs)
        outs = [as_tensor(o) for o in outs]
        for k, x in enumerate(originals):
            if not isinstance(x, Tensor) or x.leaf not in ("placeholder", "parameter"):
                raise TypeError(f"gradcheck: input {k} must be a placeholder or a parameter, "
                                f"got {x!r}")
        for k, o in enumerate(outs):
            if not dt.is_float(o.dtype):
                raise TypeError(f"gradcheck: output {k} ({typed(o)}, built at {where(o)}) is "
                                "not floating-point, so it has no gradient")
        self.originals = originals
        self.inputs = [placeholder(x.dims, wide(x.dtype), name=x.name) for x in originals]
        self.values = [np.array(v, dtype=wide(x.dtype)) for v, x in zip(values, originals)]
        self.wrt = [k for k, x in enumerate(originals) if dt.is_float(x.dtype)]
        self.outputs = widen(outs, dict(zip(map(id, originals), self.inputs)))

    def forward(self, outputs: list, fixed: Sequence = ()):
        from .function import function  # function.py imports this module (anomaly hook)
        return function(self.inputs + [p for p, _ in fixed], outputs, backend="numpy")

    def check(self, outputs: list, what: str, noun: str, eps: float, atol: float, rtol: float,
              raise_exception: bool, fixed: Sequence = ()) -> bool:
        analytic = self.analytic(outputs, fixed)
        numeric = self.numeric(outputs, fixed, eps)
        worst, failures, total = None, 0, 0
        for (k, j), a in analytic.items():
            n = numeric[k, j]
            excess = np.abs(a - n) / (atol + rtol * np.abs(n))
            failures += int((excess > 1).sum())
            total += excess.size
            if excess.size and (worst is None or excess.max() > worst[0]):
                e = np.unravel_index(int(np.argmax(excess)), excess.shape)
                worst = (float(excess.max()), k, j, e, float(a[e]), float(n[e]))
        if not failures:
            return True
        if not raise_exception:
            return False
        _, k, j, (e_out, e_in), a, n = worst
        out, x = outputs[k], self.originals[self.wrt[j]]
        out_index = np.unravel_index(e_out, self.shapes[k]) if self.shapes[k] else ()
        in_index = np.unravel_index(e_in, x.shape and self.values[self.wrt[j]].shape) \
            if self.values[self.wrt[j]].ndim else ()
        name = x.name or f"input {self.wrt[j]}"
        raise GradcheckError(
            f"{what}: the Jacobian of {noun} {k} ({typed(out)}, built at {where(out)}) with "
            f"respect to {name!r} ({typed(x)}) disagrees with finite differences in {failures} "
            f"of {total} entries. Worst: d {noun} {k}{list(map(int, out_index))} / "
            f"d {name}{list(map(int, in_index))}: analytic {a!r}, numeric {n!r}, abs error "
            f"{abs(a - n):.3g}, rel error {abs(a - n) / max(abs(n), 1e-300):.3g} "
            f"(allowed: atol={atol:g} + rtol={rtol:g} * |numeric|, eps={eps:g})")

    def analytic(self, outputs: list, fixed: Sequence) -> dict:
        """``(output k, wrt j) -> d out_k / d in_j`` (rows: output elements), one vector-
        Jacobian product per output element with a one-hot cotangent."""
        fixed_values = [v for _, v in fixed]
        ys = self.forward(outputs, fixed)(*self.values, *fixed_values)
        self.shapes = [np.shape(y) for y in ys]
        wrt = [self.inputs[j] for j in self.wrt]
        vs = [placeholder(o.dims, np.float64, name=f"cotangent{k}") for k, o in enumerate(outputs)]
        from .function import function  # function.py imports this module (anomaly hook)
        vjp = function(self.inputs + [p for p, _ in fixed] + vs,
                       list(grad(outputs, wrt, grad_outputs=vs)), backend="numpy")
        zeros = [np.zeros(s) for s in self.shapes]
        jac = {(k, j): np.zeros((int(np.prod(self.shapes[k])), self.values[w].size))
               for k in range(len(outputs)) for j, w in enumerate(self.wrt)}
        for k in range(len(outputs)):
            for e in range(int(np.prod(self.shapes[k]))):
                seeds = [z.copy() for z in zeros]
                seeds[k].reshape(-1)[e] = 1.0
                for j, g in enumerate(vjp(*self.values, *fixed_values, *seeds)):
                    jac[k, j][e] = np.ravel(g)
        return jac

    def numeric(self, outputs: list, fixed: Sequence, eps: float) -> dict:
        """The same Jacobians by central differences (columns: input elements)."""
        f = self.forward(outputs, fixed)
        fixed_values = [v for _, v in fixed]
        jac = {(k, j): np.zeros((int(np.prod(self.shapes[k])), self.values[w].size))
               for k in range(len(outputs)) for j, w in enumerate(self.wrt)}
        for j, w in enumerate(self.wrt):
            flat = self.values[w].reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + eps
                hi = f(*self.values, *fixed_values)
                flat[i] = old - eps
                lo = f(*self.values, *fixed_values)
                flat[i] = old
                for k in range(len(outputs)):
                    jac[k, j][:, i] = (np.ravel(hi[k]) - np.ravel(lo[k])) / (2 * eps)
        return jac


def wide(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt.is_float(dtype) else np.dtype(dtype)


def widen(outputs: Sequence[Tensor], replace: dict) -> list:
    """``outputs`` rebuilt with float64 wherever they had a narrower float: ``replace`` maps
    ids of leaves to their stand-ins; other parameters become float64 constants of their
    current values. Rebuilt nodes keep their user lines and backward origins."""
    done: dict = dict(replace)
    for n in toposort(outputs):
        if id(n) in done:
            continue
        if n.leaf == "placeholder":
            raise ValueError(f"gradcheck: the outputs depend on placeholder {n.name!r} (built "
                             f"at {where(n)}), which is not among the inputs")
        if n.leaf is not None:
            keep = n.leaf == "constant" and n.dtype == wide(n.dtype)
            done[id(n)] = n if keep else constant(np.asarray(n.value, wide(n.dtype)))
            continue
        attrs = {k: wide(v) if isinstance(v, np.dtype) else v for k, v in n.attrs}
        with derived_from(n):
            done[id(n)] = apply(n.op, [done[id(i)] for i in n.inputs], **attrs)
    return [done[id(o)] for o in outputs]
