"""The pool's threads: each chunk once, on its own thread, then the stores on the caller's."""

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
    # chunk 0 and the stores run on the caller's thread, the other chunks on workers
    assert all((e[3] == here) == (e[1] == 0) for e in log)
    assert all(e[4] == "t" for e in log)


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
