"""Run stage: ``sg.function`` turns outputs (and parameter updates) into a callable.

It checks the graph once (every placeholder listed, update shapes and dtypes), hands it to a
backend, and on each call checks the arguments against a plan cached per shape signature,
runs, and only then writes parameter updates, so a call that fails changes nothing.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, setitem

import numpy as np

from . import backends, rewrite
from . import dtypes as dt
from . import shapes as sh
from .check import anomaly
from .graph import Graph, gc_paused
from .inspect import timed
from .inspect.listing import announce
from .ops import REGISTRY, broadcast_to, cast
from .tensor import Parameter, Tensor, as_tensor, location, toposort

# C functions: a call path made of them gives a signal handler no point to run in between
ACQUIRE = type(threading.Lock()).acquire
RELEASE = type(threading.Lock()).release
VALUE = attrgetter("_value")


@dataclass
class Plan:
    """Everything about one shape signature of the arguments, worked out on its first call
    (the backend adds its buffers on the first run)."""
    env: dict      # call-time size symbol -> int
    shapes: dict   # id(node) -> concrete shape
    prepared: bool = False
    called: bool = False    # the backend times the first call (compiles happen there)
    # the backend's fast path, made after the first call: ``steady(*arrays)`` returns what
    # ``program.run(arrays, plan)`` would
    steady: object = None


class Function:
    """A compiled graph: call it with arrays for its placeholders, in order.

    Inspect it through ``.graph`` (after rewrites), ``.kernels``, ``.source``, ``explain()``
    and ``.stats``: for the numba backend, ``stats["nodes"]`` counts nodes through each
    rewrite pass, ``stats["rules"]`` counts the rules that fired, ``stats["seconds"]`` times
    each stage (rewrite, schedule, codegen, import, first call) and ``stats["cache"]`` says
    whether the first call loaded machine code from the disk cache ("hit") or compiled it.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None,), name="x")
    >>> f = sg.function([x], sg.sum(x * x), backend="numpy")
    >>> float(f(np.array([1.0, 2.0])))
    5.0
    """

    @gc_paused
    def __init__(self, inputs, outputs, updates=None, backend: str = "numba",
                 check_finite: bool = False, tiered: bool | None = None):
        inputs = check_inputs(inputs)
        single = not isinstance(outputs, (list, tuple))
        outputs = [as_tensor(o) for o in ([outputs] if single else outputs)]
        updates = check_updates(updates or [])
        targets = outputs + [value for _, value in updates]
        check_closed(targets, inputs)
        # the pipeline, the same for every backend: rewrite, then the backend compiles
        seconds: dict = {}
        with timed(seconds, "rewrite"):
            simplified, stats = rewrite.simplify(targets)
        stats["seconds"] = seconds
        if tiered is None:   # STATICGRAD_TIERED=1 makes every numba function tiered
            tiered = backend == "numba" and os.environ.get("STATICGRAD_TIERED") == "1"
        if tiered and backend != "numba":
            raise ValueError(f"function: tiered=True starts a numba function on the NumPy "
                             f"reference; backend={backend!r} has no compiled tier")
        self.assemble(inputs, outputs, updates, backend, check_finite, single,
                      Graph(simplified), stats, tiered)

    def assemble(self, inputs: list, outputs: list, updates: list, backend: str,
                 check_finite: bool, single: bool, graph: Graph, stats: dict,
                 tiered: bool = False) -> None:
        """Compile a rewritten ``graph`` (its outputs: ``outputs``' then the update values')
        with ``backend``: what ``__init__`` does after the rewrites, and what
        ``sg.load`` does with a saved graph."""
        # an unknown backend fails before any work
        module = backends.get(backend, tiered)
        self.inputs, self.outputs, self.updates = inputs, outputs, updates
        self.single, self.backend, self.check_finite = single, backend, bool(check_finite)
        self.tiered = bool(tiered)
        # what the user built (before rewrites): anomaly reports replay and name these
        self.targets: list = outputs + [value for _, value in updates]
        self.graph = graph
        self.program = module.compile(self.inputs, self.graph, stats)
        self.stats: dict = self.program.stats
        self._plans: dict = {}
        self._dtypes = [p.dtype for p in self.inputs]
        # parameters whose locks a call may need, in one global order (no deadlock between two
        # functions that take the same locks)
        self._parameters = sorted({id(n): n for n in toposort(self.targets)
                                   if n.leaf == "parameter"}.values(), key=lambda p: p.serial)
        self._updated = [param for param, _ in self.updates]
        for param in self._updated:
            object.__setattr__(param, "updated", True)
        self._call, self._unchecked = fast_call(self, checked=True), fast_call(self, checked=False)
        announce(self)

    @property
    def parameters(self) -> list:
        """The parameters this function reads or updates (``sg.load`` makes new ones: here
        is where to find them), in the order they were made.

        >>> import numpy as np, staticgrad as sg
        >>> w = sg.parameter(np.ones(2), name="w")
        >>> [p.name for p in sg.function([], sg.sum(w * 2.0), backend="numpy").parameters]
        ['w']
        """
        return list(self._parameters)

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Whether every call from now on runs compiled: for a tiered function, wait up to
        ``timeout`` seconds (``None``: as long as it takes) for its compiled program and the
        kernels of every shape it was called with. A failed compile raises here (the calls
        carry on with the NumPy reference). Other functions are always compiled: ``True``.

        >>> import numpy as np, staticgrad as sg
        >>> x = sg.placeholder((None,), name="x")
        >>> f = sg.function([x], sg.sum(x * x), tiered=True)
        >>> float(f(np.array([1.0, 2.0])))      # the NumPy reference, or the kernels if ready
        5.0
        >>> f.wait_compiled()
        True
        """
        return self.program.wait(timeout) if self.tiered else True

    @property
    def kernels(self) -> list:
        """The fused loop groups, in the order they run."""
        return self.program.kernels

    @property
    def source(self) -> str:
        """The generated Python/Numba module."""
        return self.program.source

    def prepare_call(self, args: tuple) -> tuple:
        """``(arrays, plan)`` for a call: arguments checked and cast (aligned, writeable,
        C-contiguous, of each placeholder's dtype), and the plan of their shapes (made on the
        first call with them)."""
        if len(args) != len(self.inputs):
            names = ", ".join(repr(p.name or f"input {k}") for k, p in enumerate(self.inputs))
            raise TypeError(f"this function takes {len(self.inputs)} argument(s) ({names}), "
                            f"got {len(args)}")
        # a call costs microseconds: the common case (right arrays) takes three tests an argument
        arrays, shapes = args, []
        for a, d in zip(args, self._dtypes):
            if type(a) is not np.ndarray or a.dtype is not d or not a.flags.carray:
                arrays = [coerce(a, p) for a, p in zip(args, self.inputs)]
                shapes = [a.shape for a in arrays]
                break
            shapes.append(a.shape)
        key = tuple(shapes)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = make_plan(self.graph.nodes, self.inputs, key)
        return arrays, plan

    def __call__(self, *args):
        return self._call(args)

    def general_call(self, args: tuple):
        """Any call: the arguments checked and converted, their plan found (or made), the
        parameters' locks taken, the updates written. ``__call__`` takes this path for all but
        the common case (see ``fast_call``)."""
        arrays, plan = self.prepare_call(args)
        return self.execute(arrays, plan)

    def unchecked(self, *args):
        """Call without checking or converting the arguments, for a hot loop whose inputs are
        known to be right: each an aligned, writeable, C-contiguous ``np.ndarray`` of its
        placeholder's dtype. A shape not seen before is checked as in a normal call; any
        other wrong argument gives wrong results or crashes the process.

        >>> import numpy as np, staticgrad as sg
        >>> x = sg.placeholder((None,), name="x")
        >>> f = sg.function([x], sg.sum(x * x), backend="numpy")
        >>> a = np.array([1.0, 2.0])
        >>> float(f(a)), float(f.unchecked(a))
        (5.0, 5.0)
        """
        return self._unchecked(args)

    def unchecked_call(self, args: tuple):
        """``unchecked`` beyond its common case: a plan found by the shapes alone (a shape not
        seen before is checked as in a normal call), the locks taken, the updates written."""
        plan = self._plans.get(tuple([a.shape for a in args]))
        if plan is None:
            return self.general_call(args)
        return self.execute(args, plan)

    def execute(self, arrays, plan):
        """Run checked arrays with their plan: outputs, then the updates, written only once
        the whole call has succeeded."""
        # A call reads parameters and then overwrites some in place: calls that update a
        # parameter are serialized with every call that reads or updates it, so each update
        # is applied exactly once and no call sees half of one. Parameters nobody updates
        # need no lock.
        locks = [p.lock for p in self._parameters if p.updated] if self._parameters else ()
        if not locks:
            return self.compute(arrays, plan)
        # Python runs a signal handler (a KeyboardInterrupt) only between bytecodes, never
        # inside a C call: taking the locks, writing the parameters and releasing the locks
        # are each one C call, so an interrupt cannot leave a lock taken or a parameter
        # half-written. ``release`` is made first: it releases whatever ``held`` holds.
        held: list = []
        release = map(RELEASE, held)
        try:
            held.extend(filter(ACQUIRE, locks))
            return self.compute(arrays, plan)
        finally:
            deque(release, 0)   # runs the iterator to its end (maxlen 0: keeps nothing)

    def compute(self, arrays, plan):
        """One call's results; the updates written (see ``execute`` for the locks)."""
        steady = plan.steady   # the backend's fast path, once the plan has run
        results = steady(*arrays) if steady is not None else self.program.run(arrays, plan)
        if self.check_finite or anomaly.anomaly_enabled():
            anomaly.check_results(self, arrays, plan, results)  # raises before any update
        if self.updates:
            n = len(self.outputs)
            # all or nothing, even against an interrupt: one C call writes every parameter
            deque(map(setitem, map(VALUE, self._updated), repeat(...), results[n:]), 0)
            results = results[:n]
        return results[0] if self.single else results

    def to_dot(self) -> str:
        """Graphviz DOT of the rewritten graph, each fused kernel drawn as a cluster."""
        return self.graph.to_dot(self.kernels)

    def render(self, path: str) -> str:
        """Draw ``to_dot()`` to ``path`` (``.svg`` or ``.png``) with Graphviz's ``dot``."""
        from .inspect.dot import render
        return render(self.to_dot(), path)

    def explain(self, *args, repeat: int = 20, show: bool = True):
        """Time calls on ``args`` and each fused kernel; print (``show``) and return a
        ``Report`` putting each kernel's time next to its floor: its bytes at this machine's
        bandwidth, its matrix products at the BLAS peak (both measured once per process). Each
        row also says how many threads its kernel ran on (a loop's chunks, a product's BLAS
        threads).
        Calling it runs the function, so updates are applied ``repeat`` times and more.

        >>> import numpy as np, staticgrad as sg
        >>> x = sg.placeholder((None,), np.float32, name="x")
        >>> f = sg.function([x], sg.sum(sg.exp(x)))
        >>> report = f.explain(np.ones(1000, np.float32), repeat=3, show=False)
        >>> [k.name for k in report.kernels], report.kernels[0].read
        (['k0'], 4000)
        """
        from .inspect.explain import explain
        report = explain(self, args, repeat)
        if show:
            print(report)
        return report

    def __repr__(self) -> str:
        names = ", ".join(p.name or "?" for p in self.inputs)
        return (f"<staticgrad.Function ({names}) -> {len(self.outputs)} output(s), "
                f"{len(self.updates)} update(s), backend={self.backend!r}"
                f"{', tiered' if self.tiered else ''}>")


