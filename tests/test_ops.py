"""Every op, checked against NumPy: values, build-time shape/dtype, VJPs and second-order VJPs.

A *case* is a small graph (usually one op call) with its inputs and an independent NumPy
expectation. Cases for elementwise primitives and reductions are generated from ``REGISTRY``, so
a new op of those families is tested without edits; movement ops, matmul and the composites get
hand-written cases. All cases of a dtype go into ONE graph (outputs, first- and second-order
VJPs), compiled once per (backend, dtype); each small test reads its case's slice of the results.
Finite differences run on the float64 NumPy reference (``backend="numpy"``), never compiled.
"""

from __future__ import annotations

import functools
import inspect
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import grad_tol, numerical_vjp, tol

import staticgrad as sg
from staticgrad import shapes as sh
from staticgrad.ops import (
    REGISTRY,
    Kind,
    apply,
    composite,
    conv,
    elementwise,
    indexing,
    linalg,
    movement,
    nn,
    promote,
    random,
    reduce,
)
from staticgrad.tensor import Tensor, toposort

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]


# -- input samplers: rng -> float64 array (the graph's float dtype), or ints / bools ------------
def uniform(rng, shape, lo=-2.0, hi=2.0, avoid=(), gap=0.15) -> np.ndarray:
    """Uniform in [lo, hi], at least ``gap`` away from each point in ``avoid`` (kinks, poles)."""
    x = np.array(rng.uniform(lo, hi, shape), dtype=np.float64)
    for _ in range(1000):
        bad = np.zeros(x.shape, bool)
        for p in avoid:
            bad |= np.abs(x - p) < gap
        if not bad.any():
            return x
        x[bad] = rng.uniform(lo, hi, int(bad.sum()))
    raise AssertionError("sampler cannot avoid the kinks")


def U(*shape, lo=-2.0, hi=2.0, avoid=()) -> Callable:
    return lambda rng: uniform(rng, shape, lo, hi, avoid)


def Nz(*shape, lo=-2.0, hi=2.0) -> Callable:
    """Uniform, away from 0 (the kink of abs/sign/relu, the pole of 1/x)."""
    return U(*shape, lo=lo, hi=hi, avoid=(0.0,))


def distinct(*shape, lo=-2.0, hi=2.0) -> Callable:
    """Values at least (hi-lo)/(2n) apart, so max/min have no ties within a finite difference."""
    def sample(rng):
        n = int(np.prod(shape, dtype=np.int64))
        spots = rng.permutation(n) + 0.5 + rng.uniform(-0.25, 0.25, n)
        return (lo + (hi - lo) * spots / n).reshape(shape)
    return sample


def grid(*shape, lo=-2.0, hi=2.0) -> Callable:
    """Values from five grid points: ties and zeros happen (for comparisons and logic)."""
    return lambda rng: rng.choice(np.linspace(lo, hi, 5), size=shape)


def ints(*shape, lo=0, hi=5, dtype=np.int64) -> Callable:
    return lambda rng: np.asarray(rng.integers(lo, hi, shape), dtype=dtype)


def bools(*shape) -> Callable:
    return lambda rng: np.asarray(rng.random(shape) < 0.5)


def separated(*shapes, lo=-2.0, hi=2.0, consts=(), gap=0.1, ranges=None) -> Callable:
    """Operands (arrays of ``shapes`` and the fixed ``consts``) that differ everywhere by at
    least ``gap`` after broadcasting (ties are the kinks of maximum/minimum/clip), and are away
    from 0 when the range holds it. ``ranges`` gives each array its own (lo, hi)."""
    ranges = ranges or [(lo, hi)] * len(shapes)

    def sample(rng):
        for _ in range(1000):
            xs = [uniform(rng, s, a, b, (0.0,) if a < 0 < b else ())
                  for s, (a, b) in zip(shapes, ranges)]
            operands = xs + [np.asarray(c, dtype=np.float64) for c in consts]
            if all(np.all(np.abs(a - b) >= gap) for k, a in enumerate(operands)
                   for b in operands[k + 1:]):
                return xs
        raise AssertionError("sampler cannot separate the operands")
    return sample


def const(value) -> Callable:
    return lambda rng: np.array(value)


def representable(a: np.ndarray) -> np.ndarray:
    """Float64 values that float32 holds exactly, so both dtypes compute at the same point."""
    return a.astype(np.float32).astype(np.float64) if a.dtype == F64 else a


# -- cases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    build: Callable                 # staticgrad, on the input tensors -> one Tensor
    expect: Callable | None         # NumPy, on the input arrays (None: no independent oracle)
    sample: Callable                # rng -> input arrays (float64 ones follow the graph's dtype)
    keep64: tuple = ()              # float inputs that stay float64 in a float32 graph
    dynamic: dict = field(default_factory=dict)  # input -> placeholder shape with None sizes
    grad: object = "fd"             # "fd", None (not differentiable here) or exact (v, *xs)->grads
    second: bool = True             # check second-order VJPs against FD of the first order


CASES: dict[str, Case] = {}


def case(id: str, build, expect, *specs, sample=None, **options) -> None:
    assert id not in CASES, f"duplicate case id {id}"
    if sample is None:
        sample = lambda rng: [s(rng) if callable(s) else np.asarray(s) for s in specs]
    CASES[id] = Case(id, build, expect, sample, **options)


def zeros_grad(v, *xs):
    return [np.zeros_like(x) for x in xs if x.dtype.kind == "f"]


def show(shape) -> str:
    return "x".join(map(str, shape)) if shape else "()"


# -- generated from REGISTRY: elementwise primitives ----------------------------------------------
# An independent NumPy spelling of each elementwise primitive (the OpDef's own ``numpy`` is what
# is under test). A new op without an entry here fails test_registry_ops_covered by name.
EXPECT = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "neg": np.negative, "exp": np.exp,
    "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs,
    "sign": np.sign, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: x * (x > 0),
    "stop_gradient": lambda x: x.copy(), "isfinite": np.isfinite,
    "logical_not": np.logical_not, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or,
    "logaddexp": np.logaddexp,
}
# the public functions whose names differ from the op's short name
ALIASES = {"sub": "subtract", "mul": "multiply", "div": "divide", "pow": "power",
           "neg": "negative", "lt": "less", "le": "less_equal", "gt": "greater",
           "ge": "greater_equal", "eq": "equal", "ne": "not_equal"}
# elementwise primitives that need more than operands (hand-written cases below)
HANDMADE = {"cast": "takes the target dtype", "where": "takes a boolean condition",
            "numel": "reads its input's sizes, not its elements",
            "bernoulli": "takes an integer key, a shape and a probability"}


def public(op: str) -> Callable:
    """The user-facing function building primitive ``op``; ``apply`` if it has none."""
    name = ALIASES.get(op, op)
    if hasattr(sg, name):
        return lambda *xs: getattr(sg, name)(*xs)
    return lambda *xs: apply(op, promote(*xs))


def arity(opdef) -> int:
    if isinstance(opdef.numpy, np.ufunc):
        return opdef.numpy.nin
    return len(inspect.signature(opdef.numpy).parameters)


def elementwise_cases(op: str) -> None:
    opdef = REGISTRY[op]
    n = arity(opdef)
    lo, hi = opdef.domain
    predicate = not np.issubdtype(opdef.dtype([F64] * n), np.floating)
    # no VJP rule means a zero gradient (stop_gradient, sign), whatever finite differences say
    grad = "fd" if opdef.vjp is not None else zeros_grad
    expect, build = EXPECT.get(op), public(op)
    if n == 1:
        for shape in [(3, 4), ()]:
            spec = grid(*shape, lo=lo, hi=hi) if predicate else \
                U(*shape, lo=lo, hi=hi, avoid=(0.0,) if lo < 0 < hi else ())
            case(f"{op}[{show(shape)}]", build, expect, spec, grad=grad)
        return
    assert n == 2, f"no generated cases for {n}-ary elementwise op {op!r}"
    c = round(lo + 0.7 * (hi - lo), 1)  # a weak Python scalar operand, inside the domain
    variants = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 4), (3, 1)),
                ((), (3, 4)), ((3, 4), ())]
    for a, b in variants:
        sample = (lambda rng, a=a, b=b: [grid(*a, lo=lo, hi=hi)(rng),
                                         grid(*b, lo=lo, hi=hi)(rng)]) \
            if predicate else separated(a, b, lo=lo, hi=hi)
        case(f"{op}[{show(a)},{show(b)}]", build, expect, sample=sample, grad=grad)
    scalar_sample = (lambda rng: [grid(3, 4, lo=lo, hi=hi)(rng)]) if predicate \
        else separated((3, 4), lo=lo, hi=hi, consts=(c,))
    case(f"{op}[3x4,{c}]", lambda x, c=c: build(x, c),
         expect and (lambda x, c=c: expect(x, c)), sample=scalar_sample, grad=grad)
    case(f"{op}[{c},3x4]", lambda x, c=c: build(c, x),
         expect and (lambda x, c=c: expect(c, x)), sample=scalar_sample, grad=grad)


