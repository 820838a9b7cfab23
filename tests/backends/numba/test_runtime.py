"""The numba runtime's steady path: generated Python that calls the kernels' entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import staticgrad as sg


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


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_workers_sleep_between_loops_unless_the_user_says_otherwise(given, expected):
    # spinning OpenMP workers take the cores from the BLAS threads of the next product
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, staticgrad.backends.numba; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == expected


START = ("import sys, numpy as np, staticgrad as sg\n"
         "x = sg.placeholder((None, 3), np.float64, name='x')\n"
         "f = sg.function([x], sg.sum(x @ np.ones((3, 2))))\n"
         "print(f(np.ones((4, 3))), 'scipy.linalg' in sys.modules)\n")


def test_numba_starts_without_importing_scipy_and_leaves_its_blas_check_working():
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
    # and the user can have Numba start as it would without staticgrad
    env["STATICGRAD_SCIPY_AT_START"] = "1"
    out = subprocess.run([sys.executable, "-c", START], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    assert out.stdout.split() == ["24.0", "True"]


def test_numba_threads_avoid_an_openmp_that_another_library_started_spinning():
    # PyTorch loads the shared libgomp before staticgrad can ask it to let workers sleep; where
    # there is no shared libgomp to load first, nothing is switched
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")}
    code = ("import ctypes, numba\n"
            "try:\n    ctypes.CDLL('libgomp.so.1'); loaded = True\n"
            "except OSError:\n    loaded = False\n"
            "import staticgrad.backends.numba as b, staticgrad as sg, numpy as np\n"
            "print(loaded, b.shared_openmp_loaded(), numba.config.THREADING_LAYER)\n"
            "x = sg.placeholder((None,), np.float64, name='x')\n"
            "f = sg.function([x], sg.sum(sg.exp(x)))\n"
            "print(f(np.zeros(100000)), numba.threading_layer() if loaded else '-')")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    loaded = out.stdout.split()[0] == "True"
    if loaded:
        assert out.stdout.split() == ["True", "True", "workqueue", "100000.0", "workqueue"]
    else:
        assert out.stdout.split() == ["False", "False", "default", "100000.0", "-"]


# In a child process with two Numba threads (more than the cores is allowed), so the test runs
# whatever the machine: a loop of PARALLEL_MIN elements or more then gets a threaded build.
BIG_LOOP = """
import sys, numpy as np, staticgrad as sg
from concurrent.futures import ThreadPoolExecutor
from staticgrad.backends.numba import runtime
x = sg.placeholder((None,), name="x")
y = sg.exp(x * 0.75) + x
f = sg.function([x], [sg.sum(y), y])
xv = np.linspace(-1.0, 1.0, runtime.PARALLEL_MIN + 1001)
expected = np.exp(xv * 0.75) + xv

def check(total, y):
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-10)

check(*f(xv))                              # background: the serial build, nc chunks in turn
with ThreadPoolExecutor(4) as pool:        # calls from other threads meanwhile
    for result in pool.map(lambda _: f(xv), range(8)):
        check(*result)
assert f.wait_compiled(timeout=600)
(threaded,) = f.program.threaded.values()
assert threaded.signatures, "the threaded build was compiled"
check(*f(xv))                              # on the threaded build in either case
# Numba made its one prange a parallel loop (an option it did not take would compile a serial
# loop without a word)
(build,) = threaded.overloads.values()
print(build.metadata["parfor_diagnostics"].count_parfors())
print(runtime.BACKGROUND, len(f.program.building), f.stats.get("background", {}).get("kernels"))
"""


@pytest.mark.parametrize("setting, expected", [("1", "True 1 1"), ("0", "False 0 None")])
def test_threaded_builds_compile_in_the_background_only_when_asked(setting, expected, tmp_path):
    env = dict(os.environ, NUMBA_NUM_THREADS="2", STATICGRAD_CACHE_DIR=str(tmp_path),
               STATICGRAD_BACKGROUND_COMPILE=setting)
    out = subprocess.run([sys.executable, "-c", BIG_LOOP], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["1", *expected.split()]
