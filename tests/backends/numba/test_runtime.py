"""The numba runtime's steady path: generated Python that calls the kernels' entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import staticgrad as sg
from staticgrad.backends.numba import blas, runtime


def tiny():
    x = sg.placeholder((), name="x")
    w = sg.placeholder((), name="w")
    y = (x + w) * (w + 1)
    return sg.function([x, w], [y, y, x, *sg.grad(y, [x, w])])


def test_steady_source_calls_each_kernel_once_in_order():
    f = tiny()
    arrays, plan = f.prepare_call((np.array(2.0), np.array(1.0)))
    assert plan.steady is None
    f(np.array(2.0), np.array(1.0))
    text = f.program.steady_source(plan)
    assert text.startswith("def steady(a0, a1):")
    assert [line.strip().split("(")[0] for line in text.splitlines()
            if line.strip().startswith("K")] == [f"K{r}" for r in range(len(f.kernels))]
    # a repeated result is a copy, an argument result is a copy of the argument
    assert ".copy()" in text and "array(a0)" in text


def test_steady_results_never_alias():
    f = tiny()
    for _ in range(3):
        y1, y2, x, gx, gw = f(np.array(2.0), np.array(1.0))
        assert float(y1) == float(y2) == 6.0 and float(x) == 2.0
        assert (float(gx), float(gw)) == (2.0, 5.0)
        assert len({id(a) for a in (y1, y2, x, gx, gw)}) == 5
        y1 += 1.0
        assert float(y2) == 6.0


def test_steady_path_uses_entry_points_not_dispatchers():
    f = tiny()
    f(np.array(2.0), np.array(1.0))
    (plan,) = f._plans.values()
    names = plan.steady.__globals__
    kernels = [names[f"K{r}"] for r in range(len(f.kernels))]
    assert all(type(k).__name__ == "builtin_function_or_method" for k in kernels)


def test_a_2d_float_product_calls_the_package_function_on_its_base_arrays(monkeypatch, rng):
    loaded = []
    load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda source: loaded.append(source) or load(source))
    x = sg.placeholder((None, 4), name="x")
    w = sg.parameter(rng.standard_normal((3, 4)), name="w")
    f = sg.function([x], x @ w.T)
    (step,) = f.program.steps
    assert step.kernel is blas.matmul and not loaded     # no generated module for it
    # w.T is no buffer: w's own is passed, with BLAS told to read it transposed
    a, b, out = step.code.call.arrays
    assert (a, b) == (x, w) and step.code.call.flags == (("a_transposed", 0),
                                                           ("b_transposed", 1))
    xv = rng.standard_normal((5, 4))
    for _ in range(3):      # the first call, then the steady path's
        np.testing.assert_allclose(f(xv), xv @ w.value.T, rtol=1e-12)
    # nothing generated; blas.matmul compiled or loaded for float64, unless already here
    assert f.stats["distinct"] == f.stats.get("compiled", 0) == f.stats.get("loaded", 0) == 0
    assert sum(f.stats.get("library", {}).values()) <= 1


def test_one_operand_twice_and_constants_of_any_layout_reach_the_package_function(rng):
    x = sg.placeholder((None, 4), name="x")
    c = np.asfortranarray(rng.standard_normal((4, 3)))   # a constant keeps its layout
    f = sg.function([x], [x @ x.T, x @ c, sg.sum(x @ c[:, :2], axis=1)])
    assert all(s.kernel is blas.matmul for s in f.program.steps if s.code.kernel.kind == "matmul")
    xv = rng.standard_normal((5, 4))
    for _ in range(2):
        for got, want in zip(f(xv), [xv @ xv.T, xv @ c, (xv @ c[:, :2]).sum(axis=1)]):
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_integer_and_batched_products_keep_their_kernels(rng):
    a = sg.placeholder((2, 3, 4), name="a")
    i = sg.placeholder((3, 4), np.int64, name="i")
    for inputs, out in [([a], a @ sg.swapaxes(a, -1, -2)),     # batched
                        ([i], i @ i.T)]:                        # no BLAS for integers
        f = sg.function(inputs, out)
        (step,) = [s for s in f.program.steps if s.code.kernel.kind == "matmul"]
        assert step.code.call is None and step.kernel.py_func.__name__ == "kernel"
        args = [rng.integers(-5, 5, p.shape) if p.dtype.kind == "i" else
                rng.standard_normal(p.shape) for p in inputs]
        want = sg.function(inputs, out, backend="numpy")(*args)
        np.testing.assert_allclose(f(*args), want, rtol=1e-12)


def test_reshaped_operands_reach_the_package_function_as_views(rng):
    # a convolution's flattened windows: the reshape is a view of its input's memory, no
    # kernel and no copy, whether the input is an argument (a view made per call), a
    # buffer of the workspace (made once) or read transposed
    a = sg.placeholder((2, 3, 4), name="a")
    b = sg.placeholder((None, 4), name="b")
    hidden = sg.exp(a) * 2.0
    for inputs, out in [([a], sg.reshape(a, (6, 4)) @ sg.reshape(a, (4, 6))),
                        ([a], sg.reshape(hidden, (6, 4)) @ sg.reshape(a, (6, 4)).T),
                        ([a, b], sg.tanh(b @ sg.reshape(hidden, (6, 4)).T))]:
        f = sg.function(inputs, out)
        (step,) = [s for s in f.program.steps if s.code.kernel.kind == "matmul"]
        assert step.kernel is blas.matmul
        assert any(n.op == "reshape" for n in step.code.call.arrays[:2])
        args = [rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))][:len(inputs)]
        want = sg.function(inputs, out, backend="numpy")(*args)
        for _ in range(3):      # the first call, then the steady path's
            np.testing.assert_allclose(f(*args), want, rtol=1e-12)


def test_steady_calls_take_the_package_functions_code_for_their_dtype(rng):
    # blas.matmul has a compiled overload per dtype: each plan calls its own, not the
    # dispatcher (nor the other dtype's, which would read the arrays wrongly)
    functions = {}
    for dtype in (np.float32, np.float64):
        x = sg.placeholder((None, 5), dtype, name="x")
        functions[dtype] = sg.function([x], sg.tanh(x @ x.T))
    for dtype, f in functions.items():
        xv = rng.standard_normal((4, 5)).astype(dtype)
        for _ in range(3):
            np.testing.assert_allclose(f(xv), np.tanh(xv @ xv.T), rtol=1e-5)
        (plan,) = f._plans.values()
        r = next(r for r, s in enumerate(f.program.steps) if s.kernel is blas.matmul)
        assert plan.steady.__globals__[f"K{r}"] is \
            blas.matmul.overloads[plan.types[r]].entry_point


def test_a_kernel_compiled_for_two_dtypes_is_called_by_each_plans_entry_point():
    # x * y is one text for float32 and float64: one dispatcher with two overloads, each
    # plan's steady code calls its own (the dispatcher would cost its type dispatch)
    functions = []
    for dtype in (np.float32, np.float64):
        x, y = sg.placeholder((None,), dtype, name="x"), sg.placeholder((None,), dtype, name="y")
        functions.append(sg.function([x, y], x * y))
    assert functions[0].program.steps[0].kernel is functions[1].program.steps[0].kernel
    for f, dtype in zip(functions, (np.float32, np.float64)):
        a = np.arange(4, dtype=dtype)
        for _ in range(3):
            np.testing.assert_array_equal(f(a, a), a * a)
        (plan,) = f._plans.values()
        assert plan.steady.__globals__["K0"] is \
            f.program.steps[0].kernel.overloads[plan.types[0]].entry_point


def test_views_of_arguments_parameters_outputs_and_temporaries():
    # x[t] of a time-major argument, rows of a parameter, a slice of an output and of a
    # temporary, each a BLAS operand (so stored): views made per call or per workspace
    x = sg.placeholder((3, None, 4), name="x")
    w = sg.parameter(np.arange(20.0).reshape(5, 4) / 10, name="w")
    first = x[0] @ w[1:5]
    h = x[1] @ w[1:5]
    out = (h[1:] @ w[0:4]).sum() + (first[1:] @ w[0:4]).sum()
    f = sg.function([x], [first, out])
    ref = sg.function([x], [first, out], backend="numpy")
    assert len(f.program.call_views) >= 2 and f.program.space_views
    rng = np.random.default_rng(0)
    for n in (2, 5, 2):
        a = rng.standard_normal((3, n, 4))
        got, want = f(a), ref(a)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-12)
    assert "# a view" in f.source


def test_a_view_keeps_its_base_alive_until_its_last_reader():
    # h's arena block must not be reused while h[2:] (a view of it) is still to be read
    x = sg.placeholder((8, 8), name="x")
    h = sg.exp(x @ x)
    g = sg.sin(h[2:] @ x)            # h[2:]: a view of h, read after a kernel that frees h
    k = sg.cos(g @ x.T)
    y = [k.sum(), (h[2:] @ x).sum()]
    f, ref = sg.function([x], y), sg.function([x], y, backend="numpy")
    a = np.random.default_rng(1).standard_normal((8, 8)) / 4
    for got, want in zip(f(a), ref(a)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


START = ("import sys, numpy as np, staticgrad as sg\n"
         "x = sg.placeholder((None, 3), np.float64, name='x')\n"
         "f = sg.function([x], sg.sum(x @ np.ones((3, 2))))\n"
         "print(f(np.ones((4, 3))), 'scipy.linalg' in sys.modules)\n")


def test_numba_starts_without_importing_scipy_and_leaves_its_blas_check_working(tmp_path):
    # the test extra installs SciPy (scikit-learn needs it): Numba's start would import it
    pytest.importorskip("scipy")
    env = {k: v for k, v in os.environ.items() if k != "STATICGRAD_SCIPY_AT_START"}
    code = START + (
        "import numba, numba.np.arraymath as am, numba.np.linalg as la\n"
        "print(am.ensure_blas is la.ensure_blas, am._HAVE_BLAS)\n"
        "dot = numba.njit(lambda a, b: np.dot(a, b))\n"             # imports SciPy now
        "conv = numba.njit(lambda a, b: np.convolve(a, b))\n"       # Numba's own loop
        "a, b = np.arange(5.0), np.array([1.0, -2.0, 0.5])\n"
        "print(dot(a, a), np.allclose(conv(a, b), np.convolve(a, b)))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == ["24.0", "False", "True", "False", "30.0", "True"]
    # and the user can have Numba start as it would without staticgrad (when it compiles:
    # code loaded from the cache starts none of Numba's registries)
    env["STATICGRAD_SCIPY_AT_START"] = "1"
    env["STATICGRAD_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", START], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    assert out.stdout.split() == ["24.0", "True"]


# In a child process with three threads (more than the cores is allowed, and an odd count),
# so the test runs whatever the machine: a loop of PARALLEL_MIN elements or more runs its
# chunks on the pool's threads, all through the one serial build each kernel compiles.
BIG_LOOP = """
import numpy as np, staticgrad as sg
from concurrent.futures import ThreadPoolExecutor
from numba.np.ufunc import parallel
from staticgrad.backends.numba import runtime
x = sg.placeholder((None,), name="x")
m = sg.placeholder((None, 512), name="m")
y = sg.exp(x * 0.75) + x
share = sg.sum(y / sg.sum(y))                        # three nests: a total read by later ones
centred = m - sg.mean(m, axis=0)                     # rows in chunks, the mean after them all
outs = [sg.sum(y), y, sg.grad(share, x), centred, sg.sum(m * m, axis=1)]

