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
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sin", "cos", "tan",
           "exp32", "exp64", "log32", "log64", "log1p32", "log1p64", "expm1_32", "expm1_64",
           "tanh32", "tanh64", "sigmoid32", "sigmoid64", "sin32", "sin64", "cos32", "cos64",
           "tan32", "tan64"]

# error_model="numpy": a Python-style zero-division check is a branch that blocks
# vectorization (and we want IEEE inf anyway). "contract" lets LLVM form FMAs, which only
# makes the exact steps below (Cody-Waite products, compensation terms) more exact; no
# other fast-math flag, so the callers' NaN/inf semantics survive. The kernels are
# compiled as ordinary functions and inlined by LLVM, so they keep these flags whatever
# flags the calling loop uses.
_kernel = numba.njit(fastmath={"contract"}, error_model="numpy", cache=True)


# ---------------------------------------------------------------- bit casts

@intrinsic
def _bits(typingctx, x):
    """The IEEE bit pattern of a float32 (as int32) or float64 (as int64)."""
    out = {types.float32: types.int32, types.float64: types.int64}.get(x)
    if out is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(out))
    return out(x), codegen


def _from_bits(width, ftype):
    @intrinsic
    def from_bits(typingctx, i):
        if not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            # Numba widens int32 arithmetic to int64; truncating back is free after LLVM
            # narrows the whole integer chain.
            v, ity = args[0], ir.IntType(width)
            if i.bitwidth > width:
                v = builder.trunc(v, ity)
            elif i.bitwidth < width:
                v = builder.sext(v, ity)
            return builder.bitcast(v, context.get_value_type(ftype))
        return ftype(i), codegen
    return from_bits


_from_bits32 = _from_bits(32, types.float32)
_from_bits64 = _from_bits(64, types.float64)


# ---------------------------------------------------------------- constants
# Polynomials (low order first) and Cody-Waite splits come from tools/fit_mathlib.py:
# weighted minimax fits in 50-digit arithmetic, rounded to the target precision.

F32 = np.float32


def _f32(*cs):
    return tuple(F32(c) for c in cs)


_h = float.fromhex

# expm1(r) = r + r^2 P(r) on |r| <= ln2/2
_EXPM1_32 = _f32(0.4999999701976776, 0.1666654348373413, 0.04166720062494278,
                 0.008366580121219158, 0.0013882507337257266)
_EXPM1_64 = (0.5000000000000006, 0.16666666666666588, 0.041666666666576105,
             0.00833333333338996, 0.0013888888931795854, 0.00019841269718343527,
             2.48015049779832e-05, 2.755740786179433e-06, 2.7626161741036317e-07,
             2.5053777922977884e-08)
# log1p(f) = 2s + s z Q(z), s = f/(2+f), z = s^2 <= 0.0295
_LOG_32 = _f32(0.6666677594184875, 0.3997744917869568, 0.29874423146247864)
_LOG_64 = (0.6666666666666735, 0.3999999999940747, 0.28571428744144284, 0.22222198378205796,
           0.18183575178675793, 0.1531375543923489, 0.14799069184402058)
# sin(r) = r + r^3 S(r^2), cos(r) = 1 - r^2/2 + r^4 C(r^2) on |r| <= pi/4
_SIN_32 = _f32(-0.16666655242443085, 0.00833216868340969, -0.0001951601152541116)
_SIN_64 = (-0.16666666666666632, 0.008333333333322205, -0.00019841269829632674,
           2.7557313628680586e-06, -2.505074785381677e-08, 1.5896181338312488e-10)
_COS_32 = _f32(0.04166664555668831, -0.0013887303648516536, 2.4431667043245398e-05)
_COS_64 = (0.04166666666666659, -0.0013888888888872733, 2.4801587288643676e-05,
           -2.7557314117728557e-07, 2.087569228205404e-09, -1.1358083841383145e-11)