# -- generated from REGISTRY: reductions -----------------------------------------------------------
EXPECT_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod,
                 "count_nonzero": lambda x, axis, keepdims: np.sum(x != 0, axis=axis,
                                                                   keepdims=keepdims)}


def reduction_cases(op: str) -> None:
    fn = getattr(sg, op, None)
    build = (lambda axis, keepdims: lambda x: getattr(sg, op)(x, axis=axis, keepdims=keepdims)) \
        if fn is not None else \
        (lambda axis, keepdims: lambda x: apply(op, [x], axes=sh.normalize_axes(axis, x.ndim),
                                                keepdims=keepdims))
    ref = EXPECT_REDUCE.get(op)
    variants = [((2, 3, 4), axis, keepdims) for axis in [None, 0, 1, -1, (0, 2), (-1, 0)]
                for keepdims in [False, True]] + [((5,), None, False), ((5,), 0, True),
                                                  ((), None, False)]
    for shape, axis, keepdims in variants:
        expect = ref and (lambda x, axis=axis, keepdims=keepdims, ref=ref:
                          ref(x, axis=axis, keepdims=keepdims))
        case(f"{op}[{show(shape)},axis={axis},keepdims={keepdims}]", build(axis, keepdims),
             expect, distinct(*shape))


for _name, _opdef in REGISTRY.items():
    if _opdef.kind is Kind.ELEMENTWISE and _name not in HANDMADE:
        elementwise_cases(_name)
    elif _opdef.kind is Kind.REDUCE:
        reduction_cases(_name)


# -- hand-written: elementwise edge cases, operators and dtype rules -------------------------------
case("operator+", lambda x, y: x + y, lambda x, y: x + y, U(3, 4), U(4))
case("operator-", lambda x, y: x - y, lambda x, y: x - y, U(3, 1), U(4))
case("operator*", lambda x, y: x * y, lambda x, y: x * y, U(3, 4), U())
case("operator/", lambda x, y: x / y, lambda x, y: x / y, U(3, 4), Nz(4))
case("operator-unary", lambda x: -x, lambda x: -x, U(3, 4))
case("operator+unary", lambda x: +x, lambda x: +x, U(3, 4))
case("operator-abs", lambda x: abs(x), np.abs, Nz(3, 4))
case("operator-rsub", lambda x: 2.0 - x, lambda x: 2.0 - x, U(3, 4))
case("operator-rtruediv", lambda x: 1.5 / x, lambda x: 1.5 / x, Nz(3, 4))
case("operator**int", lambda x: x ** 2, lambda x: x ** 2, U(3, 4))
case("operator**int3-negative", lambda x: x ** 3, lambda x: x ** 3, U(3, 4, lo=-2.0, hi=-0.1))
case("operator**half", lambda x: x ** 0.5, lambda x: x ** 0.5, U(3, 4, lo=0.2, hi=3.0))
case("operator-rpow", lambda x: 2.0 ** x, lambda x: 2.0 ** x, U(3, 4))
case("operator**tensor", lambda x, y: x ** y, lambda x, y: x ** y,
     U(3, 4, lo=0.2, hi=2.0), U(4, lo=-1.5, hi=1.5))
# at x = 0 central differences step into negative bases (NaN): the exact gradients instead
case("power[zero-base]", lambda x, y: sg.power(x, y), np.power,
     const([0.0, 0.5, 1.0, 2.0]), U(4, lo=2.2, hi=3.0),
     grad=lambda v, x, y: [v * y * x ** (y - 1),
                           v * x ** y * np.log(np.where(x == 0, 1.0, x))])
case("operator-ndarray+tensor", lambda x: np.arange(4.0) + x, lambda x: np.arange(4.0) + x,
     U(3, 4))
case("operator-ndarray*tensor-f32", lambda x: np.arange(4, dtype=np.float32) * x,
     lambda x: np.arange(4, dtype=np.float32) * x, U(3, 4))
case("weak-float", lambda x: x * 2.5, lambda x: x * 2.5, U(3, 4))
case("weak-int", lambda x: x + 3, lambda x: x + 3, U(3, 4))
case("weak-bool", lambda x: x * True, lambda x: x * True, U(3, 4))
case("weak-constant", lambda x: x * sg.constant(2.5), lambda x: x * 2.5, U(3, 4))
case("strong-numpy-scalar-f64", lambda x: x * np.float64(2.5), lambda x: x * np.float64(2.5),
     U(3, 4))
case("strong-numpy-scalar-f32", lambda x: x * np.float32(2.5), lambda x: x * np.float32(2.5),
     U(3, 4))
case("strong-constant-f64", lambda x: x + sg.constant(np.ones(4)), lambda x: x + np.ones(4),
     U(3, 4))
case("promote-f32+f64", lambda x, y: x + y, lambda x, y: x + y, U(3, 4), U(4), keep64=(1,))
case("int-plus-weak-float", lambda i: i + 2.5, lambda i: i + 2.5, ints(3, 4))
case("int32-plus-weak-int", lambda i: i * 3, lambda i: i * 3, ints(3, 4, dtype=np.int32))
case("int32-plus-int64", lambda i, j: i + j, lambda i, j: i + j, ints(3, 4, dtype=np.int32),
     ints(4))
case("int-times-float", lambda i, x: i * x, lambda i, x: i * x, ints(4, dtype=np.int64), U(3, 4))
case("compare<", lambda x, y: x < y, lambda x, y: x < y, grid(3, 4), grid(4))
case("compare<=", lambda x, y: x <= 0.0, lambda x, y: x <= 0.0, grid(3, 4), grid(4))
case("compare>", lambda x, y: x > y, lambda x, y: x > y, grid(3, 4), grid(3, 1))
case("compare>=", lambda x, y: x >= y, lambda x, y: x >= y, grid(3, 4), grid())
case("compare==", lambda x, y: x == y, lambda x, y: x == y, grid(3, 4), grid(4))
case("compare!=", lambda x, y: x != y, lambda x, y: x != y, grid(3, 4), grid(4))
case("compare-int", lambda i, j: i < j, lambda i, j: i < j, ints(3, 4), ints(4))
case("logical_and[bool]", lambda a, b: sg.logical_and(a, b), np.logical_and, bools(3, 4),
     bools(4))
case("logical_or[bool]", lambda a, b: sg.logical_or(a, b), np.logical_or, bools(3, 1), bools(4))
case("logical_not[bool]", lambda a: sg.logical_not(a), np.logical_not, bools(3, 4))
case("isfinite[nonfinite]", lambda x: sg.isfinite(x), np.isfinite,
     const([0.0, np.inf, -np.inf, np.nan, -1.5]))
case("sigmoid[wide]", lambda x: sg.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)),
     U(3, 4, lo=-40.0, hi=40.0))
case("maximum[ties]", lambda a, b: sg.maximum(a, b), np.maximum,
     const([1.0, 2.0, -3.0, 0.5]), const([1.0, 0.0, -3.0, 1.5]),
     grad=lambda v, a, b: [v * np.where(a > b, 1, np.where(a == b, 0.5, 0)),
                           v * np.where(b > a, 1, np.where(a == b, 0.5, 0))], second=False)
case("minimum[ties]", lambda a, b: sg.minimum(a, b), np.minimum,
     const([1.0, 2.0, -3.0, 0.5]), const([1.0, 0.0, -3.0, 1.5]),
     grad=lambda v, a, b: [v * np.where(a < b, 1, np.where(a == b, 0.5, 0)),
                           v * np.where(b < a, 1, np.where(a == b, 0.5, 0))], second=False)
case("relu[at-zero]", lambda x: sg.relu(x), lambda x: np.maximum(x, 0),
     const([-1.0, 0.0, 2.0]), grad=lambda v, x: [v * (x > 0)], second=False)