def function(inputs, outputs, updates=None, backend: str = "numba",
             check_finite: bool = False, tiered: bool | None = None) -> Function:
    """Compile ``outputs`` (a tensor, or a list) of the placeholders ``inputs`` into a callable.

    ``updates=[(parameter, new_value), ...]`` writes new parameter values after each call, all
    computed from the values before it. ``backend`` is ``"numba"`` (fused, compiled loops) or
    ``"numpy"`` (the node-by-node reference). ``check_finite=True`` is anomaly mode: a call whose
    results hold NaN or inf raises ``AnomalyError`` naming the node that made it, and updates
    nothing (``with sg.detect_anomaly():`` turns it on for every function).

    ``tiered=True`` (or ``STATICGRAD_TIERED=1`` for every numba function) returns at once and
    answers calls with the NumPy reference while the kernels compile, or load from the disk
    cache, on a background thread; each shape switches to them when they are ready (results
    agree to rounding). ``wait_compiled()`` waits for that; ``stats["reference calls"]``
    counts the calls the reference answered.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((), name="x")
    >>> w = sg.parameter(1.0, name="w")
    >>> step = sg.function([x], (x - w) ** 2, updates=[(w, w + 1.0)], backend="numpy")
    >>> float(step(3.0)), float(w.value)
    (4.0, 2.0)
    """
    return Function(inputs, outputs, updates, backend, check_finite, tiered)


