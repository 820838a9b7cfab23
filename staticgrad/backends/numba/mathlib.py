"""Transcendental functions that LLVM can vectorize inside Numba loops.

Without SVML, Numba lowers ``math.exp`` & co. to one libm call per element, which stops
the loop vectorizer. These kernels are branch-free range reductions plus polynomials in
plain float32/float64 arithmetic, so a loop calling them is inlined and vectorized.

Generated code calls the dtype-generic names (``exp(t[i])``); they pick the float32 or
float64 kernel (``exp32``/``exp64``) from the argument type while Numba compiles.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from ...ops import random as _random
from .mathbase import (  # noqa: F401  (the kernels below read these)
    _HALF32,
    _INF32,
    _NAN32,
    _ONE32,
    _TWO32,
    _ZERO32,
    F32,
    _clamp,
    _cos_poly32,
    _cos_poly64,
    _exp_reduce32,
    _exp_reduce64,
    _expm1_poly32,
    _expm1_poly64,
    _kernel,
    _log_finish32,
    _log_finish64,
    _log_split32,
    _log_split64,
    _quadrant,
    _scale32,
    _scale64,
    _sin_poly32,
    _sin_poly64,
    _trig_reduce32,
    _trig_reduce64,
)

__all__ = ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sin", "cos", "tan",
           "exp32", "exp64", "log32", "log64", "log1p32", "log1p64", "expm1_32", "expm1_64",
           "tanh32", "tanh64", "sigmoid32", "sigmoid64", "sin32", "sin64", "cos32", "cos64",
           "tan32", "tan64", "random_bits"]


# ---------------------------------------------------------------- float32 kernels

@_kernel
def exp32(x):
    """e**x for a float32 ``x`` (float32 arithmetic throughout).

    >>> round(exp32(np.float32(1.0)), 6)
    2.718282
    """
    # Clamping keeps 2**k in range; the limits already give inf / 0.
    r, kf = _exp_reduce32(_clamp(x, F32(-110.0), F32(89.0)))
    return _scale32(_ONE32 + _expm1_poly32(r), kf)


@_kernel
def expm1_32(x):
    """e**x - 1 for a float32 ``x``, accurate near 0.

    >>> expm1_32(np.float32(1e-10)) == float(np.float32(1e-10))  # exp(x) - 1 gives 0
    True
    """
    r, kf = _exp_reduce32(_clamp(x, F32(-30.0), F32(89.0)))
    s = _scale32(_HALF32, kf)  # 2**(k-1): stays finite for k = 128
    y = _TWO32 * (s * _expm1_poly32(r) + (s - _HALF32))
    # Tiny x (and -0): the result is x; also spares the halving above from subnormals.
    return x if abs(x) < F32(2.0 ** -25) else y


@_kernel
def log32(x):
    """Natural logarithm of a float32 ``x``; log(0) = -inf, log(x < 0) = nan.

    >>> round(log32(np.float32(10.0)), 6)
    2.302585
    """
    sub = x < F32(2.0 ** -126)  # subnormals: scale into the normal range first
    e, f = _log_split32(x * F32(2.0 ** 23) if sub else x)
    y = _log_finish32(e - (F32(23.0) if sub else _ZERO32), f, _ZERO32)
    y = y if x < _INF32 else x  # +inf and nan
    y = -_INF32 if x == _ZERO32 else y
    return _NAN32 if x < _ZERO32 else y


@_kernel
def log1p32(x):
    """log(1 + x) for a float32 ``x``, accurate near 0.

    >>> log1p32(np.float32(1e-10)) == float(np.float32(1e-10))
    True
    """
    u = _ONE32 + x
    e, f = _log_split32(u)
    # The rounding error of u, exactly (Sterbenz), as a relative correction to log(u).
    c = (_ONE32 - (u - x)) if x > _ONE32 else (x - (u - _ONE32))
    y = _log_finish32(e, f, c / u)
    y = x if abs(x) < F32(2.0 ** -25) else y
    y = y if x < _INF32 else x
    y = -_INF32 if x == -_ONE32 else y
    return _NAN32 if x < -_ONE32 else y


@_kernel
def tanh32(x):
    """Hyperbolic tangent of a float32 ``x``, via expm1(2|x|) / (expm1(2|x|) + 2).

    >>> round(tanh32(np.float32(0.5)), 6)
    0.462117
    """
    a = _clamp(abs(x), _ZERO32, F32(10.0))  # tanh rounds to 1 beyond 9.01
    em = expm1_32(a + a)
    return math.copysign(em / (em + _TWO32), x)


@_kernel
def sigmoid32(x):
    """1 / (1 + e**-x) for a float32 ``x``, without overflow for large |x|.

    >>> round(sigmoid32(np.float32(-100.0)), 6)
    0.0
    """
    # exp only of -|x| <= 0: e/(1+e) keeps sigmoid(-100) subnormal instead of 1/(1+inf).
    e = exp32(-abs(x))
    return (_ONE32 if x >= _ZERO32 else e) / (_ONE32 + e)


@_kernel
def sin32(x):
    """Sine of a float32 ``x`` (accurate for |x| < 12867, see the module notes).

    >>> round(sin32(np.float32(1.0)), 6)
    0.841471
    """
    r, q = _trig_reduce32(x)
    return _quadrant(q, _sin_poly32(r), _cos_poly32(r))


@_kernel
def cos32(x):
    """Cosine of a float32 ``x`` (accurate for |x| < 12867).

    >>> round(cos32(np.float32(1.0)), 6)
    0.540302
    """
    r, q = _trig_reduce32(x)
    return _quadrant(q + 1, _sin_poly32(r), _cos_poly32(r))


@_kernel
def tan32(x):
    """Tangent of a float32 ``x`` (accurate for |x| < 12867).

    >>> round(tan32(np.float32(1.0)), 6)
    1.557408
    """
    r, q = _trig_reduce32(x)
    s, c = _sin_poly32(r), _cos_poly32(r)
    odd = q & 1
    return (-c if odd else s) / (s if odd else c)


# ---------------------------------------------------------------- float64 kernels

@_kernel
def exp64(x):
    """e**x for a float64 ``x``.

    >>> round(exp64(1.0), 12)
    2.718281828459
    """
    r, kf = _exp_reduce64(_clamp(x, -750.0, 710.0))
    return _scale64(1.0 + _expm1_poly64(r), kf)


@_kernel
def expm1_64(x):
    """e**x - 1 for a float64 ``x``, accurate near 0.

    >>> round(expm1_64(1e-10) * 1e10, 12)
    1.00000000005
    """
    r, kf = _exp_reduce64(_clamp(x, -60.0, 710.0))
    s = _scale64(0.5, kf)
    y = 2.0 * (s * _expm1_poly64(r) + (s - 0.5))
    return x if abs(x) < 2.0 ** -54 else y


@_kernel
def log64(x):
    """Natural logarithm of a float64 ``x``; log(0) = -inf, log(x < 0) = nan.

    >>> round(log64(10.0), 12)
    2.302585092994
    """
    sub = x < 2.0 ** -1022
    e, f = _log_split64(x * 2.0 ** 52 if sub else x)
    y = _log_finish64(e - (52.0 if sub else 0.0), f, 0.0)
    y = y if x < math.inf else x
    y = -math.inf if x == 0.0 else y
    return math.nan if x < 0.0 else y


@_kernel
def log1p64(x):
    """log(1 + x) for a float64 ``x``, accurate near 0.

    >>> round(log1p64(1e-10) * 1e10, 12)
    0.99999999995
    """
    u = 1.0 + x
    e, f = _log_split64(u)
    c = (1.0 - (u - x)) if x > 1.0 else (x - (u - 1.0))
    y = _log_finish64(e, f, c / u)
    y = x if abs(x) < 2.0 ** -54 else y
    y = y if x < math.inf else x
    y = -math.inf if x == -1.0 else y
    return math.nan if x < -1.0 else y


@_kernel
def tanh64(x):
    """Hyperbolic tangent of a float64 ``x``.

    >>> round(tanh64(0.5), 12)
    0.46211715726
    """
    a = _clamp(abs(x), 0.0, 20.0)  # tanh rounds to 1 beyond 19.06
    em = expm1_64(a + a)
    return math.copysign(em / (em + 2.0), x)


@_kernel
def sigmoid64(x):
    """1 / (1 + e**-x) for a float64 ``x``.

    >>> round(sigmoid64(0.0), 12)
    0.5
    """
    e = exp64(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


@_kernel
def sin64(x):
    """Sine of a float64 ``x`` (accurate for |x| < 1.6e6).

    >>> round(sin64(1.0), 12)
    0.841470984808
    """
    r, q = _trig_reduce64(x)
    return _quadrant(q, _sin_poly64(r), _cos_poly64(r))


@_kernel
def cos64(x):
    """Cosine of a float64 ``x`` (accurate for |x| < 1.6e6).

    >>> round(cos64(1.0), 12)
    0.540302305868
    """
    r, q = _trig_reduce64(x)
    return _quadrant(q + 1, _sin_poly64(r), _cos_poly64(r))


@_kernel
def tan64(x):
    """Tangent of a float64 ``x`` (accurate for |x| < 1.6e6).

    >>> round(tan64(1.0), 12)
    1.557407724655
    """
    r, q = _trig_reduce64(x)
    s, c = _sin_poly64(r), _cos_poly64(r)
    odd = q & 1
    return (-c if odd else s) / (s if odd else c)


# ---------------------------------------------------------------- dtype-generic names

# not cached: Numba's cache index cannot hold a signature with a dispatcher argument across
# processes ("underlying object has vanished" once an index written elsewhere is reloaded)
@numba.njit
def _map(kernel, x, out):
    for i in range(x.size):
        out[i] = kernel(x[i])


def _dispatch(k32, k64):
    """Make the decorated stub call ``k32`` for float32 and ``k64`` for anything else.

    Inside Numba the choice is made while typing (an ``overload``), so the compiled loop
    holds a direct, inlinable call. From Python the stub maps the kernel over an array or
    a scalar, which is handy in tests and the REPL.
    """
    def decorate(stub):
        @functools.wraps(stub)
        def generic(x):
            a = np.asarray(x)
            is32 = a.dtype == np.float32
            a = a.astype(np.float32 if is32 else np.float64, copy=False)
            out = np.empty(a.shape, a.dtype)
            _map(k32 if is32 else k64, a.reshape(-1), out.reshape(-1))
            return out if out.ndim else out[()]

        generic.kernels = {types.float32: k32, types.float64: k64}   # by argument type

        @overload(generic)
        def typed(x):
            if x == types.float32:
                return lambda x: k32(x)
            if isinstance(x, (types.Float, types.Integer, types.Boolean)):
                return lambda x: k64(np.float64(x))
            return None
        return generic
    return decorate


@_dispatch(exp32, exp64)
def exp(x):
    """e**x; float32 in, float32 out (any other real type computes in float64).

    >>> exp(np.float32(0.0)), exp(np.array([0.0, 1.0]))
    (np.float32(1.0), array([1.        , 2.71828183]))
    """


@_dispatch(log32, log64)
def log(x):
    """Natural logarithm.

    >>> log(np.float32(1.0))
    np.float32(0.0)
    """


@_dispatch(log1p32, log1p64)
def log1p(x):
    """log(1 + x), accurate for small x.

    >>> log1p(np.float32(-1.0))
    np.float32(-inf)
    """


@_dispatch(expm1_32, expm1_64)
def expm1(x):
    """e**x - 1, accurate for small x.

    >>> expm1(np.float32(0.0))
    np.float32(0.0)
    """


@_dispatch(tanh32, tanh64)
def tanh(x):
    """Hyperbolic tangent.

    >>> tanh(np.float32(-np.inf))
    np.float32(-1.0)
    """


@_dispatch(sigmoid32, sigmoid64)
def sigmoid(x):
    """Logistic sigmoid 1 / (1 + e**-x).

    >>> sigmoid(np.float32(-np.inf)), sigmoid(0.0)
    (np.float32(0.0), np.float64(0.5))
    """


@_dispatch(sin32, sin64)
def sin(x):
    """Sine.

    >>> sin(np.float32(0.0))
    np.float32(0.0)
    """


@_dispatch(cos32, cos64)
def cos(x):
    """Cosine.

    >>> cos(np.float32(0.0))
    np.float32(1.0)
    """


@_dispatch(tan32, tan64)
def tan(x):
    """Tangent.

    >>> tan(np.float32(0.0))
    np.float32(0.0)
    """


# counter-based random bits (``staticgrad.ops.random``): one definition, on NumPy arrays there
# and compiled here, so both backends draw the same bits
random_bits = numba.njit(inline="always", cache=True)(_random.random_bits)