case("abs[at-zero]", lambda x: sg.abs(x), np.abs, const([-1.0, 0.0, 2.0]),
     grad=lambda v, x: [v * np.sign(x)], second=False)
case("stop_gradient-times-x", lambda x: sg.stop_gradient(x) * x, lambda x: x * x, U(3, 4),
     grad=lambda v, x: [v * x], second=False)
case("where", lambda c, x, y: sg.where(c, x, y), np.where, bools(3, 4), U(4), U())
case("where[bool-broadcast]", lambda c, x, y: sg.where(c, x, y), np.where, bools(3, 1),
     U(3, 4), U(4))
case("where[weak]", lambda c, x: sg.where(c, 1.5, x), lambda c, x: np.where(c, 1.5, x),
     bools(3, 4), U(3, 4))
case("where[relu-pattern]", lambda x: sg.where(x > 0, x, 0.0),
     lambda x: np.where(x > 0, x, 0.0), Nz(3, 4))
case("where[f32,f64]", lambda c, x, y: sg.where(c, x, y), np.where, bools(3, 4), U(4), U(4),
     keep64=(2,))
case("cast[f64]", lambda x: sg.cast(x, np.float64), lambda x: x.astype(np.float64), U(3, 4),
     grad=lambda v, x: [v], second=False)
case("cast[f32]", lambda x: sg.cast(x, np.float32), lambda x: x.astype(np.float32), U(3, 4),
     grad=lambda v, x: [v], second=False)
case("cast[astype-f32-then-back]", lambda x: x.astype(np.float32).astype(x.dtype) * x,
     lambda x: x.astype(np.float32).astype(x.dtype) * x, U(3, 4),
     grad=lambda v, x: [2 * v * x], second=False)
case("cast[int32]", lambda x: sg.cast(x, np.int32), lambda x: x.astype(np.int32),
     U(3, 4, lo=-5.0, hi=5.0))
case("cast[int-to-float]", lambda i: sg.cast(i, np.float32), lambda i: i.astype(np.float32),
     ints(3, 4))
case("cast[bool-to-float]", lambda b: sg.cast(b, np.float64), lambda b: b.astype(np.float64),
     bools(3, 4))
case("cast[bool-times-x]", lambda x: sg.cast(x > 0, x.dtype) * x,
     lambda x: (x > 0).astype(x.dtype) * x, Nz(3, 4))

# -- hand-written: reductions -------------------------------------------------------------------
case("sum[int32]", lambda i: sg.sum(i, axis=1), lambda i: np.sum(i, axis=1),
     ints(3, 4, dtype=np.int32))
case("sum[bool]", lambda b: sg.sum(b), np.sum, bools(3, 4))
case("max[int]", lambda i: sg.max(i, axis=0), lambda i: np.max(i, axis=0), ints(3, 4))
case("prod[int]", lambda i: sg.prod(i, axis=-1), lambda i: np.prod(i, axis=-1),
     ints(3, 4, lo=-3, hi=4))
case("max[ties]", lambda x: sg.max(x, axis=1), lambda x: np.max(x, axis=1),
     const([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 0.0, 4.0]]),
     grad=lambda v, x: [np.where(x == x.max(1, keepdims=True), 1.0, 0.0)
                        / np.sum(x == x.max(1, keepdims=True), 1, keepdims=True)
                        * v[:, None]], second=False)
case("min[ties]", lambda x: sg.min(x), np.min, const([[1.0, -3.0], [-3.0, 0.0]]),
     grad=lambda v, x: [v * (x == -3.0) / 2], second=False)
case("prod[one-zero]", lambda x: sg.prod(x, axis=1), lambda x: np.prod(x, axis=1),
     const([[1.5, 0.0, -2.0, 0.5], [0.7, 1.1, -0.9, 1.3]]))
case("prod[two-zeros]", lambda x: sg.prod(x, axis=0, keepdims=True),
     lambda x: np.prod(x, axis=0, keepdims=True),
     const([[0.0, 1.5, 0.0], [0.0, -0.5, 1.2], [2.0, 0.0, 0.0]]))
case("method.sum", lambda x: x.sum(axis=1), lambda x: x.sum(axis=1), U(3, 4))
case("method.mean", lambda x: x.mean(), lambda x: x.mean(), U(3, 4))
case("method.max", lambda x: x.max(axis=0, keepdims=True),
     lambda x: x.max(axis=0, keepdims=True), distinct(3, 4))
case("method.min", lambda x: x.min(-1), lambda x: x.min(-1), distinct(3, 4))
case("method.prod", lambda x: x.prod(axis=(0, 1)), lambda x: x.prod(axis=(0, 1)),
     U(2, 3, 2, lo=0.5, hi=1.5))
for _axis in [None, 0, -1, (0, 2)]:
    for _keep in [False, True]:
        case(f"mean[axis={_axis},keepdims={_keep}]",
             lambda x, a=_axis, k=_keep: sg.mean(x, axis=a, keepdims=k),
             lambda x, a=_axis, k=_keep: np.mean(x, axis=a, keepdims=k), U(2, 3, 4))
        case(f"logsumexp[axis={_axis},keepdims={_keep}]",
             lambda x, a=_axis, k=_keep: sg.logsumexp(x, axis=a, keepdims=k),
             lambda x, a=_axis, k=_keep: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
             U(2, 3, 4))
for _axis, _ddof in [(None, 0), (0, 0), (-1, 1), ((0, 2), 0), (1, 2)]:
    case(f"var[axis={_axis},ddof={_ddof}]", lambda x, a=_axis, d=_ddof: sg.var(x, a, ddof=d),
         lambda x, a=_axis, d=_ddof: np.var(x, axis=a, ddof=d), U(2, 3, 4))
    case(f"std[axis={_axis},ddof={_ddof}]", lambda x, a=_axis, d=_ddof: sg.std(x, a, ddof=d),
         lambda x, a=_axis, d=_ddof: np.std(x, axis=a, ddof=d), U(2, 3, 4))
case("var[keepdims]", lambda x: sg.var(x, axis=1, keepdims=True),
     lambda x: np.var(x, axis=1, keepdims=True), U(3, 4))
case("std[keepdims]", lambda x: sg.std(x, axis=0, keepdims=True),
     lambda x: np.std(x, axis=0, keepdims=True), U(3, 4))
case("mean[int]", lambda i: sg.mean(i, axis=0), lambda i: np.mean(i, axis=0), ints(3, 4))
case("var[int]", lambda i: sg.var(i), np.var, ints(3, 4))
case("mean[dynamic-axis]", lambda x: sg.mean(x, axis=0), lambda x: np.mean(x, axis=0),
     U(5, 3), dynamic={0: (None, 3)}, second=False)
case("numel[dynamic]", lambda x: sg.numel(x), lambda x: np.asarray(x.size, np.int64), U(5, 3),
     dynamic={0: (None, 3)})
case("numel[dynamic-axes,f32]", lambda x: sg.numel(x, (0, 1), np.float32) * 1.0,
     lambda x: np.asarray(x.shape[0] * x.shape[1], np.float32), U(5, 3, 2),
     dynamic={0: (None, None, 2)})
case("numel[static]", lambda x: sg.numel(x, 1), lambda x: np.asarray(3, np.int64), U(5, 3))

# -- hand-written: composites ---------------------------------------------------------------------
case("square", lambda x: sg.square(x), np.square, U(3, 4))
case("logsumexp[large]", lambda x: sg.logsumexp(x, axis=1),
     lambda x: x.max(1) + np.log(np.sum(np.exp(x - x.max(1, keepdims=True)), axis=1)),
     U(3, 4, lo=-900.0, hi=900.0))
case("logsumexp[-inf-row]", lambda x: sg.logsumexp(x, axis=1),
     lambda x: np.array([-np.inf, np.log(np.exp(1.0) + np.exp(2.0))], x.dtype),
     const([[-np.inf, -np.inf], [1.0, 2.0]]), grad=None)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis, keepdims=True))


for _axis in [-1, 0, 1]:
    case(f"softmax[axis={_axis}]", lambda x, a=_axis: sg.softmax(x, axis=a),
         lambda x, a=_axis: np_softmax(x, a), U(2, 3, 4))
    case(f"log_softmax[axis={_axis}]", lambda x, a=_axis: sg.log_softmax(x, axis=a),
         lambda x, a=_axis: np_log_softmax(x, a), U(2, 3, 4))
