"""The hardware floor, measured in the same run as the workloads.

Memory bandwidth: a STREAM-like triad ``a = b + s*c`` on arrays far larger than the caches, as a
Numba parallel loop and in NumPy; the best counts. Compute: float32 GEMM throughput of ``np.dot``
on large matrices. A workload's floor is the larger of (its minimal bytes / bandwidth) and
(its GEMM flops / GEMM throughput): no implementation can beat it on this machine.

Beside the floor, how much the threads gain on this machine now (``hardware.cores``): on
these shared vCPUs a second thread has given anywhere from 1.1x to 2x, and threaded
workloads (W1's products) move with it between runs of the same code.
"""

from __future__ import annotations

from staticgrad.inspect import hardware


def measure(scale: int) -> dict:
    """Bandwidth and GEMM throughput (``staticgrad.inspect.hardware``), small in quick mode."""
    return hardware.measure(quick=not scale)


def best(before: dict, after: dict) -> dict:
    """The faster of two measurements of each figure, keeping both for the record; the
    threads' speedup of both (it says how the machine was, not what it can do)."""
    return {"bandwidth": max(before["bandwidth"], after["bandwidth"], key=lambda b: b["best"]),
            "gemm": max(before["gemm"], after["gemm"], key=lambda g: g["flops"]),
            "cores": [before.get("cores", {}), after.get("cores", {})],
            "before": before, "after": after}


def workload_floor(nbytes: int, flops: int, hardware: dict) -> dict:
    """The floor of one workload: the slower of moving its bytes and doing its GEMMs."""
    memory_s = nbytes / hardware["bandwidth"]["best"]
    compute_s = flops / hardware["gemm"]["flops"]
    return {"bytes": nbytes, "flops": flops, "memory_s": memory_s, "compute_s": compute_s,
            "seconds": max(memory_s, compute_s),
            "bound": "memory" if memory_s >= compute_s else "GEMM"}
