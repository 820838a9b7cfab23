"""One compiled function called from many Python threads at once: every result equals the
serial result, no result is aliased by a later call, and updates are applied exactly once each."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import staticgrad as sg

THREADS = 8
CALLS = 1000   # per thread: the load, 8 x 1,000 calls


def run_threads(worker, count: int = THREADS, timeout: float = 300.0) -> None:
    """Start ``count`` threads on ``worker(k)``, all released at once; re-raise any failure."""
    start = threading.Barrier(count)
    errors: list = []

    def body(k):
        try:
            start.wait()
            worker(k)
        except BaseException as err:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(err)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def tanh_layer():
    x = sg.placeholder((None, 64), dtype=np.float64, name="x")
    w = sg.parameter(np.random.default_rng(0).standard_normal((64, 16)), name="w")
    loss = sg.sum(sg.tanh(x @ w) ** 2)
    return x, w, loss, sg.function([x], [loss, sg.grad(loss, w)])


def test_calls_from_eight_threads_equal_serial_calls(tanh_layer):
    # the reproduction: batch sizes vary, so several shape plans are live at once,
    # and every thread feeds different inputs at every step
    x, w, loss, f = tanh_layer
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((int(rng.integers(1, 40)), 64)) for _ in range(64)]
    want = [[np.array(o, copy=True) for o in f(a)] for a in inputs]
    bad, held, done = [], [], []

    def worker(k):
        for i in range(CALLS):
            j = (i * 7 + k) % len(inputs)
            got = f(inputs[j])
            if not all(np.array_equal(g, e) for g, e in zip(got, want[j])):
                bad.append((k, i))
            if i % 50 == 0:
                held.append((j, got))      # kept: a later call must not overwrite it
        done.append(k)

    run_threads(worker)
    assert sorted(done) == list(range(THREADS))
    assert not bad, f"{len(bad)} of {THREADS * CALLS} results differ from the serial ones"
    for j, got in held:
        assert all(np.array_equal(g, e) for g, e in zip(got, want[j])), "a held result changed"


def test_threaded_reductions_from_four_threads_equal_serial_calls():
    # big enough for the threaded build: each call's per-chunk partials live in its own
    # workspace, so calls at the same time never add into each other's
    x = sg.placeholder((None, 512), dtype=np.float64, name="x")
    f = sg.function([x], [sg.sum(x * x, axis=0), sg.sum(x)])
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((600, 512)) for _ in range(4)]
    want = [[np.array(o, copy=True) for o in f(a)] for a in inputs]
    np.testing.assert_allclose(want[0][0], np.sum(inputs[0] ** 2, axis=0), rtol=1e-12)
    bad = []

    def worker(k):
        for i in range(40):
            j = (i + k) % len(inputs)
            if not all(np.array_equal(g, e) for g, e in zip(f(inputs[j]), want[j])):
                bad.append((k, i))

    run_threads(worker, count=4)
    assert not bad, f"{len(bad)} of 160 results differ from the serial ones"


def test_results_held_by_one_thread_are_not_reused_by_another(tanh_layer):
    x, w, loss, f = tanh_layer
    a = np.ones((5, 64))
    first = f(a)
    copies = [np.array(v, copy=True) for v in first]

    def worker(k):
        for _ in range(200):
            f(np.full((5, 64), float(k)))

    run_threads(worker)
    for v, c in zip(first, copies):
        np.testing.assert_array_equal(v, c)


def test_updates_from_eight_threads_are_each_applied_once():
    # w += x every call: the final value is the sum over all calls, whatever their order,
    # only if no two calls read the same old value (a lost update)
    w = sg.parameter(np.zeros(3), name="w")
    x = sg.placeholder((3,), name="x")
    step = sg.function([x], sg.sum(w), updates=[(w, w + x)])
    seen: list = []

    def worker(k):
        for _ in range(CALLS):
            seen.append(float(step(np.ones(3))))

    run_threads(worker)
    assert w.value.tolist() == [THREADS * CALLS * 1.0] * 3
    # each call saw the value left by exactly one earlier call: some serial order
    assert sorted(seen) == [3.0 * k for k in range(THREADS * CALLS)]


def test_training_steps_from_eight_threads_equal_their_serial_replay():
    # several parameters updated together by a real step (SGD on a linear model), each thread
    # with its own data. A step counter updated in the same call says where each call fell
    # in the serial order the locks made; replaying the calls in that order gives the same
    # weights bit for bit only if every step read whole values and wrote all of them once.
    rng = np.random.default_rng(3)
    x = sg.placeholder((None, 4), name="x")
    y = sg.placeholder((None,), name="y")

    def model():
        w, b = sg.parameter(np.zeros(4), name="w"), sg.parameter(np.zeros(()), name="b")
        t = sg.parameter(np.zeros(()), name="t")
        loss = sg.mean((x @ w + b - y) ** 2)
        updates = sg.optim.sgd(loss, [w, b], lr=1e-3) + [(t, t + 1.0)]
        return (w, b), sg.function([x, y], [loss, t], updates=updates)

    (w, b), step = model()
    data = [(rng.standard_normal((5, 4)), rng.standard_normal(5)) for _ in range(THREADS)]
    order: list = []

    def worker(k):
        for _ in range(CALLS // 4):
            _, t = step(*data[k])
            order.append((int(t), k))

    run_threads(worker)
    assert sorted(t for t, _ in order) == list(range(THREADS * CALLS // 4))
    (w2, b2), serial = model()
    for _, k in sorted(order):
        serial(*data[k])
    np.testing.assert_array_equal(w.value, w2.value)
    np.testing.assert_array_equal(b.value, b2.value)


def test_reading_a_parameter_while_another_thread_updates_it_sees_whole_values():
    # an update overwrites a parameter in place; a reader must never see half of it
    w = sg.parameter(np.zeros(4096), name="w")
    step = sg.function([], sg.sum(w), updates=[(w, w + 1.0)])
    read = sg.function([], sg.max(w) - sg.min(w))
    spread: list = []

    def worker(k):
        for _ in range(200):
            if k % 2:
                step()
            else:
                spread.append(float(read()))

    run_threads(worker, count=4)
    assert w.value[0] == 400.0 and np.all(w.value == w.value[0])
    assert max(spread) == 0.0, "a reader saw a parameter halfway through an update"
