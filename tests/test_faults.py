"""Faults in the middle of a step: a KeyboardInterrupt at any point of a call, an exception
raised by a custom op's code between kernels. Parameters end as before the step (or, for an
interrupt that arrives once the new values are being written, as after it), never a mix; no
lock is left taken; the function keeps working."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest

import staticgrad as sg

PARAMS = 24   # many parameters: a loop writing them one by one would be caught halfway


@pytest.fixture(scope="module")
def wide_step():
    rng = np.random.default_rng(0)
    ws = [sg.parameter(rng.standard_normal(64), name=f"w{k}") for k in range(PARAMS)]
    x = sg.placeholder((64,), name="x")
    loss = sg.sum(sum((sg.tanh(w * x) for w in ws), sg.constant(0.0)) ** 2)
    step = sg.function([x], loss, updates=sg.optim.sgd(loss, ws, lr=1e-3))
    return ws, step, rng.standard_normal(64)


def test_keyboard_interrupts_never_leave_parameters_half_updated(wide_step):
    ws, step, xv = wide_step
    step(xv)                      # compiled and steady before the interrupts start
    armed = False
    landed: list = []

    def handler(signum, frame):
        # raise only while a step runs and inside staticgrad's own code (not in this test)
        if armed and "staticgrad" in frame.f_code.co_filename:
            landed.append(frame.f_code.co_name)
            raise KeyboardInterrupt

    stop = threading.Event()

    def pester():
        while not stop.is_set():
            time.sleep(random.uniform(0, 2e-4))
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, handler)
    thread = threading.Thread(target=pester, daemon=True)
    thread.start()
    states = {"completed": 0, "before": 0, "after": 0, "mixed": 0}
    deadline = time.monotonic() + 4.0
    try:
        while time.monotonic() < deadline:
            snapshot = [w.value.copy() for w in ws]
            try:
                armed = True
                step(xv)
                armed = False
                states["completed"] += 1
            except KeyboardInterrupt:
                armed = False
                same = [np.array_equal(w.value, s) for w, s in zip(ws, snapshot)]
                states["before" if all(same) else "after" if not any(same) else "mixed"] += 1
    finally:
        stop.set()
        thread.join(5)
        armed = False
        time.sleep(0.1)   # signals still pending run this (disarmed) handler, not the default
        signal.signal(signal.SIGINT, previous)
    interrupted = states["before"] + states["after"] + states["mixed"]
    assert interrupted >= 50, states          # the test did interrupt steps
    assert states["mixed"] == 0, states
    assert states["before"] > states["after"], states   # most land while kernels run
    assert not any(w.lock.locked() for w in ws), "an interrupt left a parameter's lock taken"
    # and the function still works: one more step equals the reference's
    before = [w.value.copy() for w in ws]
    loss = step(xv)
    saved = [w.value.copy() for w in ws]
    for w, b in zip(ws, before):
        w.value = b
    ref = sg.function([step.inputs[0]], step.outputs[0], updates=step.updates, backend="numpy")
    np.testing.assert_allclose(ref(xv), loss, rtol=1e-12)
    for w, s in zip(ws, saved):
        np.testing.assert_allclose(w.value, s, rtol=1e-12, atol=1e-15)


@sg.custom_vjp
def lookup(table, idx):
    return sg.take(table, idx, axis=0)


@lookup.defvjp
def lookup_vjp(g, y, table, idx):
    return [sg.grad(sg.sum(sg.take(table, idx, axis=0) * g), table), None]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_exception_from_a_custom_op_mid_step_writes_nothing(backend):
    # kernels run before the custom op's bounds check fails (the forward matmul), and the
    # update would come after: the call raises, naming the op and line, and writes nothing
    rng = np.random.default_rng(5)
    x = sg.placeholder((None, 3), name="x")
    idx = sg.placeholder((None,), np.int64, name="idx")
    w = sg.parameter(rng.standard_normal((3, 4)), name="w")
    table = sg.parameter(rng.standard_normal((6, 4)), name="table")
    h = sg.tanh(x @ w)
    loss = sg.sum(h * lookup(table, idx))
    step = sg.function([x, idx], loss, updates=sg.optim.sgd(loss, [w, table], lr=0.1),
                       backend=backend)
    xv = rng.standard_normal((5, 3))
    good, bad = np.array([0, 1, 2, 3, 5]), np.array([0, 1, 2, 3, 6])
    step(xv, good)
    before = [w.value.copy(), table.value.copy()]
    with pytest.raises(IndexError, match=r"take at test_faults\.py:\d+.*out of bounds"):
        step(xv, bad)
    np.testing.assert_array_equal(w.value, before[0])
    np.testing.assert_array_equal(table.value, before[1])
    assert not w.lock.locked() and not table.lock.locked()
    step(xv, good)             # still works, and applies its update
    assert not np.array_equal(w.value, before[0])
