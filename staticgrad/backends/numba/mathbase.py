"""The building blocks of ``mathlib``: bit casts, the fitted constants and the shared range
reductions and polynomials (each a small jitted function LLVM inlines into the kernels)."""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# error_model="numpy": a Python-style zero-division check is a branch that blocks
# vectorization (and we want IEEE inf anyway). "contract" lets LLVM form FMAs, which only
# makes the exact steps below (Cody-Waite products, compensation terms) more exact; no
# other fast-math flag, so the callers' NaN/inf semantics survive. The kernels are
# compiled as ordinary functions and inlined by LLVM, so they keep these flags whatever
# flags the calling loop uses.
_kernel = numba.njit(fastmath={"contract"}, error_model="numpy", cache=True)
# The helpers below are pieces of those kernels only: Numba pastes them into each kernel
# calling them (inline="always") instead of compiling each as a function of its own, with its
# own module and wrappers. A fresh process's first exp32 compiled in 0.28 s instead of 0.65
# (log32 0.30 instead of 0.49), which every cold start with an exp or a log paid.
_helper = numba.njit(fastmath={"contract"}, error_model="numpy", inline="always")


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

@_helper
def _horner(x, c):
    # A homogeneous tuple of constants: LLVM unrolls the loop and folds the indexing.
    acc = c[-1]
    for i in range(len(c) - 2, -1, -1):
        acc = acc * x + c[i]
    return acc


@_helper
def _clamp(x, lo, hi):
    # Comparisons are false for NaN, so NaN passes through unchanged.
    x = lo if x < lo else x
    return hi if x > hi else x


@_helper
def _scale32(p, kf):
    # p * 2**kf for an integral kf in [-252, 254], in two steps so that neither power of
    # two leaves the normal range: overflow gives inf and subnormals are rounded once.
    k = _bits(kf + _SHIFT32) - _SHIFT32_BITS
    k1 = k >> 1
    return p * _from_bits32((k1 + 127) << 23) * _from_bits32((k - k1 + 127) << 23)


@_helper
def _scale64(p, kf):
    k = _bits(kf + _SHIFT64) - _SHIFT64_BITS
    k1 = k >> 1
    return p * _from_bits64((k1 + 1023) << 52) * _from_bits64((k - k1 + 1023) << 52)


@_helper
def _exp_reduce32(x):
    # x = k ln2 + r, |r| <= ln2/2; k*HI is exact, so r only rounds in the last step.
    kf = np.rint(x * _LOG2E32)
    return (x - kf * _LN2_32[0]) - kf * _LN2_32[1], kf


@_helper
def _exp_reduce64(x):
    kf = np.rint(x * _LOG2E64)
    return (x - kf * _LN2_64[0]) - kf * _LN2_64[1], kf


@_helper
def _expm1_poly32(r):
    return r + r * r * _horner(r, _EXPM1_32)


@_helper
def _expm1_poly64(r):
    return r + r * r * _horner(r, _EXPM1_64)


@_helper
def _log_split32(x):
    # x = 2**e * m with m in [sqrt(1/2), sqrt(2)): shifting the bits by (1 - sqrt(1/2))'s
    # pattern moves the binade boundary to sqrt(1/2). e comes back as a float, made
    # exact by the same 2**23 mantissa trick (no int->float conversion needed).
    ix = _bits(x) + (0x3F800000 - 0x3F3504F3)
    e = _from_bits32((ix >> 23) + 0x4B000000) - F32(2.0 ** 23 + 127)
    m = _from_bits32((ix & 0x007FFFFF) + 0x3F3504F3)
    return e, m - _ONE32


@_helper
def _log_split64(x):
    ix = _bits(x) + (0x3FF0000000000000 - 0x3FE6A09E667F3BCD)
    e = _from_bits64((ix >> 52) + 0x4330000000000000) - (2.0 ** 52 + 1023)
    m = _from_bits64((ix & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E667F3BCD)
    return e, m - 1.0


@_helper
def _log_finish32(e, f, lo):
    # log(2**e (1+f)) + lo with |f| < 0.42: log1p(f) = f - f^2/2 + s (f^2/2 + R), which
    # keeps the leading f exact instead of rounding 2s.
    s = f / (_TWO32 + f)
    z = s * s
    hfsq = _HALF32 * f * f
    r = z * _horner(z, _LOG_32)
    return e * _LN2_32[0] - ((hfsq - (s * (hfsq + r) + (e * _LN2_32[1] + lo))) - f)


@_helper
def _log_finish64(e, f, lo):
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    r = z * _horner(z, _LOG_64)
    return e * _LN2_64[0] - ((hfsq - (s * (hfsq + r) + (e * _LN2_64[1] + lo))) - f)


@_helper
def _trig_reduce32(x):
    # x = k pi/2 + r with |r| <= pi/4 (three-piece Cody-Waite; exact products for
    # |k| < 2**13, i.e. |x| < 12867). Returns r and k mod 4.
    ks = x * _TWO_OVER_PI32 + _SHIFT32
    kf = ks - _SHIFT32
    r = ((x - kf * _PIO2_32[0]) - kf * _PIO2_32[1]) - kf * _PIO2_32[2]
    # Only bites past the accurate range, where it keeps |sin|, |cos| <= 1.
    return _clamp(r, -_RMAX_32, _RMAX_32), _bits(ks) & 3


@_helper
def _trig_reduce64(x):
    ks = x * _TWO_OVER_PI64 + _SHIFT64
    kf = ks - _SHIFT64
    r = ((x - kf * _PIO2_64[0]) - kf * _PIO2_64[1]) - kf * _PIO2_64[2]
    return _clamp(r, -_RMAX_64, _RMAX_64), _bits(ks) & 3


@_helper
def _sin_poly32(r):
    # r + (a product of sign -sign(r)) is +0 for r = -0: the select keeps sin(-0) = -0
    z = r * r
    return r if z == 0 else r + r * z * _horner(z, _SIN_32)


@_helper
def _sin_poly64(r):
    # r + (a product of sign -sign(r)) is +0 for r = -0: the select keeps sin(-0) = -0
    z = r * r
    return r if z == 0 else r + r * z * _horner(z, _SIN_64)


@_helper
def _cos_poly32(r):
    # (1 - w) - hz recovers the rounding error of w = 1 - r^2/2 exactly.
    z = r * r
    hz = _HALF32 * z
    w = _ONE32 - hz
    return w + (((_ONE32 - w) - hz) + z * z * _horner(z, _COS_32))


@_helper
def _cos_poly64(r):
    z = r * r
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * z * _horner(z, _COS_64))


@_helper
def _quadrant(q, s, c):
    # sin(q pi/2 + r) from s = sin r, c = cos r.
    y = c if q & 1 else s
    return -y if q & 2 else y
