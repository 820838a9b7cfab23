"""Elementwise primitives: one statement each (name, NumPy reference, loop template, VJP).

Templates are scalar expressions over the operands ``{0}, {1}, ...``; transcendental functions
call ``staticgrad.mathlib``, whose kernels LLVM can vectorize (libm calls it cannot). VJP rules
take the cotangent ``g``, the output ``y`` and the inputs, and may ignore broadcasting (autodiff
sums the gradient back to each input's shape).
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_tensor
from . import (
    Kind,
    OpDef,
    apply,
    binary,
    broadcast_index,
    elementwise_shape,
    promote,
    register,
    unary,
)

__all__ = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "negative",
           "exp", "log", "log1p", "expm1", "sqrt", "abs", "sign", "sin", "cos", "tan", "tanh",
           "sigmoid", "relu", "logaddexp", "stop_gradient", "less", "less_equal", "greater",
           "greater_equal", "equal", "not_equal", "logical_and", "logical_or", "logical_not",
           "isfinite", "where"]


def split_ties(g, wins, ties):
    """Where two operands tie for max/min each gets half the gradient (as JAX and PyTorch)."""
    # where(cond, 1.0, 0.5) of two Python scalars would be a strong float64 (as in NumPy)
    return where(wins, g, where(ties, 0.5 * g, 0.0))


def sigmoid_reference(x):
    return np.exp(-np.logaddexp(0, -x))


def boolean(dtypes, **_):
    return np.dtype(np.bool_)


add = binary("add", np.add, "({0} + {1})", lambda g, y, a, b: [g, g])
subtract = binary("sub", np.subtract, "({0} - {1})", lambda g, y, a, b: [g, -g])
multiply = binary("mul", np.multiply, "({0} * {1})", lambda g, y, a, b: [g * b, g * a])
divide = binary("div", np.true_divide, "({0} / {1})", lambda g, y, a, b: [g / b, -g * y / b])
power = binary("pow", np.power, "({0} ** {1})",
               lambda g, y, a, b: [g * b * a ** (b - 1), g * y * log(where(a == 0, 1, a))],
               domain=(0.2, 2.0))
# NaN wins, as in NumPy (Python's max() would drop it)
MAX = "({0} if {0} >= {1} or {0} != {0} else {1})"
MIN = "({0} if {0} <= {1} or {0} != {0} else {1})"

maximum = binary("maximum", np.maximum, MAX,
                 lambda g, y, a, b: [split_ties(g, a > b, a == b), split_ties(g, b > a, a == b)])
minimum = binary("minimum", np.minimum, MIN,
                 lambda g, y, a, b: [split_ties(g, a < b, a == b), split_ties(g, b < a, a == b)])

# log(exp(a) + exp(b)) without overflow; equal operands (infinities too) take log1p(1)
logaddexp = binary("logaddexp", np.logaddexp,
                   "(" + MAX + " + mathlib.log1p(mathlib.exp(-abs({0} - {1}) if {0} != {1} "
                   "else {t}(0))))",
                   lambda g, y, a, b: [g * exp(a - y), g * exp(b - y)])

negative = unary("neg", np.negative, "(-{0})", lambda g, y, x: [-g])
exp = unary("exp", np.exp, "mathlib.exp({0})", lambda g, y, x: [g * y])
log = unary("log", np.log, "mathlib.log({0})", lambda g, y, x: [g / x], domain=(0.1, 4.0))
log1p = unary("log1p", np.log1p, "mathlib.log1p({0})", lambda g, y, x: [g / (1 + x)],
              domain=(-0.5, 3.0))
expm1 = unary("expm1", np.expm1, "mathlib.expm1({0})", lambda g, y, x: [g * (y + 1)])
sqrt = unary("sqrt", np.sqrt, "math.sqrt({0})", lambda g, y, x: [g / (2 * y)],
             domain=(0.1, 4.0))
abs = unary("abs", np.absolute, "abs({0})", lambda g, y, x: [g * sign(x)])
sign = unary("sign", np.sign, "np.sign({0})", lambda g, y, x: [None])
sin = unary("sin", np.sin, "mathlib.sin({0})", lambda g, y, x: [g * cos(x)])
cos = unary("cos", np.cos, "mathlib.cos({0})", lambda g, y, x: [-g * sin(x)])
tan = unary("tan", np.tan, "mathlib.tan({0})", lambda g, y, x: [g * (1 + y * y)],
            domain=(-1.2, 1.2))
tanh = unary("tanh", np.tanh, "mathlib.tanh({0})", lambda g, y, x: [g * (1 - y * y)])
sigmoid = unary("sigmoid", sigmoid_reference, "mathlib.sigmoid({0})",
                lambda g, y, x: [g * y * (1 - y)])
relu = unary("relu", lambda x: np.maximum(x, 0), MAX.replace("{1}", "{t}(0)"),
             lambda g, y, x: [where(x > 0, g, 0)], dtype=lambda dtypes: dtypes[0])
stop_gradient = unary("stop_gradient", lambda x: x, "{0}", None,
                      dtype=lambda dtypes: dtypes[0])
isfinite = unary("isfinite", np.isfinite, "math.isfinite({0})", None, dtype=boolean)
logical_not = unary("logical_not", np.logical_not, "(not {0})", None, dtype=boolean)

less = binary("lt", np.less, "({0} < {1})", keeps_weak=False)
less_equal = binary("le", np.less_equal, "({0} <= {1})", keeps_weak=False)
greater = binary("gt", np.greater, "({0} > {1})", keeps_weak=False)
greater_equal = binary("ge", np.greater_equal, "({0} >= {1})", keeps_weak=False)
equal = binary("eq", np.equal, "({0} == {1})", keeps_weak=False)
not_equal = binary("ne", np.not_equal, "({0} != {1})", keeps_weak=False)
logical_and = binary("logical_and", np.logical_and, "({0} and {1})", keeps_weak=False)
logical_or = binary("logical_or", np.logical_or, "({0} or {1})", keeps_weak=False)

register(OpDef("where", Kind.ELEMENTWISE, elementwise_shape,
               lambda dtypes: np.result_type(dtypes[1], dtypes[2]), np.where,
               lambda g, y, c, a, b: [None, where(c, g, 0), where(c, 0, g)],
               "({1} if {0} else {2})", index=broadcast_index, broadcasts=True))


def where(condition, x, y) -> Tensor:
    """``x`` where ``condition`` holds, else ``y`` (NumPy's three-argument ``where``).

    >>> import staticgrad as sg
    >>> x = sg.placeholder((3,), name="x")
    >>> sg.where(x > 0, x, 0.0).op
    'where'
    """
    x, y = promote(x, y)
    return apply("where", [as_tensor(condition), x, y])