# ln2 = HI + LO with HI short enough that k*HI is exact for every exponent k we meet.
_LN2_32 = _f32(_h("0x1.62e4p-1"), _h("0x1.7f7d1cp-20"))
_LN2_64 = (_h("0x1.62e42fefa38p-1"), _h("0x1.ef35793c7673p-45"))
# pi/2 = P1 + P2 + P3; k*P1 and k*P2 are exact for |k| < 2**13 (float32), 2**20 (float64).
_PIO2_32 = _f32(_h("0x1.92p+0"), _h("0x1.fb4p-12"), _h("0x1.4442d2p-24"))
_PIO2_64 = (_h("0x1.921fb544p+0"), _h("0x1.0b4611a6p-34"), _h("0x1.3198a2e037073p-69"))
# The polynomials were fitted on |r| <= 1.002 pi/4: k = round(x * 2/pi) is computed in
# the target precision and may be off by up to 0.0015 for |x| < 12867 (float32).
_RMAX_32, _RMAX_64 = F32(math.pi / 4 * 1.002), math.pi / 4 * 1.002

# Adding 1.5 * 2**(p-1) to a float rounds it to an integer held in the low mantissa
# bits: a float->int conversion without fptosi (which is poison on NaN, and has no
# packed float64->int64 form on AVX2).
_SHIFT32, _SHIFT32_BITS = F32(1.5 * 2.0 ** 23), 0x4B400000
_SHIFT64, _SHIFT64_BITS = 1.5 * 2.0 ** 52, 0x4338000000000000

_ZERO32, _HALF32, _ONE32, _TWO32 = _f32(0.0, 0.5, 1.0, 2.0)
_LOG2E32, _TWO_OVER_PI32 = _f32(1 / math.log(2), 2 / math.pi)
_LOG2E64, _TWO_OVER_PI64 = 1 / math.log(2), 2 / math.pi
_INF32, _NAN32 = _f32(math.inf, math.nan)


# ---------------------------------------------------------------- shared helpers

@_kernel
def _horner(x, c):
    # A homogeneous tuple of constants: LLVM unrolls the loop and folds the indexing.
    acc = c[-1]
    for i in range(len(c) - 2, -1, -1):
        acc = acc * x + c[i]
    return acc


@_kernel
def _clamp(x, lo, hi):
    # Comparisons are false for NaN, so NaN passes through unchanged.
    x = lo if x < lo else x
    return hi if x > hi else x


@_kernel
def _scale32(p, kf):
    # p * 2**kf for an integral kf in [-252, 254], in two steps so that neither power of
    # two leaves the normal range: overflow gives inf and subnormals are rounded once.
    k = _bits(kf + _SHIFT32) - _SHIFT32_BITS
    k1 = k >> 1
    return p * _from_bits32((k1 + 127) << 23) * _from_bits32((k - k1 + 127) << 23)


@_kernel
def _scale64(p, kf):
    k = _bits(kf + _SHIFT64) - _SHIFT64_BITS
    k1 = k >> 1
    return p * _from_bits64((k1 + 1023) << 52) * _from_bits64((k - k1 + 1023) << 52)


@_kernel
def _exp_reduce32(x):
    # x = k ln2 + r, |r| <= ln2/2; k*HI is exact, so r only rounds in the last step.
    kf = np.rint(x * _LOG2E32)
    return (x - kf * _LN2_32[0]) - kf * _LN2_32[1], kf


@_kernel
def _exp_reduce64(x):
    kf = np.rint(x * _LOG2E64)
    return (x - kf * _LN2_64[0]) - kf * _LN2_64[1], kf


@_kernel
def _expm1_poly32(r):
    return r + r * r * _horner(r, _EXPM1_32)


@_kernel
def _expm1_poly64(r):
    return r + r * r * _horner(r, _EXPM1_64)