def fast_call(f: Function, checked: bool):
    """``f``'s calls (``checked``) or unchecked calls, with the common case written out for its
    arguments: each an aligned, writeable, C-contiguous array of its placeholder's dtype (not
    tested when unchecked), of shapes called before, no parameter that some function updates
    (no locks), no anomaly mode: straight to the plan's steady path (W3: 2.1 -> 1.2 us a
    checked call). Anything else goes through ``general_call`` (``unchecked_call``)."""
    params = f._parameters
    general = f.general_call if checked else f.unchecked_call
    if f.updates or f.check_finite or len(params) > 8:
        return general
    n = len(f.inputs)
    names = [f"a{k}" for k in range(n)]
    tests = [f"type({a}) is ndarray and {a}.dtype is D{k} and {a}.flags.carray"
             for k, a in enumerate(names) if checked]
    tests += [f"not P{j}.updated" for j in range(len(params))]
    unpack = [f"        {', '.join(names)}{',' if n == 1 else ''} = args"] if n else []
    lines = ["def call(args):",
             f"    if len(args) == {n}:",
             *unpack,
             f"        if {' and '.join(tests) or 'True'}:",
             f"            plan = plans.get(({''.join(a + '.shape, ' for a in names)}))",
             "            if plan is not None:",
             "                steady = plan.steady",
             "                if steady is not None and not anomaly():",
             f"                    return steady({', '.join(names)}){'[0]' if f.single else ''}",
             "    return general(args)"]
    namespace = {"ndarray": np.ndarray, "plans": f._plans, "anomaly": anomaly.anomaly_enabled,
                 "general": general}
    namespace.update({f"D{k}": d for k, d in enumerate(f._dtypes)})
    namespace.update({f"P{j}": p for j, p in enumerate(params)})
    # one file name for all, as the steady code: CPython keeps every file name for good
    exec(compile("\n".join(lines) + "\n", "<staticgrad call>", "exec"), namespace)
    return namespace["call"]


