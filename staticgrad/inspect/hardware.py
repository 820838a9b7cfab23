"""The machine's floor: memory bandwidth and GEMM throughput, measured on this machine.

``Function.explain`` and ``bench/`` put measured times next to these figures: no
implementation moves bytes faster than the bandwidth or multiplies matrices faster than the
BLAS peak. Measured once per process (about a second); ``measure(quick=True)`` for a glance.
"""

from __future__ import annotations

import functools
import time

import numpy as np


def best_of(f, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


@functools.cache
def numba_triad():
    """The triad as the compiled loops run: a serial build, its chunks on the pool's threads."""
    import numba

    from ..backends.numba import pool

    @numba.njit(nogil=True, cache=True)   # explain's first call in a process: no compile
    def chunks(a, b, c, s, nc, c0, c1, stage):
        # unsigned bounds, as the kernels have: with signed ones Numba's negative-index
        # select stops LLVM from loading consecutive vectors
        for i in range(np.uint64(c0 * a.size // nc), np.uint64(c1 * a.size // nc)):
            a[i] = b[i] + s * c[i]

    def triad(a, b, c, s):
        pool.spread(chunks, (a, b, c, s), pool.size(), (False,))

    return triad


def bandwidth(quick: bool = False) -> dict:
    """Bytes per second of a STREAM-like triad ``a = b + s*c`` on arrays far larger than the
    caches, as a compiled loop on staticgrad's threads and in NumPy; ``"best"`` is the
    faster. STREAM's counting: the bytes of the arrays read and written (not the
    write-allocate reads)."""
    n = 1 << 20 if quick else 1 << 24   # 16M float64 = 128 MB per array, >> any cache
    repeats = 3 if quick else 10
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    results: dict = {"array_bytes": a.nbytes}
    # NumPy needs two passes: a = s*c (read c, write a), then a += b (read a and b, write a)
    numpy_s = best_of(lambda: (np.multiply(c, 3.0, out=a), np.add(a, b, out=a)), repeats)
    results["numpy"] = 5 * a.nbytes / numpy_s
    try:
        triad = numba_triad()
        triad(a, b, c, 3.0)  # compile
        results["numba"] = 3 * a.nbytes / best_of(lambda: triad(a, b, c, 3.0), repeats)
        from ..backends.numba import pool
        results["threads"] = pool.size()
    except Exception as err:  # a broken Numba install must not hide the NumPy figure
        results["numba_error"] = f"{type(err).__name__}: {err}"
    results["best"] = max(v for k, v in results.items() if k in ("numpy", "numba"))
    return results


def gemm(quick: bool = False) -> dict:
    """float32 GEMM flop/s of ``np.dot`` on square matrices (best of a few, all threads)."""
    n = 256 if quick else 2048
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    np.dot(a, b)  # first call: thread pool start-up
    seconds = best_of(lambda: np.dot(a, b), 3 if quick else 5)
    return {"n": n, "flops": 2 * n ** 3 / seconds}


@functools.cache
def numba_spin():
    """A loop of arithmetic alone (no memory traffic), split in chunks as the kernels are."""
    import numba

    from ..backends.numba import pool

    @numba.njit(nogil=True, cache=True)   # explain's first call in a process: no compile
    def chunks(out, steps, nc, c0, c1, stage):
        for c in range(c0, c1):
            x = 1.0 + c
            for _ in range(steps):
                x = x * 0.999999 + 1e-6
            out[c] = x

    def spin(out, steps, threads):
        pool.spread(chunks, (out, steps), len(out), (False,), threads)

    return spin


def cores(quick: bool = False) -> dict:
    """How much faster the pool's threads do arithmetic than one thread: the same chunks
    (one per thread) on one thread and on all of them. ``"speedup"`` is ``"threads"`` on an
    idle machine with a core per thread; less when the cores are shared (a busy neighbour,
    or two vCPUs of one physical core), which is when threaded loops gain less."""
    from ..backends.numba import pool

    threads = pool.size()
    out = np.zeros(threads)
    steps = 4_000_000   # 5-10 ms a chunk: long beside a sleeping worker's wake-up
    try:
        spin = numba_spin()
        spin(out, 1, True)  # compile
        one = best_of(lambda: spin(out, steps, False), 3 if quick else 5)
        every = best_of(lambda: spin(out, steps, True), 3 if quick else 5)
    except Exception as err:  # a broken Numba install must not hide the other figures
        return {"threads": threads, "error": f"{type(err).__name__}: {err}"}
    return {"threads": threads, "speedup": one / every}


def measure(quick: bool = False) -> dict:
    """``{"bandwidth": {..., "best": bytes/s}, "gemm": {..., "flops": flop/s},
    "cores": {"threads": n, "speedup": x}}``.

    >>> floor = measure(quick=True)
    >>> floor["bandwidth"]["best"] > 1e8 and floor["gemm"]["flops"] > 1e8
    True
    >>> 0 < floor["cores"]["speedup"] <= 1.5 * floor["cores"]["threads"]
    True
    """
    return {"bandwidth": bandwidth(quick), "gemm": gemm(quick), "cores": cores(quick)}


@functools.cache
def machine() -> dict:
    """``measure()`` once per process: what ``Function.explain`` compares against."""
    return measure()