@_kernel
def _log_split32(x):
    # x = 2**e * m with m in [sqrt(1/2), sqrt(2)): shifting the bits by (1 - sqrt(1/2))'s
    # pattern moves the binade boundary to sqrt(1/2). e comes back as a float, made
    # exact by the same 2**23 mantissa trick (no int->float conversion needed).
    ix = _bits(x) + (0x3F800000 - 0x3F3504F3)
    e = _from_bits32((ix >> 23) + 0x4B000000) - F32(2.0 ** 23 + 127)
    m = _from_bits32((ix & 0x007FFFFF) + 0x3F3504F3)
    return e, m - _ONE32


@_kernel
def _log_split64(x):
    ix = _bits(x) + (0x3FF0000000000000 - 0x3FE6A09E667F3BCD)
    e = _from_bits64((ix >> 52) + 0x4330000000000000) - (2.0 ** 52 + 1023)
    m = _from_bits64((ix & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E667F3BCD)
    return e, m - 1.0


@_kernel
def _log_finish32(e, f, lo):
    # log(2**e (1+f)) + lo with |f| < 0.42: log1p(f) = f - f^2/2 + s (f^2/2 + R), which
    # keeps the leading f exact instead of rounding 2s.
    s = f / (_TWO32 + f)
    z = s * s
    hfsq = _HALF32 * f * f
    r = z * _horner(z, _LOG_32)
    return e * _LN2_32[0] - ((hfsq - (s * (hfsq + r) + (e * _LN2_32[1] + lo))) - f)


@_kernel
def _log_finish64(e, f, lo):
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    r = z * _horner(z, _LOG_64)
    return e * _LN2_64[0] - ((hfsq - (s * (hfsq + r) + (e * _LN2_64[1] + lo))) - f)


@_kernel
def _trig_reduce32(x):
    # x = k pi/2 + r with |r| <= pi/4 (three-piece Cody-Waite; exact products for
    # |k| < 2**13, i.e. |x| < 12867). Returns r and k mod 4.
    ks = x * _TWO_OVER_PI32 + _SHIFT32
    kf = ks - _SHIFT32
    r = ((x - kf * _PIO2_32[0]) - kf * _PIO2_32[1]) - kf * _PIO2_32[2]
    # Only bites past the accurate range, where it keeps |sin|, |cos| <= 1.
    return _clamp(r, -_RMAX_32, _RMAX_32), _bits(ks) & 3


@_kernel
def _trig_reduce64(x):
    ks = x * _TWO_OVER_PI64 + _SHIFT64
    kf = ks - _SHIFT64
    r = ((x - kf * _PIO2_64[0]) - kf * _PIO2_64[1]) - kf * _PIO2_64[2]
    return _clamp(r, -_RMAX_64, _RMAX_64), _bits(ks) & 3


@_kernel
def _sin_poly32(r):
    # r + (a product of sign -sign(r)) is +0 for r = -0: the select keeps sin(-0) = -0
    z = r * r
    return r if z == 0 else r + r * z * _horner(z, _SIN_32)


@_kernel
def _sin_poly64(r):
    # r + (a product of sign -sign(r)) is +0 for r = -0: the select keeps sin(-0) = -0
    z = r * r
    return r if z == 0 else r + r * z * _horner(z, _SIN_64)


@_kernel
def _cos_poly32(r):
    # (1 - w) - hz recovers the rounding error of w = 1 - r^2/2 exactly.
    z = r * r
    hz = _HALF32 * z
    w = _ONE32 - hz
    return w + (((_ONE32 - w) - hz) + z * z * _horner(z, _COS_32))


@_kernel
def _cos_poly64(r):
    z = r * r
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * z * _horner(z, _COS_64))


@_kernel
def _quadrant(q, s, c):
    # sin(q pi/2 + r) from s = sin r, c = cos r.
    y = c if q & 1 else s
    return -y if q & 2 else y


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

@numba.njit(cache=True)
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
