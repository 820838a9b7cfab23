"""Thread count of the BLAS that Numba's ``np.dot`` calls (SciPy's OpenBLAS).

Small matrix products are fastest on one thread: waking BLAS threads costs more than the
product, and spinning BLAS threads fight Numba's own threads and other libraries' for the
cores. A compiled function sets the count it wants around each call and restores it.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

SMALL_GEMM_FLOPS = 4e6  # below this, one thread wins on a 2-core machine


@functools.lru_cache(maxsize=1)
def _openblas():
    """``(get, set)`` for SciPy's OpenBLAS, or ``None`` if it cannot be found."""
    try:
        import scipy
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            get = getattr(lib, f"{prefix}_get_num_threads", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads", None)
            if get is not None and set_ is not None:
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return None


def set_threads(count: int) -> int | None:
    """Set the BLAS thread count; returns the previous one (``None``: BLAS not OpenBLAS).

    >>> before = set_threads(1)
    >>> _ = set_threads(before) if before is not None else None
    """
    calls = _openblas()
    if calls is None:
        return None
    get, set_ = calls
    before = get()
    if before != count:
        set_(count)
    return before


def threads_for(flops: float, available: int) -> int:
    """One thread for small products, all of them for large ones."""
    return 1 if flops < SMALL_GEMM_FLOPS else available
