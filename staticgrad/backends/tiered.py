"""Tiered start (``sg.function(..., tiered=True)``): the NumPy reference answers while the
Numba program is built and compiled on a background thread.

A process's first compiled result waits for Numba's import (0.3-0.5 s), its CPU target's start
(0.3-0.5 s) and the kernels' compile (seconds) or load from the disk cache. A tiered function
instead answers its first calls node by node with ``reference`` (NumPy only: Numba is not even
imported by then), and each shape signature switches to the compiled kernels once they are
ready. Both tiers run the same rewritten graph, and parameter updates are written by
``sg.function`` either way, so a training loop carries on across the switch. The results of the
two tiers agree to rounding, not bit for bit (the kernels sum in another order).

One thread compiles for every tiered function of the process, in the order they ask. A process
that ends while it works waits for it at exit, so the disk cache is filled for the next one.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np

from ..graph import Graph
from ..tensor import Tensor
from . import reference


class Background:
    """One daemon thread running jobs in order; ``submit`` returns an event set when the job
    has run (or failed: the job handles its own errors)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: list = []            # (job, done event), oldest first
        self.thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self.forked)

    def submit(self, job) -> threading.Event:
        done = threading.Event()
        with self.lock:
            self.jobs.append((job, done))
            if self.thread is None:
                self.start()
        return done

    def start(self) -> None:
        self.thread = threading.Thread(target=self.work, name="staticgrad-compile", daemon=True)
        self.thread.start()

    def work(self) -> None:
        while True:
            with self.lock:
                if not self.jobs:
                    self.thread = None
                    return
                job, done = self.jobs[0]
            try:
                job()
            finally:
                with self.lock:
                    self.jobs.pop(0)
                done.set()

    def forked(self) -> None:
        """A forked child has no thread: the jobs it inherited run on a new one."""
        self.lock = threading.Lock()
        self.thread = None
        if self.jobs:
            self.start()

    def drain(self) -> None:
        """Wait for every job submitted so far (at exit: the disk cache gets filled)."""
        with self.lock:
            pending = [done for _, done in self.jobs]
        for done in pending:
            done.wait()


BACKGROUND = Background()
atexit.register(BACKGROUND.drain)


class Program:
    """What ``sg.function(..., tiered=True)`` runs: the reference until a plan's kernels are
    compiled, then the Numba program. ``stats`` gains ``reference calls`` (calls the
    reference answered) besides what the Numba program records once built."""

    def __init__(self, placeholders: Sequence[Tensor], graph: Graph, stats: dict):
        self.placeholders = list(placeholders)
        self.graph, self.stats = graph, stats
        stats["reference calls"] = 0
        self.reference = reference.Program(placeholders, graph, stats)
        self.compiled = None            # the Numba program, once built
        self.error: BaseException | None = None
        self.ready: set = set()         # id of each plan whose kernels are compiled
        self.asked: dict = {}           # id(plan) -> event set when its compile has run
        self.lock = threading.Lock()
        self.built = BACKGROUND.submit(self.build)

    def build(self) -> None:
        try:
            from . import numba  # imported here: the first results never wait for Numba
            self.compiled = numba.compile(self.placeholders, self.graph, self.stats)
        except Exception as err:   # noqa: BLE001 (any failure: the reference goes on)
            self.failed(err)

    def precompile(self, plan) -> None:
        if self.compiled is None:
            return
        stand_ins = [np.empty(plan.shapes[id(p)], p.dtype) for p in self.placeholders]
        try:
            self.compiled.precompile(plan, stand_ins)
        except Exception as err:   # noqa: BLE001
            self.failed(err)
            return
        self.ready.add(id(plan))

    def failed(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
            warnings.warn(f"staticgrad: a tiered function's compile failed ({err!r}); its "
                          f"calls stay on the NumPy reference", RuntimeWarning, stacklevel=1)

    def run(self, arrays: Sequence[np.ndarray], plan) -> list:
        if id(plan) in self.ready:
            return self.compiled.run(arrays, plan)
        with self.lock:
            self.stats["reference calls"] += 1
            if id(plan) not in self.asked and self.error is None:
                self.asked[id(plan)] = BACKGROUND.submit(lambda: self.precompile(plan))
        return self.reference.run(arrays, plan)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the Numba program is built and every plan asked for so far compiled,
        waiting up to ``timeout`` seconds (``None``: as long as it takes). A failed compile
        raises its error here."""
        with self.lock:
            events = [self.built, *self.asked.values()]
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in events:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(left):
                return False
        if self.error is not None:
            raise RuntimeError("staticgrad: this tiered function's compile failed; its calls "
                               "run on the NumPy reference") from self.error
        return True

    def numba_program(self):
        """The compiled program, waited for (what inspecting a tiered function shows)."""
        self.wait()
        return self.compiled

    @property
    def kernels(self) -> list:
        return self.numba_program().kernels

    @property
    def source(self) -> str:
        return self.numba_program().source

    def time_kernels(self, arrays, plan, repeat: int) -> dict:
        return self.numba_program().time_kernels(arrays, plan, repeat)

    def threads(self, plan) -> list:
        return self.numba_program().threads(plan)


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``): the compile starts in the
    background."""
    return Program(placeholders, graph, stats)
