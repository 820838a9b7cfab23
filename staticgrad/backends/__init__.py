"""Backends: what turns a rewritten graph into something that runs.

A backend is a module with ``compile(placeholders, graph, stats) -> program``; the program has
``run(arrays, plan) -> list of arrays`` (one per ``graph.outputs``, none aliasing an argument,
a parameter or another result, safe to call from several threads), ``kernels`` (a list, empty
where there are none), ``source`` (text), ``time_kernels(arrays, plan, repeat) -> {kernel name:
seconds}``, ``threads(plan) -> [threads per kernel]`` and ``stats`` (the dict it was given,
with what it adds). ``function.py`` composes the pipeline and calls ``compile``; nothing else
about a backend is assumed.

- ``reference``: the NumPy interpreter, node by node; the oracle for every other backend.
- ``numba``: schedule -> render -> cache -> runtime, fused loops compiled by Numba.
- ``tiered``: ``numba`` built on a background thread, ``reference`` answering meanwhile
  (``sg.function(..., tiered=True)``).
"""

from __future__ import annotations

import importlib

NAMES = ("numba", "numpy")
MODULES = {"numba": ".numba", "numpy": ".reference"}


def get(name: str, tiered: bool = False):
    """The backend module called ``name``; ``tiered``: the module that answers from the
    reference while ``name``'s program compiles in the background (``tiered.py``).

    >>> get("numpy").__name__
    'staticgrad.backends.reference'
    """
    if name not in MODULES:
        raise ValueError(f"unknown backend {name!r}: use one of {', '.join(map(repr, NAMES))}")
    return importlib.import_module(".tiered" if tiered else MODULES[name], __name__)