def check_inputs(inputs) -> list:
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for k, p in enumerate(inputs):
        if not isinstance(p, Tensor) or p.leaf != "placeholder":
            raise TypeError(f"function: input {k} must be a placeholder, got {p!r}")
    if len({id(p) for p in inputs}) != len(inputs):
        raise ValueError("function: a placeholder is listed twice among the inputs")
    return inputs


def check_updates(updates) -> list:
    out, seen = [], set()
    for pair in updates:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"function: an update must be a (parameter, value) pair, got {pair!r}")
        param, value = pair
        if not isinstance(param, Parameter):
            raise TypeError(f"function: only parameters can be updated, got {param!r}")
        if id(param) in seen:
            raise ValueError(f"function: parameter {param.name!r} is updated twice")
        seen.add(id(param))
        value = as_tensor(value)
        dt.check_castable(value.dtype, param.dtype, f"function: update of {param.name!r}")
        if value.dims != param.dims:
            try:
                value = broadcast_to(value, param.dims)
            except ValueError:
                raise ValueError(f"function: the update of parameter {param.name!r} has shape "
                                 f"{sh.show(value.dims)}, the parameter {sh.show(param.dims)}"
                                 ) from None
        out.append((param, cast(value, param.dtype)))
    return out


def check_closed(targets: Sequence[Tensor], inputs: Sequence[Tensor]) -> None:
    """Every placeholder, and every call-time size, the targets need must come from ``inputs``."""
    listed = {id(p) for p in inputs}
    known = set().union(*(sh.symbols_in(p.dims) for p in inputs)) if inputs else set()
    for node in toposort(targets):
        if node.leaf == "placeholder" and id(node) not in listed:
            raise ValueError(f"function: the outputs depend on placeholder "
                             f"{node.name or '(unnamed)'} {sh.show(node.dims)} (built at "
                             f"{location(node.source)}), which is not among the inputs")
        missing = sh.symbols_in(node.dims) | sh.symbols_in(tuple(v for _, v in node.attrs))
        missing -= known
        if missing:
            raise ValueError(f"function: the outputs depend on the call-time size "
                             f"{', '.join(map(repr, missing))} of a placeholder that is not "
                             f"among the inputs (node {node.op or node.leaf} at "
                             f"{location(node.source)})")


