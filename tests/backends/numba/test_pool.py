"""The pool's threads: each chunk once, on whichever thread claims it, then the stores on the
caller's; and ``Choice``, which picks threads or one thread by the calls' times."""

from __future__ import annotations

import threading
import time

import pytest

from staticgrad.backends.numba import pool


def recording(fail_at=None):
    log, lock = [], threading.Lock()

    def kernel(tag, nc, c0, c1, stage):
        time.sleep(0.01 if c0 else 0.0)   # the caller's chunk ends first: it must wait
        with lock:
            log.append((stage, c0, c1, threading.get_ident(), tag))
        if (stage, c0) == fail_at:
            raise ValueError(f"chunk {c0}")
    return kernel, log


def test_each_stage_runs_every_chunk_once_before_the_next_stage():
    kernel, log = recording()
    pool.spread(kernel, ("t",), 3, (True, False))
    stages = [entry[0] for entry in log]
    assert stages == sorted(stages)                   # no stage starts before the last ends
    chunks = {stage: sorted(e[1:3] for e in log if e[0] == stage) for stage in set(stages)}
    assert chunks == {0: [(0, 1), (1, 2), (2, 3)], 1: [(0, 0)], 2: [(0, 1), (1, 2), (2, 3)]}
    here = threading.get_ident()
    # the caller runs chunk 0 and the stores; a worker runs a chunk the caller did not
    assert all(e[3] == here for e in log if e[1] == 0)
    if pool.size() > 1:
        assert any(e[3] != here for e in log)
    assert all(e[4] == "t" for e in log)


def test_the_caller_runs_the_chunks_a_busy_worker_has_not_started():
    # a machine's other work can keep a worker off the cores: the call must not wait for it
    release = threading.Event()
    for jobs in pool.workers().queues:        # every worker stuck in a job of its own
        stuck = pool.Stage(lambda *a: release.wait(10), (), 1, 0)
        jobs.put(stuck)
    try:
        kernel, log = recording()
        start = time.perf_counter()
        pool.spread(kernel, ("t",), 4, (True,))
        took = time.perf_counter() - start
    finally:
        release.set()
    assert sorted(e[:3] for e in log) == [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 0)]
    assert {e[3] for e in log} == {threading.get_ident()}
    assert took < 5                            # not held up by the stuck workers


def test_without_threads_every_chunk_runs_here_in_one_call():
    kernel, log = recording()
    pool.spread(kernel, ("t",), 3, (True,), threads=False)
    assert [e[:3] for e in log] == [(0, 0, 3), (1, 0, 0)]
    assert {e[3] for e in log} == {threading.get_ident()}


def test_one_chunk_runs_on_the_callers_thread_alone():
    kernel, log = recording()
    pool.spread(kernel, ("t",), 1, (True,))
    assert [e[:3] for e in log] == [(0, 0, 1), (1, 0, 0)]
    assert {e[3] for e in log} == {threading.get_ident()}


def test_an_error_on_a_worker_is_raised_after_every_chunk_has_stopped():
    kernel, log = recording(fail_at=(0, 1))
    with pytest.raises(ValueError, match="chunk 1"):
        pool.spread(kernel, ("t",), 3, (True,))
    assert sorted(e[1] for e in log) == [0, 1, 2]     # all chunks ran; no stores after it
    kernel, log = recording()
    pool.spread(kernel, ("t",), 3, (False,))          # the workers still serve
    assert len(log) == 3


def test_an_error_in_the_callers_chunk_waits_for_the_workers_and_starts_no_more_chunks():
    # the workers' chunks share the call's memory: the caller leaves once they have ended
    kernel, log = recording(fail_at=(0, 0))
    with pytest.raises(ValueError, match="chunk 0"):
        pool.spread(kernel, ("t",), 8, (True,))
    after = len(log)
    time.sleep(0.05)
    assert len(log) == after                          # nothing ran after the raise
    assert len(log) < 8 if pool.size() > 1 else len(log) == 1


def test_calls_from_several_threads_share_the_workers():
    results = []

    def call(tag):
        kernel, log = recording()
        pool.spread(kernel, (tag,), 2, (True,))
        results.append(sorted(e[:3] for e in log if e[4] == tag))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[(0, 0, 1), (0, 1, 2), (1, 0, 0)]] * 6


def test_workers_keep_no_reference_to_a_finished_calls_arrays():
    # the steady code reuses an output the caller dropped, which it tells by reference count
    import sys

    import numpy as np
    out = np.zeros(4)
    before = sys.getrefcount(out)
    pool.spread(lambda a, nc, c0, c1, stage: None, (out,), 2, (True,))
    assert sys.getrefcount(out) == before


def timed_calls(choice, seconds: dict, now: list, count: int) -> list:
    """``count`` calls through ``choice`` on a fake clock, each taking ``seconds[threads]``;
    returns the way each call took."""
    ways = []
    for _ in range(count):
        threads, start = choice.pick()
        now[0] += seconds[threads]
        choice.took(threads, start)
        ways.append(threads)
    return ways


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(pool.time, "perf_counter", lambda: now[0])
    return now


def test_choice_keeps_threads_while_they_are_faster_and_tries_one_thread_rarely(clock):
    choice = pool.Choice()
    ways = timed_calls(choice, {True: 0.003, False: 0.007}, clock, 2000)   # 6 s of calls
    assert choice.threads
    # tried at the first call, then after 0.1 s, 0.2, 0.4, 0.8 and every 1 s: a few calls
    assert 5 <= ways.count(False) <= 12
    assert choice.wait == pool.Choice.LAST_WAIT


def test_choice_moves_to_one_thread_when_threads_get_slow_and_back_when_they_recover(clock):
    choice = pool.Choice()
    timed_calls(choice, {True: 0.003, False: 0.007}, clock, 500)
    # other work takes the cores: a step on threads 48 ms, on one 0.6 ms (W1, 2 busy
    # processes on 2 cores)
    ways = timed_calls(choice, {True: 0.048, False: 0.0006}, clock, 200)
    assert not choice.threads
    assert ways.index(False) < 30             # within the next trial (at most 1 s of calls)
    assert ways[-100:].count(True) <= 2        # then threads only on a trial now and then
    timed_calls(choice, {True: 0.003, False: 0.007}, clock, 1000)
    assert choice.threads