def build():
    return sg.function([x, m], outs)

n = runtime.PARALLEL_MIN + 1001
xv = np.linspace(-1.0, 1.0, n)
mv = np.random.default_rng(0).standard_normal((1024, 512))
e = np.exp(xv * 0.75) + xv
want = [e.sum(), e, (0.75 * np.exp(xv * 0.75) + 1) * (1 / e.sum() - (e / e.sum() ** 2).sum()),
        mv - mv.mean(axis=0), (mv * mv).sum(axis=1)]
f = build()
with ThreadPoolExecutor(4) as users:                 # calls from four threads at once
    results = list(users.map(lambda _: f(xv, mv), range(8)))
for got in results:
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
(plan,) = f._plans.values()
print(len(plan.spread), sorted(plan.spread.values()))
# the same chunks on one thread (stage -1): the same bits
serial = build()
arrays, other = serial.prepare_call((xv, mv))
serial.program.prepare(other)
other.spread = {}
same = all(np.array_equal(a, b) for a, b in zip(serial(xv, mv), results[0]))
# steady calls on one thread, as when other work has the cores: the same bits again
plan.choice.threads, plan.choice.trial_at = False, float("inf")
alone = all(np.array_equal(a, b) for a, b in zip(f(xv, mv), results[0]))
print(same and alone, "choice.pick()" in f.program.steady_source(plan),
      all(len(s.kernel.signatures) == 1 for s in f.program.steps), parallel._is_initialized)
"""


def test_big_loops_run_their_chunks_on_the_pool_threads(tmp_path):
    env = dict(os.environ, NUMBA_NUM_THREADS="3", STATICGRAD_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", BIG_LOOP], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    # three loops on threads: one without stores after its chunks (y and the row sums), one
    # storing a total (sum(y) and the column mean), one in three nests (the share's gradient)
    assert lines[-2] == "3 [(False,), (True,), (True, False, False)]"
    # bit for bit what the same chunks give on one thread, whether the plan's Choice runs its
    # calls there or not; Numba's own threads never started: every kernel is its one serial
    # build
    assert lines[-1] == "True True True False"
