"""Threaded builds compiled after a first call, on a thread of their own (opt-in).

A loop big enough for threads gets a threaded (parfor) build, which costs Numba more than a
serial one (W6's first call: 4.8-5.1 s cold, against 3.0 s with this module). With
``STATICGRAD_BACKGROUND_COMPILE=1`` a plan's first call runs the serial builds of the threaded
builds missing from the disk cache (the same ``nc`` chunks, one after another), and this
module compiles those on a thread, then switches the plan's steady code to them. The first
result comes that much sooner; calls meanwhile run on one core. The two builds are compiled
apart and may add a row's terms in different orders (fastmath lets LLVM reassociate), so
results before and after the switch can differ in the last bits (W6: 2% of the input
gradient's elements): that is why it is opt-in.
"""

from __future__ import annotations

import threading
import time

from . import steady


def build_threaded(program, plan, later: dict) -> threading.Thread:
    """Start compiling ``plan.later[r]`` for the argument types ``later[r]`` of each row
    ``r``; once all are built, ``plan.rows`` and the steady code use them. Not a daemon
    thread: a process that exits first waits for it, so the next one loads it from disk."""
    def build():
        clock = time.perf_counter()
        try:
            for r, types in later.items():
                plan.later[r].compile(types)
        except Exception as err:   # the serial builds stay: right results on one core
            program.stats["background"] = {"error": f"{type(err).__name__}: {err}"}
            return
        with program.lock:
            plan.rows = [(plan.later[r], *row[1:]) if r in later else row
                         for r, row in enumerate(plan.rows)]
            plan.later = {}
            steady.make(program, plan)
        program.stats["background"] = {"kernels": len(later),
                                       "seconds": time.perf_counter() - clock}

    thread = threading.Thread(target=build, name="staticgrad threaded build")
    thread.start()
    return thread


def wait(threads: list, timeout: float | None = None) -> bool:
    """Join ``threads`` (within ``timeout`` seconds in all); whether all have ended.

    >>> wait([], timeout=0.0)
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(threads):
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)
