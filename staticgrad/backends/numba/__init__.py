"""The Numba backend: schedule -> render -> cache -> runtime.

``schedule`` (shared by any loop backend) groups nodes into fused kernels; ``render`` writes
them as one readable module of Numba loops; ``cache`` stores it on disk by a hash of its text
(Numba keeps the machine code beside it); ``runtime`` lays out memory and runs the entry point.
``mathlib`` holds vectorizable exp/log/tanh, ``blas`` the OpenBLAS thread control, ``pool``
the threads a big loop's chunks run on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ...graph import Graph
from ...tensor import Tensor
from .runtime import Program


def start_without_scipy() -> None:
    """Keep Numba's start from importing SciPy, which staticgrad does not use.

    The first kernel a process loads starts Numba's CPU target, which imports
    ``numba.np.arraymath``; at its import that module imports SciPy's BLAS bindings only to
    decide whether ``np.correlate``/``np.convolve`` in Numba code call BLAS for their inner
    products (``_HAVE_BLAS``). With SciPy installed (any environment with scikit-learn,
    PyTensor or JAX) that import was 0.3-0.5 s of W1's 0.6-1.1 s warm start. Products here call
    NumPy's own OpenBLAS by address, never SciPy's, so the check is answered "no BLAS": in this
    process Numba's ``np.correlate``/``np.convolve`` use their own loop (same values), and
    ``np.dot`` & co. still import SciPy when first compiled. Does nothing if Numba's target
    has started already; ``STATICGRAD_SCIPY_AT_START=1`` leaves Numba as it is.

    >>> import sys
    >>> start_without_scipy(); "numba.np.arraymath" in sys.modules
    True
    """
    if "numba.np.arraymath" in sys.modules or os.environ.get("STATICGRAD_SCIPY_AT_START") == "1":
        return
    from numba.np import linalg

    def unavailable():
        raise ImportError("staticgrad: SciPy's BLAS is not checked at start")

    checked = linalg.ensure_blas
    linalg.ensure_blas = unavailable
    try:
        from numba.np import arraymath
    finally:
        linalg.ensure_blas = checked
    arraymath.ensure_blas = checked   # the module bound the stand-in at its import


start_without_scipy()


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``)."""
    return Program(placeholders, graph, stats)
