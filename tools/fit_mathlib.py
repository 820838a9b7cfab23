"""Fit the polynomial coefficients of staticgrad/mathlib.py (weighted minimax, in mpmath).

Each kernel approximates a smooth remainder function on a small reduced interval; the
coefficients come from Lawson's algorithm (iteratively reweighted least squares converging
to the minimax fit) on Chebyshev nodes, in 50-digit arithmetic, then rounded to the target
precision. Run ``python tools/fit_mathlib.py`` and paste the printed tables.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 50


def lawson(f, weight, lo, hi, degree, nodes=600, iters=60):
    """Coefficients c (low order first) minimizing max |weight(t) * (f(t) - sum c_i t^i)|."""
    ts = [lo + (hi - lo) * (1 - mp.cos(mp.pi * (j + 0.5) / nodes)) / 2 for j in range(nodes)]
    fs = [f(t) for t in ts]
    ws = [weight(t) for t in ts]
    lw = [mp.mpf(1) / nodes] * nodes  # Lawson weights, renormalized each step
    n = degree + 1
    for _ in range(iters):
        ata = mp.zeros(n, n)
        atb = mp.zeros(n, 1)
        for t, fv, w, l in zip(ts, fs, ws, lw):
            row = [t ** i for i in range(n)]
            ww = l * w * w
            for i in range(n):
                atb[i] += ww * row[i] * fv
                for j in range(i, n):
                    ata[i, j] += ww * row[i] * row[j]
        for i in range(n):
            for j in range(i):
                ata[i, j] = ata[j, i]
        c = mp.lu_solve(ata, atb)
        errs = [abs(w * (fv - mp.polyval(list(reversed(c)), t))) for t, fv, w in zip(ts, fs, ws)]
        lw = [l * e for l, e in zip(lw, errs)]
        total = sum(lw)
        lw = [l / total for l in lw]
    return [c[i] for i in range(n)], max(errs)


def rounded_error(f, weight, lo, hi, coeffs, dtype):
    """Max weighted error after rounding the coefficients to ``dtype`` (evaluated exactly)."""
    cs = [mp.mpf(float(dtype(c))) for c in coeffs]
    ts = [lo + (hi - lo) * mp.mpf(j) / 4000 for j in range(1, 4001)]
    return max(abs(weight(t) * (f(t) - mp.polyval(list(reversed(cs)), t))) for t in ts)


def expm1_rem(r):  # e^r = 1 + r + r^2 P(r)
    return (mp.expm1(r) - r) / r ** 2 if r else mp.mpf(1) / 2


def expm1_weight(r):  # error relative to expm1(r), the stricter of exp and expm1
    return r ** 2 / mp.expm1(r) if r else mp.mpf(0)


def log_rem(z):  # log1p(f) = 2s + s R(z), s = f/(2+f), z = s^2, R(z) = z Q(z)
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) - 2 * s) / (s * z) if z else mp.mpf(2) / 3


def sin_rem(z):  # sin r = r + r^3 S(z), z = r^2
    r = mp.sqrt(z)
    return (mp.sin(r) - r) / (r * z) if z else -mp.mpf(1) / 6


def cos_rem(z):  # cos r = 1 - z/2 + z^2 C(z)
    r = mp.sqrt(z)
    return (mp.cos(r) - 1 + z / 2) / z ** 2 if z else mp.mpf(1) / 24


LN2_HALF = mp.log(2) / 2 * mp.mpf("1.001")  # |r| after exp's reduction, with slack
S_MAX = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1) * mp.mpf("1.001")  # |s| in log's reduction
PIO4 = mp.pi / 4 * mp.mpf("1.002")  # |r| after the trig reduction (k may round up)

FITS = {
    # name: (function, weight, lo, hi, {dtype: degree})
    "EXPM1": (expm1_rem, expm1_weight, -LN2_HALF, LN2_HALF, {np.float32: 4, np.float64: 9}),
    "LOG": (log_rem, lambda z: z / 2, mp.mpf(0), S_MAX ** 2, {np.float32: 2, np.float64: 6}),
    "SIN": (sin_rem, lambda z: z, mp.mpf(0), PIO4 ** 2, {np.float32: 2, np.float64: 5}),
    "COS": (cos_rem, lambda z: z * z / mp.cos(mp.sqrt(z)), mp.mpf(0), PIO4 ** 2,
            {np.float32: 2, np.float64: 5}),
}


def split(value, bits, pieces, dtype):
    """Cody-Waite split: ``pieces - 1`` constants of ``bits`` significant bits (so k * c is
    exact for small integers k) and a last one rounded to ``dtype``."""
    out, rest = [], mp.mpf(value)
    for _ in range(pieces - 1):
        e = int(mp.floor(mp.log(abs(rest), 2)))
        c = mp.nint(rest * mp.mpf(2) ** (bits - 1 - e)) / mp.mpf(2) ** (bits - 1 - e)
        out.append(c)
        rest -= c
    out.append(mp.mpf(float(dtype(rest))))
    return [float(dtype(c)) for c in out]


SPLITS = {
    # name: (value, {dtype: (bits, pieces)}); bits leave room for |k| < 2**(p - bits)
    "LN2": (mp.log(2), {np.float32: (16, 2), np.float64: (42, 2)}),
    "PIO2": (mp.pi / 2, {np.float32: (11, 3), np.float64: (33, 3)}),
}


def main():
    for name, (value, fmts) in SPLITS.items():
        for dtype, (bits, pieces) in fmts.items():
            consts = split(value, bits, pieces, dtype)
            tag = f"{name}{np.dtype(dtype).itemsize * 8}"
            print(f"_{tag} = ({', '.join(float.hex(c) for c in consts)})")
    for name, (f, weight, lo, hi, degrees) in FITS.items():
        for dtype, degree in degrees.items():
            coeffs, err = lawson(f, weight, lo, hi, degree)
            bits = np.finfo(dtype).nmant + 1
            rerr = rounded_error(f, weight, lo, hi, coeffs, dtype)
            tag = f"{name}{np.dtype(dtype).itemsize * 8}"
            print(f"# {tag}: degree {degree}, max weighted error {float(err):.3g} "
                  f"({float(err) * 2 ** bits:.3f} ulp), rounded {float(rerr) * 2 ** bits:.3f} ulp")
            body = ", ".join(repr(float(dtype(c))) for c in coeffs)
            print(f"_{tag} = ({body})")


if __name__ == "__main__":
    main()
