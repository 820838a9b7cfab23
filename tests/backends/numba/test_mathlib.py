"""backends.numba.mathlib: accuracy in ulps against long-double references, NumPy's special
values, dtype preservation and vectorization, always through @njit loops as generated
code calls the functions."""

from __future__ import annotations

import functools
import re

import numba
import numpy as np
import pytest

from staticgrad.backends.numba import mathlib as ml

LD = np.longdouble
NAMES = ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sin", "cos", "tan"]
DTYPES = [np.float32, np.float64]
# Max error in ulps (both dtypes), as documented in staticgrad/mathlib.py; measured
# maxima are 1.0 / 0.9 / 0.9 / 2.2 / 2.6 / 2.3 / 1.5 / 1.5 / 3.7.
BOUND = dict(exp=1.5, log=1.5, log1p=1.5, expm1=3.0, tanh=3.5, sigmoid=3.0, sin=2.5, cos=2.5,
             tan=4.0)
# sin/cos/tan near their zeros: the reduced argument carries an absolute error, so there
# the error is measured as an argument perturbation |y - ref| / |f'(x)| instead.
ARG_ERR = {np.float32: 2.0 ** -32, np.float64: 2.0 ** -60}
# Where the trig range reduction is exact (Cody-Waite products), for each dtype.
TRIG_RANGE = {np.float32: 12867.0, np.float64: 1.6e6}
# A dense grid of the interesting region per function.
MAIN = dict(exp=(-110, 90), log=(0, 20), log1p=(-1, 20), expm1=(-20, 90), tanh=(-12, 12),
            sigmoid=(-110, 110), sin=(-10, 10), cos=(-10, 10), tan=(-10, 10))


@functools.cache
def loop(name, fastmath=False):
    """The loop shape staticgrad generates: ``out[i] = f(x[i])``."""
    f = getattr(ml, name)
    # cached, so flags come as a frozenset; Numba wants a set
    flags = set(fastmath) if isinstance(fastmath, frozenset) else fastmath

    @numba.njit(fastmath=flags)
    def run(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return run


def call(name, x, fastmath=False):
    out = np.empty_like(x)
    loop(name, fastmath)(x, out)
    return out


def reference(name, x):
    x = x.astype(LD)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1, e) / (1 + e)
        return getattr(np, name)(x)


def derivative(name, x):
    x = x.astype(LD)
    return dict(sin=np.cos, cos=np.sin, tan=lambda v: 1 + np.tan(v) ** 2)[name](x)


def ulp_error(y, ref, dtype):
    """|y - ref| in units of the spacing of ``dtype`` at ref; 0 where both are the same
    special value, inf where only one of them is inf or nan."""
    with np.errstate(all="ignore"):
        rt = ref.astype(dtype)
        err = np.abs(y.astype(LD) - ref) / np.spacing(np.abs(rt)).astype(LD)
        same = (y == rt) | (np.isnan(y) & np.isnan(rt))
        err = np.where(same, 0, err)
        err = np.where(np.isnan(err) | (np.isinf(y) != np.isinf(rt)), np.inf, err)
    return err.astype(np.float64)


def grid(name, dtype):
    """All float classes: a stride through every bit pattern (float32) or random bit
    patterns (float64), a dense grid of the main range and tiny magnitudes."""
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        bits = np.arange(0, 2 ** 32, 9973, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        bits = rng.integers(0, 2 ** 64, 400_000, dtype=np.uint64).view(np.float64)
    lo, hi = MAIN[name]
    tiny = np.geomspace(np.finfo(dtype).smallest_subnormal, 1, 20_000)
    x = np.concatenate([bits.astype(dtype), np.linspace(lo, hi, 600_001, dtype=dtype),
                        tiny.astype(dtype), -tiny.astype(dtype)])
    x = x[np.isfinite(x)]
    if name in ("sin", "cos", "tan"):
        lim = TRIG_RANGE[dtype]
        x = np.concatenate([x[np.abs(x) < lim], rng.uniform(-lim, lim, 300_000).astype(dtype)])
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_ulp_error(name, dtype):
    x = grid(name, dtype)
    y = call(name, x)
    assert y.dtype == dtype
    ref = reference(name, x)
    err = ulp_error(y, ref, dtype)
    if name in ("sin", "cos", "tan"):
        with np.errstate(all="ignore"):
            arg_err = np.abs(y.astype(LD) - ref) / np.abs(derivative(name, x))
        err = np.where(arg_err.astype(np.float64) <= ARG_ERR[dtype], 0, err)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[name], (
        f"{name}({x[worst]!r}) = {y[worst]!r}, want {ref[worst]!r}: {err[worst]:.2f} ulp")


SPECIAL = {
    # name: [(x, expected)], checked exactly, including the sign of zero
    "exp": [(0, 1), (-0.0, 1), (np.inf, np.inf), (-np.inf, 0), (1000, np.inf), (-1000, 0)],
    "log": [(1, 0), (0, -np.inf), (-0.0, -np.inf), (-1, np.nan), (np.inf, np.inf),
            (-np.inf, np.nan)],
    "log1p": [(0, 0), (-0.0, -0.0), (-1, -np.inf), (-2, np.nan), (np.inf, np.inf),
              (-np.inf, np.nan)],
    "expm1": [(0, 0), (-0.0, -0.0), (np.inf, np.inf), (-np.inf, -1), (1000, np.inf),
              (-1000, -1)],
    "tanh": [(0, 0), (-0.0, -0.0), (np.inf, 1), (-np.inf, -1), (50, 1), (-50, -1)],
    "sigmoid": [(0, 0.5), (-0.0, 0.5), (np.inf, 1), (-np.inf, 0), (1000, 1), (-1e4, 0)],
    "sin": [(0, 0), (-0.0, -0.0), (np.inf, np.nan), (-np.inf, np.nan)],
    "cos": [(0, 1), (-0.0, 1), (np.inf, np.nan), (-np.inf, np.nan)],
    "tan": [(0, 0), (-0.0, -0.0), (np.inf, np.nan), (-np.inf, np.nan)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, dtype):
    xs, want = (np.array(v, dtype) for v in zip(*SPECIAL[name], (np.nan, np.nan)))
    got = call(name, xs)
    np.testing.assert_array_equal(got, want)  # nan == nan here
    # the sign of a NaN is not meaningful (NumPy's own libm gives either), so it is not compared
    signed = lambda v: np.signbit(v) & ~np.isnan(v)
    np.testing.assert_array_equal(signed(got), signed(want))
    # ... and every special value class agrees with NumPy's own result
    probe = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0,
                      np.finfo(dtype).max, -np.finfo(dtype).max,
                      np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).smallest_subnormal,
                      np.finfo(dtype).smallest_normal], dtype)
    if name in ("sin", "cos", "tan"):
        # past TRIG_RANGE the reduction is not accurate: only the value class is promised
        probe = probe[~(np.abs(probe) > TRIG_RANGE[dtype])]
    with np.errstate(all="ignore"):
        npy = reference(name, probe).astype(dtype)
    got = call(name, probe)
    for check in (np.isnan, np.isinf, signed, lambda v: v == 0):
        np.testing.assert_array_equal(check(got), check(npy), err_msg=f"{name} {check}")


