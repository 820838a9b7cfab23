"""The Numba backend: schedule -> render -> cache -> runtime.

``schedule`` (shared by any loop backend) groups nodes into fused kernels; ``render`` writes
them as one readable module of Numba loops; ``cache`` stores it on disk by a hash of its text
(Numba keeps the machine code beside it); ``runtime`` lays out memory and runs the entry point.
``mathlib`` holds vectorizable exp/log/tanh, ``blas`` the OpenBLAS thread control.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

import numba

from ...graph import Graph
from ...tensor import Tensor
from .runtime import Program


def shared_openmp_loaded() -> bool:
    """Whether a process-wide ``libgomp.so.1`` is loaded already (PyTorch ships one under that
    name; wheels that rename their copy, as scikit-learn's do, keep it to themselves). Numba's
    OpenMP loops would run on it, with the wait policy it read when it was loaded. Linux only:
    elsewhere False.

    >>> isinstance(shared_openmp_loaded(), bool)
    True
    """
    try:
        with open("/proc/self/maps") as maps:
            return any(re.search(r"/libgomp\.so\.1[.\d]*$", line.rstrip()) for line in maps)
    except OSError:
        return False


def quiet_threads() -> None:
    """Keep Numba's idle workers off the cores between loops, unless the user chose.

    OpenMP workers spin after each threaded loop by default, taking the cores from the BLAS
    threads of the product that follows (W9, a CNN step: 8-11 ms a call spinning, 2.6-4.0 ms
    passive, alternating processes). OpenMP reads ``OMP_WAIT_POLICY`` once, when it is loaded:
    normally when Numba first starts its threads, after this import. If another library loaded
    the shared OpenMP first (``import torch`` before staticgrad), it is too late for that, and
    Numba's own work-queue pool, whose workers sleep, serves instead (W9 after a PyTorch step:
    8.0-11.7 ms on a spinning OpenMP, 3.0-4.1 ms on the work queue). Runs on import; calling
    it again changes nothing.

    >>> import os
    >>> quiet_threads(); "OMP_WAIT_POLICY" in os.environ
    True
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    if shared_openmp_loaded() and "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"  # read when the first threaded loop runs
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


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


quiet_threads()
start_without_scipy()


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``)."""
    return Program(placeholders, graph, stats)
