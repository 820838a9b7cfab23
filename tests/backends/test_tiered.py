"""Tiered start: the NumPy reference answers until a shape's kernels are compiled, then the
kernels do; updates carry on across the switch; a failed compile leaves the reference on."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import traceback

import numpy as np
import pytest
from conftest import tol

import staticgrad as sg
from staticgrad.backends import tiered


@contextlib.contextmanager
def held():
    """The compile thread busy with a job of ours until the block ends: a tiered function
    made inside cannot switch to its kernels before then."""
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(120)

    tiered.BACKGROUND.submit(hold)
    assert started.wait(120)
    try:
        yield
    finally:
        release.set()


def model(dtype):
    x = sg.placeholder((None, 6), dtype, name="x")
    w = sg.parameter(np.linspace(-1, 1, 18).reshape(6, 3).astype(dtype), name="w")
    loss = sg.sum(sg.tanh(x @ w) ** 2)
    return x, w, loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_reference_answers_until_the_kernels_are_ready(dtype, rng):
    x, w, loss = model(dtype)
    a = rng.standard_normal((5, 6)).astype(dtype)
    reference = sg.function([x], [loss, sg.grad(loss, w)], backend="numpy")(a)
    compiled = sg.function([x], [loss, sg.grad(loss, w)])(a)
    with held():
        f = sg.function([x], [loss, sg.grad(loss, w)], tiered=True)
        early = [f(a) for _ in range(3)]
        assert f.wait_compiled(timeout=0) is False
    for got in early:      # bit for bit what the reference backend gives
        for g, r in zip(got, reference):
            np.testing.assert_array_equal(g, r)
    assert f.stats["reference calls"] == 3
    assert f.wait_compiled() is True
    late = f(a)
    for g, c in zip(late, compiled):     # and then what the kernels give
        np.testing.assert_array_equal(g, c)
    assert f.stats["reference calls"] == 3
    assert f.stats["seconds"]["compile"] > 0


def test_updates_carry_on_across_the_switch(rng):
    x, w, loss = model(np.float64)
    start = w.value.copy()
    batches = rng.standard_normal((8, 5, 6))
    expected = start.copy()
    for b in batches:   # the same steps by hand, in NumPy
        z = np.tanh(b @ expected)
        expected = expected - 0.05 * (b.T @ (2 * z * (1 - z * z)))
    with held():
        step = sg.function([x], loss, updates=[(w, w - 0.05 * sg.grad(loss, w))], tiered=True)
        for b in batches[:4]:
            step(b)
    step.wait_compiled()
    for b in batches[4:]:
        step(b)
    assert step.stats["reference calls"] == 4
    np.testing.assert_allclose(w.value, expected, **tol(np.float64))


def test_a_new_shape_answers_from_the_reference_while_it_compiles(rng):
    x, w, loss = model(np.float32)
    f = sg.function([x], loss, tiered=True)
    f(np.ones((2, 6), np.float32))
    assert f.wait_compiled()
    calls = f.stats["reference calls"]
    with held():
        b = rng.standard_normal((7, 6)).astype(np.float32)
        np.testing.assert_allclose(f(b), sg.function([x], loss, backend="numpy")(b),
                                   **tol(np.float32))
        assert f.stats["reference calls"] == calls + 1
        assert f.wait_compiled(timeout=0.05) is False
    assert f.wait_compiled()
    f(b)
    assert f.stats["reference calls"] == calls + 1


def test_calls_from_threads_across_the_switch_agree(rng):
    x, w, loss = model(np.float64)
    a = rng.standard_normal((9, 6))
    want = sg.function([x], loss, backend="numpy")(a)
    f = sg.function([x], loss, tiered=True)
    got, errors = [], []

    def caller():
        try:
            for _ in range(200):
                got.append(f(a))
        except Exception as err:   # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_allclose(got, np.full(len(got), want), **tol(np.float64))


def test_a_failed_compile_warns_and_keeps_the_reference(monkeypatch, rng):
    from staticgrad.backends import numba as numba_backend

    def broken(*args):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(numba_backend, "compile", broken)
    x, w, loss = model(np.float64)
    a = rng.standard_normal((3, 6))
    with pytest.warns(RuntimeWarning, match="no compiler today"):
        f = sg.function([x], loss, tiered=True)
        f.program.built.wait(120)
    with pytest.raises(RuntimeError, match="compile failed") as info:
        f.wait_compiled()
    assert "no compiler today" in str(info.value.__cause__)
    np.testing.assert_allclose(f(a), sg.function([x], loss, backend="numpy")(a),
                               **tol(np.float64))


def test_tiered_is_a_numba_start_and_the_environment_can_ask_for_it(monkeypatch):
    x, w, loss = model(np.float64)
    with pytest.raises(ValueError, match="tiered=True.*backend='numpy'"):
        sg.function([x], loss, backend="numpy", tiered=True)
    monkeypatch.setenv("STATICGRAD_TIERED", "1")
    assert sg.function([x], loss).tiered
    assert "tiered" in repr(sg.function([x], loss))
    assert not sg.function([x], loss, backend="numpy").tiered
    assert not sg.function([x], loss, tiered=False).tiered
    monkeypatch.delenv("STATICGRAD_TIERED")
    assert not sg.function([x], loss).tiered


def test_inspecting_a_tiered_function_waits_for_its_kernels(rng):
    x, w, loss = model(np.float32)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    f = sg.function([x], loss, tiered=True)
    plain = sg.function([x], loss)
    assert f.source == plain.source
    assert [k.name for k in f.kernels] == [k.name for k in plain.kernels]
    report = f.explain(a, repeat=2, show=False)
    assert [k.name for k in report.kernels] == [k.name for k in plain.kernels]


FIRST_RESULT = """
import sys, threading
import numpy as np
import staticgrad as sg
from staticgrad.backends import tiered
release = threading.Event()
tiered.BACKGROUND.submit(lambda: release.wait(120))
x = sg.placeholder((None, 4), name="x")
f = sg.function([x], sg.sum(sg.exp(x)), tiered=True)
first = float(f(np.zeros((2, 4))))
before = "numba" in sys.modules
release.set()
ok = f.wait_compiled(300)
print(first, before, ok, "numba" in sys.modules, float(f(np.zeros((2, 4)))),
      f.stats["reference calls"])
"""


def test_a_first_result_needs_no_numba():
    env = dict(os.environ)
    env.pop("STATICGRAD_TIERED", None)
    out = subprocess.run([sys.executable, "-c", FIRST_RESULT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8.0", "False", "True", "True", "8.0", "1"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_compiles_what_its_parent_left_waiting():
    release = threading.Event()
    x, w, loss = model(np.float64)
    with contextlib.ExitStack() as stack:
        stack.callback(release.set)
        tiered.BACKGROUND.submit(lambda: release.wait(120))
        f = sg.function([x], loss, tiered=True)
        f(np.ones((2, 6)))
        pid = os.fork()
        if pid == 0:      # the child: its own thread runs the inherited jobs
            code = 1
            try:
                release.set()
                code = 0 if f.wait_compiled(300) and f.stats["reference calls"] == 1 else 2
            except BaseException:   # shown in the report (the exit code alone says nothing)
                traceback.print_exc()
                sys.stderr.flush()
                raise
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f.wait_compiled(300)
