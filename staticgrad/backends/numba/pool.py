"""Threads: a big loop's chunks run on our own worker threads, all calling one serial build.

A loop of ``PARALLEL_MIN`` elements or more is written as chunks ``c0 .. c1`` of ``nc`` (see
``loops.KernelWriter.staged``) and compiled once, serial and ``nogil``. ``spread`` runs its
chunks on the caller's thread and ``size() - 1`` workers, each taking the next chunk nobody
has started, then once more on this thread for what must follow all the chunks (combining
their partial sums, storing the result). Which thread runs a chunk never changes what it
computes, so results are the same bits however the chunks fall; a worker the machine's other
work keeps off the cores leaves its chunks to the others instead of stalling the call.
Numba's parfor build of the same loop compiled in 3x the time (W6: 3.1 s against 1.2 s),
and started Numba's OpenMP or TBB threads, which spin after each loop and took the cores
from the BLAS threads of the next product. These threads sleep between loops.

``Choice`` decides per plan whether threads pay at all: on a machine with other work on the
cores, threads that wait for each other (OpenBLAS's spin between blocks) are much slower
than one.

``NUMBA_NUM_THREADS`` (default: the cores) sets how many threads a loop runs on.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numba


def size() -> int:
    """How many threads a big loop runs on: ``NUMBA_NUM_THREADS``, by default the cores.

    >>> size() >= 1
    True
    """
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


class Stage:
    """One stage of a chunked kernel's call: chunks ``0 .. nc - 1``, each claimed by the first
    thread to ask. The caller ``lead``s, workers ``help``; only workers' chunks are counted
    (``busy``): a worker is never interrupted, while the caller's thread may get a
    KeyboardInterrupt anywhere, and must still wait for the chunks running on the call's
    memory before it leaves."""

    def __init__(self, kernel, args: tuple, nc: int, stage: int):
        self.call = (kernel, args)   # dropped once the stage is over (see ``lead``)
        self.nc, self.stage = nc, stage
        self.next = 0                # the first chunk nobody has claimed
        self.busy = 0                # chunks running on workers
        self.errors: list = []
        self.idle = threading.Condition(threading.Lock())

    def claim(self, worker: bool) -> int | None:
        with self.idle:
            if self.next >= self.nc:
                return None
            self.next += 1
            self.busy += worker
            return self.next - 1

    def help(self) -> None:
        """A worker's part: chunks until none is left unclaimed."""
        while (c := self.claim(True)) is not None:
            kernel, args = self.call   # set: this chunk is counted busy, so the stage goes on
            try:
                kernel(*args, self.nc, c, c + 1, self.stage)
            except BaseException as err:   # the caller raises it
                self.errors.append(err)
            kernel = args = None
            with self.idle:
                self.busy -= 1
                self.idle.notify()

    def lead(self) -> None:
        """The caller's part: chunks until none is left, then wait for the workers' (after an
        exception here too: no new chunk starts, the running ones end); their first error
        is raised here."""
        try:
            kernel, args = self.call
            while (c := self.claim(False)) is not None:
                kernel(*args, self.nc, c, c + 1, self.stage)
        finally:
            with self.idle:
                self.next = self.nc
                self.idle.wait_for(lambda: not self.busy)
            self.call = None   # a late worker may still hold the stage: not its arrays
        if self.errors:
            raise self.errors[0]


class Workers:
    """``size() - 1`` daemon threads, each running the ``Stage`` jobs of its own queue."""

    def __init__(self, count: int):
        self.queues = [queue.SimpleQueue() for _ in range(count)]
        for k, jobs in enumerate(self.queues):
            threading.Thread(target=work, args=(jobs,), name=f"staticgrad worker {k + 1}",
                             daemon=True).start()


def work(jobs: queue.SimpleQueue) -> None:
    while True:
        job = jobs.get()
        job.help()
        # drop the job before waiting for the next: a reference kept until then would make
        # the caller's steady code take a dropped output for one still in use and allocate
        # a new one each call (8M floats: 2-3 ms of page faults)
        job = None


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