def test_exp_overflow_and_subnormal_edges():
    f32 = np.float32
    big = np.nextafter(f32(np.log(np.finfo(f32).max)), f32(0))
    x = np.array([big, np.nextafter(big, f32(100)) + f32(1e-5), -103.9, -104.0], f32)
    y = call("exp", x)
    assert np.isfinite(y[0]) and y[1] == np.inf
    assert 0 < y[2] < np.finfo(f32).smallest_normal and y[3] == 0  # subnormal, underflow
    assert call("exp", np.array([-745.0, -746.0, 709.7, 709.8]))[[0, 1, 3]].tolist() == \
        [5e-324, 0.0, np.inf]


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name):
    """The float32 kernel is chosen while typing, and no float64 arithmetic sneaks in."""
    run = loop(name)
    run(np.ones(4, np.float32), np.empty(4, np.float32))
    sig = next(s for s in run.signatures if s[0].dtype == numba.float32)
    ir = run.inspect_llvm(sig)
    assert "fpext" not in ir and not re.search(r"\bdouble\b", ir.split("vector.body")[1])

    f = getattr(ml, name)

    @numba.njit
    def typeof(x):
        return f(x)

    for arg, want in [(np.float32(1), numba.float32), (1.0, numba.float64),
                      (1, numba.float64)]:
        typeof(arg)
        assert typeof.overloads[typeof.signatures[-1]].signature.return_type == want


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_loop_vectorizes(name, dtype):
    run = loop(name)
    run(np.ones(64, dtype), np.empty(64, dtype))
    sig = next(s for s in run.signatures if s[0].dtype == numba.from_dtype(dtype))
    ir = run.inspect_llvm(sig)
    lane = "float" if dtype == np.float32 else "double"
    assert re.search(rf"<(\d+) x {lane}>", ir), "loop was not vectorized"
    # no libm (or any non-intrinsic) call is left in the vectorized loop body
    body = ir.split("vector.body:")[1].split("middle.block")[0]
    calls = re.findall(r"call [^\n]*?@([\w.\"]+)\(", body)
    assert all(c.startswith("llvm.") for c in calls), calls


def test_exp32_loop_has_packed_instructions():
    run = loop("exp")
    run(np.ones(64, np.float32), np.empty(64, np.float32))
    sig = next(s for s in run.signatures if s[0].dtype == numba.float32)
    asm = run.inspect_asm(sig)
    assert re.search(r"\bv?(fmadd\w*|mul|add)ps\s[^\n]*%[xyz]mm", asm), "no packed float ops"


@pytest.mark.parametrize("name", NAMES)
def test_caller_fastmath_flags_do_not_leak(name):
    """Kernels keep their own flags when inlined: a caller compiled with the allowed
    fast-math flags gets bit-identical results (including nan/inf handling)."""
    x = np.concatenate([np.linspace(-50, 50, 10_001), [0, -0.0, np.inf, -np.inf, np.nan]])
    for dtype in DTYPES:
        xs = x.astype(dtype)
        plain = call(name, xs)
        fast = call(name, xs, fastmath=frozenset({"reassoc", "contract", "nsz", "arcp"}))
        np.testing.assert_array_equal(plain.view(np.uint8), fast.view(np.uint8))


def test_python_calls_follow_the_argument_dtype():
    assert ml.exp(np.float32(0)) == 1 and ml.exp(np.float32(0)).dtype == np.float32
    y = ml.sin(np.zeros((2, 3)))
    assert y.shape == (2, 3) and y.dtype == np.float64
    assert ml.sigmoid(np.arange(3)).dtype == np.float64
