"""The Numba backend: schedule -> render -> cache -> runtime.

``schedule`` (shared by any loop backend) groups nodes into fused kernels; ``render`` writes
them as one readable module of Numba loops; ``cache`` stores it on disk by a hash of its text
(Numba keeps the machine code beside it); ``runtime`` lays out memory and runs the entry point.
``mathlib`` holds vectorizable exp/log/tanh, ``blas`` the OpenBLAS thread control.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...graph import Graph
from ...tensor import Tensor
from .runtime import Program


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``)."""
    return Program(placeholders, graph, stats)
