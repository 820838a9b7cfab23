"""Throughput of staticgrad.mathlib against math.* in Numba and np.* on arrays.

Times ``out[i] = f(x[i])`` over 10M float32 elements (best of several runs, one thread)
and prints elements per nanosecond; a plain copy loop gives the memory-bandwidth ceiling.
The last rows time the fused loop from the design notes, tanh(x*w+1)**2 * exp(-x*x) and
its derivative. Run: ``python bench/mathlib_speed.py [n]``.
"""

from __future__ import annotations

import math
import sys
import time

import numba
import numpy as np

from staticgrad.backends.numba import mathlib as ml

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
REPEAT = 7

@numba.njit
def math_sigmoid(v):
    return 1 / (1 + math.exp(-v))


# name: (mathlib function, math.* expression, NumPy expression, input range)
CASES = {
    "exp": (ml.exp, math.exp, np.exp, (-80.0, 80.0)),
    "log": (ml.log, math.log, np.log, (1e-3, 1e3)),
    "log1p": (ml.log1p, math.log1p, np.log1p, (-0.9, 10.0)),
    "expm1": (ml.expm1, math.expm1, np.expm1, (-5.0, 5.0)),
    "tanh": (ml.tanh, math.tanh, np.tanh, (-5.0, 5.0)),
    "sigmoid": (ml.sigmoid, math_sigmoid, lambda a: 1 / (1 + np.exp(-a)), (-20.0, 20.0)),
    "sin": (ml.sin, math.sin, np.sin, (-100.0, 100.0)),
    "cos": (ml.cos, math.cos, np.cos, (-100.0, 100.0)),
    "tan": (ml.tan, math.tan, np.tan, (-1.5, 1.5)),
}


def loop_of(f):
    # A fresh loop per function: the callee is a compile-time constant, as in generated code.
    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


@numba.njit(error_model="numpy")
def copy_loop(x, out):
    for i in range(x.size):
        out[i] = x[i]


def fused(tanh, exp):
    one, two = np.float32(1.0), np.float32(2.0)

    @numba.njit(error_model="numpy")
    def loop(x, w, y, gx):
        for i in range(x.size):
            xi = x[i]
            t = tanh(xi * w + one)
            e = exp(-xi * xi)
            y[i] = t * t * e
            gx[i] = two * t * (one - t * t) * w * e - two * xi * t * t * e
    return loop


def best(fn, *args):
    fn(*args)  # compile / warm up
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    out = np.empty(N, np.float32)
    base = rng.random(N, dtype=np.float32)
    rate = lambda t: N / (t * 1e9)  # elements per ns
    print(f"numba {numba.__version__}, numpy {np.__version__}, n = {N:,} float32, "
          f"elements/ns (higher is better)")
    print(f"{'copy loop (bandwidth)':24s} {rate(best(copy_loop, base, out)):8.3f}")
    print(f"{'function':10s} {'mathlib':>9s} {'math.*':>9s} {'np.*':>9s} "
          f"{'vs math':>8s} {'vs np':>7s}")
    for name, (mine, libm, npf, (lo, hi)) in CASES.items():
        x = (lo + (hi - lo) * base).astype(np.float32)
        t_mine = best(loop_of(mine), x, out)
        t_libm = best(loop_of(libm), x, out)
        t_np = best(npf, x)
        print(f"{name:10s} {rate(t_mine):9.3f} {rate(t_libm):9.3f} {rate(t_np):9.3f} "
              f"{t_libm / t_mine:7.1f}x {t_np / t_mine:6.1f}x")

    x = (4 * base - 2).astype(np.float32)
    w = np.float32(0.7)
    y, gx = np.empty_like(x), np.empty_like(x)
    t_mine = best(fused(ml.tanh, ml.exp), x, w, y, gx)
    t_libm = best(fused(math.tanh, math.exp), x, w, y, gx)
    t_copy = best(copy_loop, x, out)
    # The fused loop moves 3 arrays (x in, y and gx out) against the copy's 2.
    print(f"fused tanh/exp fwd+grad: mathlib {rate(t_mine):.3f}, math.* {rate(t_libm):.3f} "
          f"elements/ns ({t_libm / t_mine:.1f}x); {t_mine / (1.5 * t_copy):.2f}x the "
          f"bandwidth floor")


if __name__ == "__main__":
    main()