case("softmax[default-axis]", lambda x: sg.softmax(x), np_softmax, U(3, 5))
case("softmax[large]", lambda x: sg.softmax(x), np_softmax, U(3, 5, lo=-500.0, hi=500.0),
     second=False)
case("log_softmax[large]", lambda x: sg.log_softmax(x), np_log_softmax,
     U(3, 5, lo=-500.0, hi=500.0))
case("clip[min]", lambda x: sg.clip(x, min=0.3), lambda x: np.clip(x, 0.3, None),
     sample=separated((3, 4), consts=(0.3,)))
case("clip[max]", lambda x: sg.clip(x, max=-0.4), lambda x: np.clip(x, None, -0.4),
     sample=separated((3, 4), consts=(-0.4,)))
case("clip[both]", lambda x: sg.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7),
     sample=separated((3, 4), consts=(-0.5, 0.7)))
case("clip[tensor-bounds]", lambda x, lo, hi: sg.clip(x, lo, hi), np.clip,
     sample=separated((3, 4), (3, 1), (4,), ranges=[(-2.0, 2.0), (-1.5, -0.2), (0.2, 1.5)]))
case("clip[crossed-bounds]", lambda x, lo, hi: sg.clip(x, lo, hi), np.clip,
     sample=separated((3, 4), (3, 1), (4,)))
case("one_hot", lambda i: sg.one_hot(i, 4),
     lambda i: (i[:, None] == np.arange(4)).astype(np.float64), ints(5, hi=4))
case("one_hot[f32,2d]", lambda i: sg.one_hot(i, 3, np.float32),
     lambda i: np.eye(3, dtype=np.float32)[i], ints(2, 4, hi=3))
case("one_hot[times-logp]", lambda x, i: sg.sum(sg.one_hot(i, 4, x.dtype) * x, axis=1),
     lambda x, i: x[np.arange(3), i], U(3, 4), ints(3, hi=4))
for _axis in [0, 1, -1]:
    case(f"stack[axis={_axis}]", lambda x, y, z, a=_axis: sg.stack([x, y, z], axis=a),
         lambda x, y, z, a=_axis: np.stack([x, y, z], axis=a), U(3, 4), U(3, 4), U(3, 4))
case("zeros_like", lambda x: sg.zeros_like(x), np.zeros_like, U(3, 4))
case("zeros_like[int32]", lambda x: sg.zeros_like(x, np.int32),
     lambda x: np.zeros_like(x, np.int32), U(3, 4))
case("ones_like", lambda x: sg.ones_like(x) * x, lambda x: np.ones_like(x) * x, U(3, 4))
case("ones_like[bool]", lambda x: sg.ones_like(x, np.bool_), lambda x: np.ones_like(x, bool),
     U(3, 4))

# -- hand-written: movement ----------------------------------------------------------------------
case("reshape", lambda x: sg.reshape(x, (4, 3)), lambda x: np.reshape(x, (4, 3)), U(3, 4))
case("reshape[-1]", lambda x: sg.reshape(x, -1), lambda x: np.reshape(x, -1), U(3, 4))
case("reshape[infer-middle]", lambda x: sg.reshape(x, (4, -1, 2)),
     lambda x: np.reshape(x, (4, -1, 2)), U(2, 3, 4))
case("reshape[method]", lambda x: x.reshape(2, 6), lambda x: x.reshape(2, 6), U(12))
case("reshape[to-0d]", lambda x: sg.reshape(x, ()), lambda x: np.reshape(x, ()), U(1, 1))
case("reshape[from-0d]", lambda x: sg.reshape(x, (1, 1, 1)),
     lambda x: np.reshape(x, (1, 1, 1)), U())
case("transpose", lambda x: sg.transpose(x), np.transpose, U(2, 3, 4))
case("transpose[axes]", lambda x: sg.transpose(x, (1, 0, 2)),
     lambda x: np.transpose(x, (1, 0, 2)), U(2, 3, 4))
case("transpose[negative-axes]", lambda x: sg.transpose(x, (-1, 0, 1)),
     lambda x: np.transpose(x, (-1, 0, 1)), U(2, 3, 4))
case("transpose[.T]", lambda x: x.T, lambda x: x.T, U(3, 4))
case("transpose[method]", lambda x: x.transpose(2, 0, 1), lambda x: x.transpose(2, 0, 1),
     U(2, 3, 4))
case("swapaxes", lambda x: sg.swapaxes(x, 0, 2), lambda x: np.swapaxes(x, 0, 2), U(2, 3, 4))
case("swapaxes[negative]", lambda x: sg.swapaxes(x, -1, 0), lambda x: np.swapaxes(x, -1, 0),
     U(2, 3, 4))
case("broadcast_to[row]", lambda x: sg.broadcast_to(x, (3, 4)),
     lambda x: np.broadcast_to(x, (3, 4)), U(4))
case("broadcast_to[middle]", lambda x: sg.broadcast_to(x, (2, 3, 4)),
     lambda x: np.broadcast_to(x, (2, 3, 4)), U(3, 1))
case("broadcast_to[scalar]", lambda x: sg.broadcast_to(x, (2, 3)),
     lambda x: np.broadcast_to(x, (2, 3)), U())
case("expand_dims[0]", lambda x: sg.expand_dims(x, 0), lambda x: np.expand_dims(x, 0), U(3, 4))
case("expand_dims[-1]", lambda x: sg.expand_dims(x, -1), lambda x: np.expand_dims(x, -1),
     U(3, 4))
case("expand_dims[tuple]", lambda x: sg.expand_dims(x, (0, 2)),
     lambda x: np.expand_dims(x, (0, 2)), U(3, 4))
case("squeeze", lambda x: sg.squeeze(x), np.squeeze, U(1, 3, 1, 4))
case("squeeze[axis]", lambda x: sg.squeeze(x, 2), lambda x: np.squeeze(x, 2), U(1, 3, 1, 4))
case("squeeze[tuple]", lambda x: sg.squeeze(x, (0, -2)), lambda x: np.squeeze(x, (0, -2)),
     U(1, 3, 1, 4))
for _axis, (_a, _b) in [(0, ((2, 3), (4, 3))), (1, ((3, 2), (3, 4))), (-1, ((2, 3, 1), (2, 3, 2)))]:
    case(f"concatenate[axis={_axis}]", lambda x, y, a=_axis: sg.concatenate([x, y], axis=a),
         lambda x, y, a=_axis: np.concatenate([x, y], axis=a), U(*_a), U(*_b))
case("concatenate[three]", lambda x, y, z: sg.concatenate([x, y, z]),
     lambda x, y, z: np.concatenate([x, y, z]), U(2), U(3), U(1))
case("concatenate[f32,f64]", lambda x, y: sg.concatenate([x, y]),
     lambda x, y: np.concatenate([x, y]), U(2), U(3), keep64=(1,))
case("concatenate[repeat]", lambda x: sg.concatenate([x, x * 2.0], axis=1),
     lambda x: np.concatenate([x, x * 2.0], axis=1), U(2, 3))

# getitem: ints, slices, None, Ellipsis, negative steps, integer arrays
GETITEM = {
    "int": (1,), "negative-int": (-1,), "slice": (slice(1, 3),),
    "reverse": (slice(None, None, -1),),
    "step-2": (slice(None, None, 2),), "negative-step-2": (slice(None, None, -2),),
    "negative-bounds": (slice(-3, -1),), "backwards": (slice(3, 0, -1),),
    "newaxis": (None,), "ellipsis-int": (Ellipsis, 1), "int-ellipsis-newaxis": (1, Ellipsis, None),
    "slice-newaxis-int": (slice(None), None, 2), "int-int": (2, -3),
    "array": (np.array([0, 2, 2]),), "list-negative": ([0, -1],),
    "slice-array": (slice(None), [4, 0, -2]), "array-2d": (np.array([[0, 1], [3, 3]]),),
    "arrays-broadcast": (np.arange(3)[:, None], np.array([0, 4])),
    "slice-then-array": (slice(1, None), np.array([1, 1, 3])),
}
for _name, _index in GETITEM.items():
    case(f"getitem[{_name}]", lambda x, i=_index: x[i], lambda x, i=_index: x[i], U(4, 5))
