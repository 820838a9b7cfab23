"""The Numba backend: schedule -> render -> cache -> runtime.

``schedule`` (shared by any loop backend) groups nodes into fused kernels; ``render`` writes
them as one readable module of Numba loops; ``cache`` stores it on disk by a hash of its text
(Numba keeps the machine code beside it); ``runtime`` lays out memory and runs the entry point.
``mathlib`` holds vectorizable exp/log/tanh, ``blas`` the OpenBLAS thread control.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# Numba's OpenMP workers spin after each threaded loop by default, taking the cores from the
# BLAS threads of the product that follows (W9, a CNN step: 8-11 ms a call spinning, 2.6-4.0 ms
# passive, alternating processes). OpenMP reads this when Numba first starts its threads, which
# is after this import; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ...graph import Graph  # noqa: E402
from ...tensor import Tensor
from .runtime import Program


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``)."""
    return Program(placeholders, graph, stats)
