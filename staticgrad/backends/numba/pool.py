"""Threads: a big loop's chunks run on our own worker threads, all calling one serial build.

A loop of ``PARALLEL_MIN`` elements or more is written as chunks ``c0 .. c1`` of ``nc`` (see
``loops.KernelWriter.staged``) and compiled once, serial and ``nogil``. ``spread`` calls it
on ``nc`` threads at once, each with its own chunk, then once more on this thread for what
must follow all the chunks (combining their partial sums, storing the result). Numba's
parfor build of the same loop compiled in 3x the time (W6: 3.1 s against 1.2 s), and started
Numba's OpenMP or TBB threads, which spin after each loop and took the cores from the BLAS
threads of the next product. These threads sleep between loops.

``NUMBA_NUM_THREADS`` (default: the cores) sets how many threads a loop runs on.
"""

from __future__ import annotations

import os
import queue
import threading

import numba


def size() -> int:
    """How many threads a big loop runs on: ``NUMBA_NUM_THREADS``, by default the cores.

    >>> size() >= 1
    True
    """
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


class Workers:
    """``size() - 1`` daemon threads, each taking jobs ``(kernel, args, done)`` from its own
    queue and putting ``None`` (or the exception it raised) on ``done``."""

    def __init__(self, count: int):
        self.queues = [queue.SimpleQueue() for _ in range(count)]
        for k, jobs in enumerate(self.queues):
            threading.Thread(target=work, args=(jobs,), name=f"staticgrad worker {k + 1}",
                             daemon=True).start()


def work(jobs: queue.SimpleQueue) -> None:
    while True:
        kernel, args, done = jobs.get()
        try:
            kernel(*args)
            outcome = None
        except BaseException as err:   # the caller raises it
            outcome = err
        # drop the call's arrays before saying it is done: a reference kept here until the
        # next job would make the caller's steady code take a dropped output for one still
        # in use and allocate a new one each call (8M floats: 2-3 ms of page faults)
        kernel = args = None
        done.put(outcome)


_workers: Workers | None = None
_lock = threading.Lock()


def workers() -> Workers:
    """The process's worker threads, started on first need."""
    global _workers
    if _workers is None:
        with _lock:
            if _workers is None:
                _workers = Workers(size() - 1)
    return _workers


def _forget() -> None:   # a forked child has none of its parent's threads
    global _workers
    _workers = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def spread(kernel, args: tuple, nc: int, stages: tuple) -> None:
    """``kernel(*args, nc, c0, c1, stage)`` for each nest of a chunked kernel: its chunks at
    stage ``2p``, chunk ``c`` on thread ``c`` (chunk 0 on this one), then, if ``stages[p]``,
    its stores at ``2p + 1`` on this thread once every chunk is done. An exception in any
    thread is raised here, after all of them have stopped (they share the call's memory).

    >>> spread(lambda *a: None, (), 1, (False,))
    """
    queues = workers().queues if nc > 1 else []
    for p, stores in enumerate(stages):
        chunks(kernel, args, nc, 2 * p, queues)
        if stores:
            kernel(*args, nc, 0, 0, 2 * p + 1)


def chunks(kernel, args: tuple, nc: int, stage: int, queues: list) -> None:
    """One stage's chunks: chunk 0 here, the others on the workers' ``queues`` (all here
    when there are none); returns once every one has ended."""
    if not queues:
        kernel(*args, nc, 0, nc, stage)
        return
    done: queue.SimpleQueue = queue.SimpleQueue()
    for c in range(1, nc):
        queues[(c - 1) % len(queues)].put((kernel, (*args, nc, c, c + 1, stage), done))
    try:
        kernel(*args, nc, 0, 1, stage)
    finally:
        errors = [done.get() for _ in range(1, nc)]
    for err in errors:
        if err is not None:
            raise err