case("getitem[3d-ellipsis-step]", lambda x: x[..., ::2], lambda x: x[..., ::2], U(2, 3, 5))
case("getitem[3d-mixed]", lambda x: x[1, :, -1], lambda x: x[1, :, -1], U(2, 3, 5))
case("getitem[3d-reverse-middle]", lambda x: x[:, ::-1, 1:4], lambda x: x[:, ::-1, 1:4],
     U(2, 3, 5))
case("getitem[function]", lambda x: sg.getitem(x, (slice(None), 1)), lambda x: x[:, 1], U(4, 5))
case("getitem[labels]", lambda x, i: x[np.arange(4), i], lambda x, i: x[np.arange(4), i],
     U(4, 5), ints(4, lo=-5, hi=5))
case("getitem[logp-labels]", lambda x, i: -sg.mean(sg.log_softmax(x)[np.arange(4), i]),
     lambda x, i: -np.mean(np_log_softmax(x, -1)[np.arange(4), i]), U(4, 5), ints(4))
# (an output whose size is known only at call time cannot take an ndarray cotangent: reduce it)
case("getitem[dynamic-slice]", lambda x: sg.sum(x[1:, ::-1] * x[:-1], axis=0),
     lambda x: np.sum(x[1:, ::-1] * x[:-1], axis=0), U(4, 3), dynamic={0: (None, 3)}, second=False)
case("getitem[dynamic-negative]", lambda x: x[-2:], lambda x: x[-2:], U(4, 3),
     dynamic={0: (None, 3)})
case("flip[axis=1]", lambda x: sg.flip(x, axis=1), lambda x: np.flip(x, 1), U(3, 4))
case("flip[all]", lambda x: sg.flip(x), np.flip, U(2, 3, 4))
case("flip[negative-axes]", lambda x: sg.flip(x, (-1, 0)), lambda x: np.flip(x, (-1, 0)),
     U(2, 3, 4))
case("flip[dynamic]", lambda x: sg.sum(sg.flip(x, 0) * x, axis=0),
     lambda x: np.sum(np.flip(x, 0) * x, axis=0), U(4, 3), dynamic={0: (None, 3)},
     second=False)
case("flip[fused-slice]", lambda x: sg.flip(x, 1)[:, 1:] * 2.0, lambda x: np.flip(x, 1)[:, 1:] * 2,
     U(3, 4))
# exp(700) overflows float64: the value and first derivative must not (the second derivative
# at |a - b| ~ 100 is below float32's resolution of a - y there, so it is not compared)
case("logaddexp[large]", lambda a, b: sg.logaddexp(a, b), np.logaddexp, U(3, lo=600, hi=700),
     U(3, lo=600, hi=700), second=False)
case("count_nonzero[zeros]", lambda x: sg.count_nonzero(x, axis=1),
     lambda x: np.count_nonzero(x, axis=1), grid(3, 5))
case("cumsum[axis=0]", lambda x: sg.cumsum(x, axis=0), lambda x: np.cumsum(x, 0), U(3, 4))
case("cumsum[axis=-1]", lambda x: sg.cumsum(x, axis=-1), lambda x: np.cumsum(x, -1), U(2, 3, 4))
case("cumsum[flat]", lambda x: sg.cumsum(x), np.cumsum, U(3, 4))
case("cumsum[int32]", lambda i: sg.cumsum(i, axis=1), lambda i: np.cumsum(i, 1),
     ints(3, 4, dtype=np.int32))
case("cumsum[dynamic]", lambda x: sg.sum(sg.cumsum(x, 0) ** 2, axis=0),
     lambda x: np.sum(np.cumsum(x, 0) ** 2, axis=0), U(4, 3), dynamic={0: (None, 3)},
     second=False)


def np_rnn(x, w, b):
    h = np.zeros(x.shape[1:2] + w.shape[1:], x.dtype)
    for xt in x:
        h = np.tanh(xt @ w + h * b)
    return h


case("scan[rnn]", lambda x, w, b: sg.scan(lambda h, xt: (sg.tanh(xt @ w + h * b), None),
                                          sg.constant(np.zeros((2, 3), x.dtype)), x)[0],
     np_rnn, U(5, 2, 3, lo=-1, hi=1), U(3, 3, lo=-1, hi=1), U(3, lo=-1, hi=1))


def np_two_carries(x):
    a, b, ys = np.ones(3, x.dtype), np.zeros(3, x.dtype), []
    for xt in x:
        a, b = a * np.sin(xt), b + a
        ys.append(a * b)
    return np.concatenate([a + b, np.stack(ys).ravel()])


case("scan[two-carries,ys]", lambda x: (lambda r: sg.concatenate([r[0][0] + r[0][1],
                                                                  r[1].reshape(-1)]))(
    sg.scan(lambda c, xt: ((c[0] * sg.sin(xt), c[1] + c[0]), c[0] * sg.sin(xt) * (c[1] + c[0])),
            (sg.constant(np.ones(3, x.dtype)), sg.constant(np.zeros(3, x.dtype))), x)),
     np_two_carries, U(4, 3))


def np_reverse(x, w):
    h, ys = np.ones(3, x.dtype), [None] * len(x)
    for t in reversed(range(len(x))):
        h = np.sin(h * w + x[t])
        ys[t] = h * x[t]
    return np.concatenate([h, np.stack(ys).ravel()])


case("scan[reverse,ys]", lambda x, w: (lambda r: sg.concatenate([r[0], r[1].reshape(-1)]))(
    sg.scan(lambda h, xt: (sg.sin(h * w + xt), sg.sin(h * w + xt) * xt),
            sg.constant(np.ones(3, x.dtype)), x, reverse=True)),
     np_reverse, U(4, 3), U(3))