def coerce(arg, p: Tensor) -> np.ndarray:
    """The argument as a C-contiguous array of the placeholder's dtype (casting as NumPy's
    same_kind)."""
    try:
        array = np.asarray(arg)
    except (ValueError, TypeError) as err:   # a ragged list, an object NumPy cannot hold
        raise type(err)(f"placeholder {p.name!r}: the argument is not an array ({err})") \
            from None
    if array.dtype != p.dtype:
        if not np.can_cast(array.dtype, p.dtype, casting="same_kind"):
            raise TypeError(f"placeholder {p.name!r}: got {array.dtype} data, which does not "
                            f"cast safely (same_kind) to {p.dtype}")
        array = array.astype(p.dtype)
    # not np.ascontiguousarray: it turns a 0-d array into a 1-d one. Aligned and writeable
    # too: a read-only array is another type to Numba (a compile of its own)
    return array if array.flags.carray else np.require(array, requirements="CAW")


def make_plan(nodes: Sequence[Tensor], placeholders: Sequence[Tensor], arg_shapes) -> Plan:
    """Bind call-time sizes from the arguments and check every node's shape rule on them."""
    env: dict = {}
    for p, shape in zip(placeholders, arg_shapes):
        if len(shape) != p.ndim:
            raise ValueError(f"placeholder {p.name!r}: expected {p.ndim} dimensions "
                             f"{sh.show(p.dims)}, got shape {shape}")
        for axis, (d, n) in enumerate(zip(p.dims, shape)):
            if sh.is_static(d):
                if d != n:
                    raise ValueError(f"placeholder {p.name!r}: axis {axis} has size {n}, "
                                     f"expected {d} (shape {sh.show(p.dims)}, got {shape})")
                continue
            (sym,), _ = d.terms[0]
            if env.setdefault(sym, n) != n:
                raise ValueError(f"placeholder {p.name!r}: axis {axis} has size {n}, but size "
                                 f"{sym!r} is {env[sym]} from another argument")
    shapes = {}
    for node in nodes:
        expected = sh.evaluate(node.dims, env)
        if node.op is not None:
            check_node(node, [shapes[id(i)] for i in node.inputs], expected, env)
        shapes[id(node)] = expected
    return Plan(env, shapes)


def check_node(node: Tensor, in_shapes: list, expected: tuple, env: dict) -> None:
    opdef = REGISTRY[node.op]
    try:
        actual = tuple(opdef.shape(in_shapes, **{k: sh.evaluate(v, env) for k, v in node.attrs}))
        if actual != expected:
            raise ValueError(f"gives shape {actual} where the graph expects {expected}")
        if opdef.broadcasts:
            for dim, n, m in sh.dynamic_broadcast_violations([i.dims for i in node.inputs],
                                                             node.dims, env):
                raise ValueError(f"size {dim!r} is {n} at call time and would broadcast to "
                                 f"{m}; the graph was built assuming it is not broadcast "
                                 f"(declare that size as 1 to broadcast it)")
    except (ValueError, TypeError) as err:
        operands = ", ".join(str(s) for s in in_shapes)
        # the call-time sizes involved, by the placeholder axes they came from ("x.0" is axis
        # 0 of placeholder x): which arguments disagree
        used = sorted(sh.symbols_in(tuple(i.dims for i in node.inputs)), key=repr)
        sizes = ", ".join(f"{s!r}={env[s]}" for s in used if s in env)
        raise ValueError(f"{node.op}: {err}; operand shapes {operands} at this call"
                         f"{f' (sizes {sizes})' if sizes else ''} — built at "
                         f"{location(node.source)}") from None
