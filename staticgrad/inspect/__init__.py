"""Inspect: read every stage of the pipeline.

``listing`` (the typed graph listing, kernels, ``STATICGRAD_DEBUG``), ``dot`` (Graphviz),
``explain`` (time per kernel next to the floor), ``hardware`` (that floor, measured).
"""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def timed(seconds: dict, stage: str):
    """Record in ``seconds[stage]`` how long the ``with`` block took (``stats["seconds"]``).

    >>> seconds = {}
    >>> with timed(seconds, "rewrite"):
    ...     pass
    >>> list(seconds)
    ['rewrite']
    """
    clock = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = time.perf_counter() - clock