def np_bce(x, t):
    p = 1 / (1 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


case("cross_entropy", lambda x, i: sg.cross_entropy(x, i),
     lambda x, i: -np.mean(np_log_softmax(x, -1)[np.arange(4), i]), U(4, 5), ints(4, hi=5))
case("cross_entropy[none,large-logits]", lambda x, i: sg.cross_entropy(x * 100.0, i, "none"),
     lambda x, i: -np_log_softmax(x * 100.0, -1)[np.arange(3), i], distinct(3, 4), ints(3, hi=4),
     grad=None)   # values only: no overflow at logits of +-200 (gradients: the case above)
case("binary_cross_entropy_with_logits", lambda x, t: sg.binary_cross_entropy_with_logits(x, t),
     lambda x, t: np.mean(np_bce(x, t)), Nz(3, 4), U(3, 4, lo=0.0, hi=1.0))
case("binary_cross_entropy_with_logits[sum]",
     lambda x, t: sg.binary_cross_entropy_with_logits(x, t, reduction="sum"),
     lambda x, t: np.sum(np_bce(x, t)), Nz(5), U(5, lo=0.0, hi=1.0))
case("argmax[axis=1]", lambda x: sg.argmax(x, axis=1), lambda x: np.argmax(x, axis=1),
     U(3, 5), grad=zeros_grad)
case("argmax[flat,ties]", lambda x: sg.argmax(x), np.argmax, grid(3, 4), grad=zeros_grad)
case("argmin[axis=0,ties]", lambda x: sg.argmin(x, axis=0), lambda x: np.argmin(x, axis=0),
     grid(4, 3), grad=zeros_grad)
case("norm", lambda x: sg.norm(x), np.linalg.norm, U(3, 4))
case("norm[axis=1]", lambda x: sg.norm(x, axis=1), lambda x: np.linalg.norm(x, axis=1),
     U(3, 4))
case("norm[ord=1]", lambda x: sg.norm(x, 1, axis=0), lambda x: np.linalg.norm(x, 1, axis=0),
     Nz(3, 4))
case("norm[ord=inf]", lambda x: sg.norm(x, np.inf), lambda x: np.linalg.norm(x, np.inf),
     distinct(6))
case("split[sections]", lambda x: sg.concatenate(
    [p * float(k + 1) for k, p in enumerate(sg.split(x, 3, axis=1))], axis=0),
     lambda x: np.concatenate([p * (k + 1) for k, p in enumerate(np.split(x, 3, axis=1))]),
     U(2, 6))
case("split[indices]", lambda x: sg.concatenate(
    [sg.sum(p, axis=0) * float(k + 1) for k, p in enumerate(sg.split(x, [1, 4]))]),
     lambda x: np.concatenate([np.sum(p, axis=0) * (k + 1)
                               for k, p in enumerate(np.split(x, [1, 4]))]), U(6, 2))
case("pad", lambda x: sg.pad(x, ((1, 0), (2, 3))) * 2.0,
     lambda x: np.pad(x, ((1, 0), (2, 3))) * 2.0, U(2, 3))
case("pad[value]", lambda x: sg.pad(x, 1, constant_values=0.5) ** 2,
     lambda x: np.pad(x, 1, constant_values=0.5) ** 2, U(3, 2))


def np_fori(x):
    for i in range(4):
        x = np.sin(x) * 1.5 + i * 0.1
    return x


case("fori_loop", lambda x: sg.fori_loop(0, 4, lambda i, v: sg.sin(v) * 1.5
                                         + sg.cast(i, v.dtype) * 0.1, x),
     np_fori, U(3))
case("take[flat]", lambda x: sg.take(x, np.array([0, 11, 5, 5, -1])),
     lambda x: np.take(x, np.array([0, 11, 5, 5, -1])), U(3, 4))
case("take[axis=0]", lambda x: sg.take(x, [2, 0, 2], axis=0),
     lambda x: np.take(x, [2, 0, 2], axis=0), U(3, 4))
case("take[axis=1,2d-indices]", lambda x: sg.take(x, np.array([[1, 3], [0, 0]]), axis=1),
     lambda x: np.take(x, np.array([[1, 3], [0, 0]]), axis=1), U(3, 4))
case("take[axis=-1,scalar-index]", lambda x: sg.take(x, np.array(2), axis=-1),
     lambda x: np.take(x, 2, axis=-1), U(3, 4))
case("take[indices-placeholder]", lambda x, i: sg.take(x, i, axis=0),
     lambda x, i: np.take(x, i, axis=0), U(3, 4), ints(5, lo=-3, hi=3))


def np_untake(g, idx, axis, size):
    """The adjoint of take as a one-hot contraction (independent of np.add.at)."""
    hot = (np.asarray(idx).reshape(-1)[:, None] % size == np.arange(size)).astype(g.dtype)
    gm = np.moveaxis(g, list(range(axis, axis + np.ndim(idx))), list(range(np.ndim(idx))))
    gm = gm.reshape((-1,) + gm.shape[np.ndim(idx):])
    return np.moveaxis(np.tensordot(hot, gm, axes=(0, 0)), 0, axis)


case("untake[axis=0]", lambda g: apply("untake", [g, sg.constant(np.array([2, 0, 2, 4]))],
                                       axis=0, size=5),
     lambda g: np_untake(g, np.array([2, 0, 2, 4]), 0, 5), U(4, 3))
case("untake[axis=1,2d]", lambda g, i: apply("untake", [g, i], axis=1, size=4),
     lambda g, i: np_untake(g, i, 1, 4), U(3, 2, 2, 5), ints(2, 2, lo=-4, hi=4))
case("unslice", lambda g: apply("unslice", [g], index=((1, 3, 1), (None, None, 1)),
                                shape=(4, 3)),
     lambda g: np.pad(g, ((1, 1), (0, 0))), U(2, 3))
case("unslice[negative-step]", lambda g: apply("unslice", [g], index=((None, None, -2),),
                                               shape=(5,)),
     lambda g: np.stack([g[2], np.zeros_like(g[0]), g[1], np.zeros_like(g[0]), g[0]]), U(3))

# -- hand-written: matmul and dot ----------------------------------------------------------------
MATMUL = [((3, 4), (4, 5)), ((4,), (4,)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)),
          ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 5)),
          ((2, 3, 4), (4,)), ((1, 4), (4, 1))]
for _a, _b in MATMUL:
    case(f"matmul[{show(_a)},{show(_b)}]", lambda x, y: sg.matmul(x, y), np.matmul,
         U(*_a), U(*_b))
case("operator@", lambda x, y: x @ y, lambda x, y: x @ y, U(3, 4), U(4, 2))
case("operator-ndarray@tensor", lambda x: np.arange(6.0).reshape(2, 3) @ x,
     lambda x: np.arange(6.0).reshape(2, 3) @ x, U(3, 4))