def spread(kernel, args: tuple, nc: int, stages: tuple, threads: bool = True) -> None:
    """``kernel(*args, nc, c0, c1, stage)`` for each nest of a chunked kernel: its ``nc``
    chunks at stage ``2p``, on this thread and the workers (only this one if not
    ``threads``), then, if ``stages[p]``, its stores at ``2p + 1`` on this thread once every
    chunk is done. An exception in any chunk is raised here, after all of them have stopped
    (they share the call's memory).

    >>> spread(lambda *a: None, (), 1, (False,))
    """
    queues = workers().queues if nc > 1 and threads else []
    for p, stores in enumerate(stages):
        chunks(kernel, args, nc, 2 * p, queues)
        if stores:
            kernel(*args, nc, 0, 0, 2 * p + 1)


def chunks(kernel, args: tuple, nc: int, stage: int, queues: list) -> None:
    """One stage's chunks, claimed in turn by this thread and the workers of ``queues`` (all
    here in one call when there are none); returns once every one has ended. A worker that
    starts late finds them all taken and does nothing."""
    if not queues:
        kernel(*args, nc, 0, nc, stage)
        return
    job = Stage(kernel, args, nc, stage)
    for jobs in queues[:nc - 1]:
        jobs.put(job)
    job.lead()


class Choice:
    """Whether a plan's calls use the threads (big loops' chunks on the workers, big products
    on BLAS threads) or run everything on the caller's thread, by measuring both.

    On an idle machine threads win (W5: 3.3 ms against 7.1). With two busy processes on the
    two cores, threads that wait for each other lose badly: OpenBLAS's threads spin between
    the blocks of a product while the other one is off the core, and a W1 step took 48 ms
    on threads against 0.6 on one. So a call uses the way that is faster now: each steady
    call's time is kept (the last ``KEEP``), and the other way is tried once after
    ``FIRST_WAIT`` seconds, then after twice as long each time it loses (at most
    ``LAST_WAIT``), which bounds what trying costs (under 1% of W5's calls' time).

    ``record[key]`` says which way the calls take (``"threads"`` or ``"one thread"``): a
    function's ``stats["threads"]``, by the sizes of each shape it was called with.

    >>> stats = {}
    >>> choice = Choice(stats, "n=64")
    >>> threads, start = choice.pick()   # the first call tries one thread
    >>> threads
    False
    >>> choice.took(threads, start)
    >>> stats
    {'n=64': 'threads'}
    """

    FIRST_WAIT, LAST_WAIT, KEEP = 0.1, 1.0, 3

    def __init__(self, record: dict | None = None, key: str = ""):
        self.threads = True                     # the way calls take
        self.times: dict = {True: [], False: []}
        self.wait = self.FIRST_WAIT
        self.trial_at = 0.0                     # when the other way is tried next
        self.record, self.key = record, key
        self.note()

    def note(self) -> None:
        if self.record is not None:
            self.record[self.key] = "threads" if self.threads else "one thread"

    def fastest(self) -> tuple:
        """``(on threads, on one)``: the fastest recent call's seconds each way (``None``
        for a way not tried yet)."""
        return tuple(min(self.times[way], default=None) for way in (True, False))

    def pick(self) -> tuple[bool, float]:
        """``(use threads?, start time)`` for a call about to run."""
        now = time.perf_counter()
        return self.threads != (now >= self.trial_at), now

    def took(self, threads: bool, start: float) -> None:
        """Note a call's time; a trial of the other way switches to it if it was faster than
        every recent call of the current way."""
        now = time.perf_counter()
        mine = self.times[threads]
        mine.append(now - start)
        del mine[:-self.KEEP]
        if threads == self.threads:
            return
        current = self.times[self.threads]
        if current and mine[-1] < min(current):
            self.threads, self.wait = threads, self.FIRST_WAIT
            self.note()
        elif current:
            self.wait = min(2 * self.wait, self.LAST_WAIT)
        self.trial_at = now + self.wait