DOT = [((4,), (4,)), ((3, 4), (4, 5)), ((3, 4), (4,)), ((4,), (4, 5)), ((2, 3, 4), (4,)),
       ((2, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((), (3, 4)), ((3, 4), ())]
for _a, _b in DOT:
    case(f"dot[{show(_a)},{show(_b)}]", lambda x, y: sg.dot(x, y), np.dot, U(*_a), U(*_b))
# a Python scalar is weak in every op (np.dot itself would make 2.5 a float64 array)
case("dot[weak-scalar]", lambda x: sg.dot(2.5, x), lambda x: 2.5 * x, U(3, 4))


# -- hand-written: indexing helpers, convolutions, pooling, normalization, dropout -----------------
case("take_along_axis[labels]", lambda x, i: sg.take_along_axis(x, i, axis=1),
     lambda x, i: np.take_along_axis(x, i, axis=1), U(4, 5), ints(4, 1, hi=5))
case("take_along_axis[axis=0,repeats]", lambda x, i: sg.take_along_axis(x, i, axis=0),
     lambda x, i: np.take_along_axis(x, i, axis=0), U(3, 4), const([[0, 2, 2, 1], [0, 0, 2, 1]]))
# repeated rows: the scatter-add adds each row's gradients
case("embedding[repeats]", lambda i, w: sg.embedding(i, w), lambda i, w: w[i],
     const([[1, 3, 1], [0, 1, 3]]), U(4, 2))


def np_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """A direct convolution (cross-correlation), one kernel offset at a time."""
    n = w.ndim - 2
    s, p, d = ((v,) * n if isinstance(v, int) else v for v in (stride, padding, dilation))
    x = np.pad(x, ((0, 0), (0, 0)) + tuple((q, q) for q in p))
    out_sizes = [(x.shape[2 + a] - d[a] * (w.shape[2 + a] - 1) - 1) // s[a] + 1
                 for a in range(n)]
    per_in, per_out = x.shape[1] // groups, w.shape[0] // groups
    out = np.zeros((x.shape[0], w.shape[0], *out_sizes), x.dtype)
    for k in np.ndindex(*w.shape[2:]):
        at = tuple(slice(k[a] * d[a], k[a] * d[a] + s[a] * (out_sizes[a] - 1) + 1, s[a])
                   for a in range(n))
        for g in range(groups):
            xs = x[(slice(None), slice(g * per_in, (g + 1) * per_in)) + at]
            ws = w[(slice(g * per_out, (g + 1) * per_out), slice(None)) + k]
            out[:, g * per_out:(g + 1) * per_out] += np.einsum("nc...,oc->no...", xs, ws)
    return out if b is None else out + b.reshape((-1,) + (1,) * n)


def np_pool(x, k, stride, padding, reduce, fill):
    xp = np.pad(x, ((0, 0),) * (x.ndim - 2) + ((padding, padding),) * 2, constant_values=fill)
    oh, ow = [(xp.shape[a] - k) // stride + 1 for a in (-2, -1)]
    out = np.empty(x.shape[:-2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[..., i * stride:i * stride + k, j * stride:j * stride + k]
            out[..., i, j] = reduce(window, axis=(-2, -1))
    return out


case("conv2d[pad,bias]", lambda x, w, b: sg.conv2d(x, w, b, padding=1),
     lambda x, w, b: np_conv(x, w, b, padding=1), U(2, 3, 5, 5), U(4, 3, 3, 3), U(4))
case("conv2d[stride,dilation]", lambda x, w: sg.conv2d(x, w, stride=2, padding=(1, 0),
                                                      dilation=(1, 2)),
     lambda x, w: np_conv(x, w, stride=2, padding=(1, 0), dilation=(1, 2)),
     U(1, 2, 6, 7), U(3, 2, 2, 3))
case("conv2d[groups,same]", lambda x, w: sg.conv2d(x, w, padding="same", groups=2),
     lambda x, w: np_conv(x, w, padding=1, groups=2), U(2, 4, 4, 4), U(4, 2, 3, 3))
case("conv2d[dynamic-batch]", lambda x, w: sg.sum(sg.conv2d(x, w), axis=0),
     lambda x, w: np_conv(x, w).sum(0), U(3, 2, 4, 4), U(2, 2, 2, 2),
     dynamic={0: (None, 2, 4, 4)})
case("conv1d[stride,bias]", lambda x, w, b: sg.conv1d(x, w, b, stride=2, padding=1),
     lambda x, w, b: np_conv(x, w, b, stride=2, padding=1), U(2, 3, 7), U(2, 3, 3), U(2))
case("max_pool2d[2]", lambda x: sg.max_pool2d(x, 2),
     lambda x: np_pool(x, 2, 2, 0, np.max, -np.inf), distinct(2, 2, 4, 4))
case("max_pool2d[3,stride2,pad1]", lambda x: sg.max_pool2d(x, 3, 2, 1),
     lambda x: np_pool(x, 3, 2, 1, np.max, -np.inf), distinct(2, 5, 5))
case("avg_pool2d[3,stride2,pad1]", lambda x: sg.avg_pool2d(x, 3, 2, 1),
     lambda x: np_pool(x, 3, 2, 1, np.mean, 0.0), U(1, 2, 5, 5))
case("avg_pool2d[no-pad-count]", lambda x: sg.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
     lambda x: np_pool(x, 3, 2, 1, np.sum, 0.0)
     / np_pool(np.ones_like(x), 3, 2, 1, np.sum, 0.0), U(1, 1, 5, 6))
case("unwindows", lambda g: apply("unwindows", [g], kernel=(2, 3), stride=(2, 1),
                                  dilation=(1, 2), size=(5, 6)),
     lambda g: sum(unwindow_np(g, k, j) for k in range(2) for j in range(3)), U(1, 2, 3, 2, 2))


def unwindow_np(g, k, j):
    """Window element (k, j) of every window, added back at row 2*o + k, column p + 2*j."""
    out = np.zeros(g.shape[:1] + (5, 6), g.dtype)
    for o in range(g.shape[3]):
        for q in range(g.shape[4]):
            out[:, 2 * o + k, q + 2 * j] += g[:, k, j, o, q]
    return out


def np_batch_norm(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (-1,) + (1,) * (x.ndim - 2)
    mu, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)


case("batch_norm[training]", lambda x, w, b: sg.batch_norm(x, None, None, w, b, training=True),
     np_batch_norm, U(3, 2, 2, 2), U(2), U(2))
case("batch_norm[eval]", lambda x, m, v: sg.batch_norm(x, m, v, eps=1e-3),
     lambda x, m, v: (x - m) / np.sqrt(v + 1e-3), U(4, 3), U(3), U(3, lo=0.5, hi=2.0))
case("layer_norm", lambda x, w, b: sg.layer_norm(x, (4,), w, b),
     lambda x, w, b: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
     * w + b, U(2, 3, 4), U(4), U(4))
case("layer_norm[2-axes]", lambda x: sg.layer_norm(x, (3, 4), eps=1e-3),
     lambda x: (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True)
                                                            + 1e-3), U(2, 3, 4))


def splitmix_keep(key: int, count: int, p_keep: float) -> np.ndarray:
    """Independent spelling of the documented bits, in Python integers."""
    mask = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    seed = mix(key & mask)
    bits = [mix((seed + (i + 1) * 0x9E3779B97F4A7C15) & mask) for i in range(count)]
    return np.array([(b >> 11) < round(p_keep * 2 ** 53) for b in bits])


case("bernoulli", lambda k: sg.bernoulli(k, (3, 4), 0.4),
     lambda k: splitmix_keep(int(k), 12, 0.4).reshape(3, 4), const(np.int64(-7)))
case("dropout", lambda x, k: sg.dropout(x, 0.5, k),
     lambda x, k: np.where(splitmix_keep(int(k), 12, 0.5).reshape(3, 4), x * 2.0, 0.0),
     U(3, 4), const(np.int64(2024)))
case("dropout[dynamic,3d]", lambda x, k: sg.sum(sg.dropout(x, 0.25, k) * x, axis=0),
     lambda x, k: np.sum(np.where(splitmix_keep(int(k), x.size, 0.75).reshape(x.shape),
                                  x / np.asarray(0.75, x.dtype), 0.0) * x, axis=0),
     U(3, 2, 4), const(np.int64(5)), dynamic={0: (None, 2, 4)}, second=False)


# -- the float64 oracle of each case: inputs, cotangents, finite differences (NumPy only) ----------
@dataclass
class Probe:
    arrays: list = field(default_factory=list)   # float64 (graph-float) inputs, f32-exact
    wrt: list = field(default_factory=list)      # indices of the float inputs
    ops: set = field(default_factory=set)        # ops in the forward graph
    differentiable: bool = False
    v: np.ndarray | None = None                  # cotangent of the output
    w: list = field(default_factory=list)        # weights of the first-order grads
    promotes: bool = False                       # NumPy itself gives float64 from f32 inputs
    error: str | None = None


def graph_arrays(c: Case, arrays: list, dtype) -> list:
    return [a.astype(dtype) if a.dtype == F64 and k not in c.keep64 else a
            for k, a in enumerate(arrays)]


def placeholders(c: Case, arrays: list) -> list:
    return [sg.placeholder(c.dynamic.get(k, a.shape), a.dtype, name=f"{c.id}:{k}")
            for k, a in enumerate(arrays)]


@functools.cache
def probe(case_id: str) -> Probe:
    c, p = CASES[case_id], Probe()
    try:
        rng = np.random.default_rng(zlib.crc32(case_id.encode()))
        p.arrays = [representable(np.asarray(a)) for a in c.sample(rng)]
        p.wrt = [k for k, a in enumerate(p.arrays) if a.dtype.kind == "f"]
        xs = placeholders(c, p.arrays)
        out = c.build(*xs)
        p.ops = {n.op for n in toposort([out]) if n.op is not None}
        p.differentiable = bool(c.grad is not None and p.wrt and np.issubdtype(out.dtype,
                                                                                  np.floating))
        if c.expect is not None:
            p.promotes = np.asarray(c.expect(*graph_arrays(c, p.arrays, F32))).dtype == F64
        if p.differentiable:
            shape = sg.function(xs, out, backend="numpy")(*p.arrays).shape
            p.v = representable(rng.standard_normal(shape))
            p.w = [representable(rng.standard_normal(p.arrays[k].shape)) for k in p.wrt]
    except Exception:  # reported by every test of the case
        p.error = traceback.format_exc()
    return p


@functools.cache
def finite_differences(case_id: str) -> tuple:
    """First-order VJPs by central differences of the float64 reference forward, and
    second-order ones by central differences of the reference first-order VJP."""
    c, p = CASES[case_id], probe(case_id)
    xs = placeholders(c, p.arrays)
    out = c.build(*xs)
    forward = sg.function(xs, out, backend="numpy")
    first = numerical_vjp(forward, p.arrays, p.v, p.wrt) if c.grad == "fd" \
        else [np.asarray(g, dtype=np.float64) for g in c.grad(p.v, *p.arrays)]
    second = None
    if c.grad == "fd" and c.second:
        grads = sg.grad(out, [xs[k] for k in p.wrt], grad_outputs=p.v)
        backward = sg.function(xs, list(grads), backend="numpy")
        phi = lambda *a: sum(np.sum(w * g) for w, g in zip(p.w, backward(*a)))
        second = numerical_vjp(phi, p.arrays, 1.0, p.wrt)
    return first, second


# -- one graph per dtype, compiled once per (backend, dtype) ---------------------------------------
@dataclass
class Built:
    case: Case
    inputs: list
    arrays: list
    out: Tensor
    grads: tuple = ()
    second: tuple = ()

    def __repr__(self) -> str:
        return f"<Built {self.case.id}>"


@dataclass
class Result:
    built: Built
    value: np.ndarray
    grads: list
    second: list

    def __repr__(self) -> str:
        return f"<Result {self.built.case.id}>"


def build_case(c: Case, dtype) -> Built:
    p = probe(c.id)
    if p.error:
        raise RuntimeError(p.error)
    arrays = graph_arrays(c, p.arrays, dtype)
    xs = placeholders(c, arrays)
    b = Built(c, xs, arrays, c.build(*xs))
    if p.differentiable:
        wrt = [xs[k] for k in p.wrt]
        b.grads = sg.grad(b.out, wrt, grad_outputs=p.v.astype(b.out.dtype))
        if c.grad == "fd" and c.second:
            phi = None
            for g, w in zip(b.grads, p.w):
                term = sg.sum(g * w.astype(g.dtype))
                phi = term if phi is None else phi + term
            b.second = sg.grad(phi, wrt)
    return b


def run_group(group: list, backend: str, results: dict) -> None:
    """Compile and run the cases together; on failure, bisect to the cases that fail."""
    try:
        inputs = [x for b in group for x in b.inputs]
        outputs = [t for b in group for t in (b.out, *b.grads, *b.second)]
        values = sg.function(inputs, outputs, backend=backend)(*[a for b in group
                                                                  for a in b.arrays])
    except Exception:
        if len(group) == 1:
            results[group[0].case.id] = traceback.format_exc()
            return
        half = len(group) // 2
        run_group(group[:half], backend, results)
        run_group(group[half:], backend, results)
        return
    at = 0
    for b in group:
        n, m = len(b.grads), len(b.second)
        results[b.case.id] = Result(b, values[at], values[at + 1:at + 1 + n],
                                    values[at + 1 + n:at + 1 + n + m])
        at += 1 + n + m


# Cases per compiled function. One function for all cases is the ideal, but Numba's compile
# time grows faster than linearly with the size of a function (measured: 10 cases ~5 s, 20 ~10 s,
# 40 ~16 s, 80 over a minute), so a compiled backend gets the cases in groups.
CASES_PER_FUNCTION = {"numpy": None, "numba": 16}


def run_all(backend: str, dtype) -> dict:
    results, built = {}, []
    for c in CASES.values():
        try:
            built.append(build_case(c, dtype))
        except Exception:
            results[c.id] = traceback.format_exc()
    size = CASES_PER_FUNCTION.get(backend) or len(built)
    for start in range(0, len(built), size):
        run_group(built[start:start + size], backend, results)
    return results


@pytest.fixture
def results(compile_once, backend):
    """``results(dtype)[case_id]``: the case's Result, or the traceback of its failure."""
    return lambda dtype: compile_once(("test_ops", backend, np.dtype(dtype)),
                                      lambda: run_all(backend, np.dtype(dtype)))


def result_of(results, dtype, case_id: str) -> Result:
    r = results(dtype)[case_id]
    if isinstance(r, str):
        pytest.fail(f"case {case_id} failed to build or run:\n{r}")
    return r


# -- the tests ------------------------------------------------------------------------------------
VALUE_CASES = [k for k, c in CASES.items() if c.expect is not None]
GRAD_CASES = [k for k in CASES if probe(k).differentiable or probe(k).error]
SECOND_CASES = [k for k in GRAD_CASES if CASES[k].grad == "fd" and CASES[k].second]
F32_CASES = [k for k in VALUE_CASES if not probe(k).promotes]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])


def expected_value(case_id: str, dtype) -> np.ndarray:
    c, p = CASES[case_id], probe(case_id)
    return np.asarray(c.expect(*graph_arrays(c, p.arrays, dtype)))


@dtypes
@pytest.mark.parametrize("case_id", VALUE_CASES)
def test_value(backend, results, dtype, case_id):
    r = result_of(results, dtype, case_id)
    expected = expected_value(case_id, dtype)
    assert r.value.dtype == expected.dtype and r.value.shape == expected.shape
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(r.value, expected, **tol(dtype))
    else:
        np.testing.assert_array_equal(r.value, expected)


@dtypes
@pytest.mark.parametrize("case_id", VALUE_CASES)
def test_inferred_shape_and_dtype(backend, results, dtype, case_id):
    """What the node says at build time is what NumPy computes (and what the backend returns)."""
    r = result_of(results, dtype, case_id)
    expected = expected_value(case_id, dtype)
    out = r.built.out
    assert out.dtype == expected.dtype, f"built {out.dtype}, NumPy gives {expected.dtype}"
    assert len(out.shape) == expected.ndim and all(
        d is None or d == n for d, n in zip(out.shape, expected.shape)), \
        f"built {out.shape}, NumPy gives {expected.shape}"
    assert (r.value.shape, r.value.dtype) == (expected.shape, expected.dtype)


@dtypes
@pytest.mark.parametrize("case_id", GRAD_CASES)
def test_vjp(backend, results, dtype, case_id):
    """First-order VJPs against central differences of the float64 reference forward."""
    r = result_of(results, dtype, case_id)
    first, _ = finite_differences(case_id)
    assert len(r.grads) == len(first)
    for k, node in zip(probe(case_id).wrt, r.built.grads):
        assert node.dtype == r.built.arrays[k].dtype, f"gradient node of input {k}"
    check_gradients(r, case_id, r.grads, first, dtype, "gradient")


@dtypes
@pytest.mark.parametrize("case_id", SECOND_CASES)
def test_second_order_vjp(backend, results, dtype, case_id):
    """grad(sum(w * vjp)) against central differences of the reference first-order VJP."""
    r = result_of(results, dtype, case_id)
    _, second = finite_differences(case_id)
    assert len(r.second) == len(second)
    check_gradients(r, case_id, r.second, second, dtype, "second-order gradient")


def check_gradients(r, case_id, got: list, expected: list, dtype, what: str) -> None:
    """Each gradient has its input's dtype and shape and the finite-difference values."""
    for k, g, e in zip(probe(case_id).wrt, got, expected):
        x = r.built.arrays[k]
        assert g.dtype == x.dtype and g.shape == x.shape, f"{what} of input {k}"
        np.testing.assert_allclose(g, e, **grad_tol(dtype), err_msg=f"{what} of input {k}")


@pytest.mark.parametrize("case_id", F32_CASES)
def test_float32_stays_float32(backend, results, case_id):
    """Where NumPy keeps float32, every node (forward, backward, second order) and every result
    of a float32 graph is float32: no silent promotion, not even in a VJP rule."""
    r = result_of(results, F32, case_id)
    b = r.built
    nodes = toposort([b.out, *b.grads, *b.second])
    wide = [f"{n.op or n.leaf} {sh.show(n.dims)}" for n in nodes if n.dtype == F64 and not n.weak]
    assert not wide, f"float64 nodes in a float32 graph: {wide}"
    arrays = [r.value, *r.grads, *r.second]
    assert all(a.dtype != F64 for a in arrays), [a.dtype for a in arrays]


def covering(backend, results, kind: str) -> dict:
    """op -> the cases that exercise it (in their forward graph) and passed through this backend."""
    pool = {"value": VALUE_CASES, "vjp": GRAD_CASES, "second-order": SECOND_CASES}[kind]
    found: dict = {}
    for k in pool:
        if all(not isinstance(results(d)[k], str) for d in DTYPES):
            for op in probe(k).ops:
                found.setdefault(op, []).append(k)
    return found


@pytest.mark.parametrize("kind", ["value", "vjp", "second-order"])
def test_registry_ops_covered(backend, results, kind):
    """Every op in REGISTRY is exercised by some case with an independent NumPy expectation
    (a VJP check, a second-order check, for ops with a VJP rule) that built and ran."""
    found = covering(backend, results, kind)
    # custom functions register ops at run time (tests/test_custom.py); they have their own tests
    needs = [op for op, d in REGISTRY.items() if d.kind is not Kind.CUSTOM
             and (kind == "value" or d.vjp is not None)]
    missing = [op for op in needs if op not in found]
    assert not missing, (f"ops without a {kind} check on backend {backend!r}: {missing} "
                         "(add an EXPECT entry or a case in tests/test_ops.py)")


# the public op functions of each family module, as exported by ``staticgrad``
PUBLIC = sorted({*elementwise.__all__, *reduce.__all__, *movement.__all__, *linalg.__all__,
                 *composite.__all__, *conv.__all__, *random.__all__, *nn.__all__,
                 *indexing.__all__, "cast"} - {"restore_axes", "batch_norm_updates"})


@functools.cache
def called_functions() -> frozenset:
    """The public functions the cases call (spied on while each case is built once more)."""
    used = set()
    originals = {name: getattr(sg, name) for name in PUBLIC}

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            used.add(name)
            return fn(*args, **kwargs)
        return wrapper

    try:
        for name, fn in originals.items():
            setattr(sg, name, spy(name, fn))
        for c in CASES.values():
            p = probe(c.id)
            if not p.error:
                c.build(*placeholders(c, p.arrays))
    finally:
        for name, fn in originals.items():
            setattr(sg, name, fn)
    return frozenset(used)


def test_public_functions_covered():
    """Every public op function is called by some case (operators do not count)."""
    missing = [name for name in PUBLIC if name not in called_functions()]
    assert not missing, f"public functions no case calls: {missing}"
