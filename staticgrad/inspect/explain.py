"""Inspect stage, at run time: how long each kernel of a compiled function takes, next to the
floor the machine allows (bytes at the measured bandwidth, matrix products at the BLAS peak).

``Function.explain(*args)`` times whole calls, then replays a profiling build of the program
(every kernel a function of its own; compiled once, on first use) from Python so that each
kernel is timed on its own, and prints one row per kernel.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from .. import shapes as sh
from . import hardware


@dataclass
class KernelTime:
    """One kernel: what it computes, its estimated work, its measured and its floor time,
    and the threads it ran on (a loop's chunks, or a matrix product's BLAS threads)."""
    name: str
    kind: str
    threads: int
    space: tuple
    nodes: int
    read: int
    written: int
    flops: int
    gemm: int
    seconds: float
    floor: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor else float("inf")


@dataclass
class Report:
    """``str(report)`` is the table ``Function.explain`` prints."""
    backend: str
    seconds: float            # median time of a whole call
    calls: int
    ideal_bytes: int          # every argument and parameter read once, every result written once
    gemm: int                 # flops of all matrix products
    bandwidth: float          # bytes/s
    gemm_peak: float          # flop/s
    kernels: list = field(default_factory=list)
    # (threads in use?, fastest recent call on threads, on one thread) when the calls choose
    # between them (``pool.Choice``), else None
    choice: tuple | None = None

    @property
    def floor(self) -> float:
        """What the machine allows for this call: its bytes moved once, its GEMMs at peak."""
        return max(self.ideal_bytes / self.bandwidth, self.gemm / self.gemm_peak)

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor else float("inf")

    def __str__(self) -> str:
        lines = [f"explain ({self.backend}): {fmt_time(self.seconds)} per call (median of "
                 f"{self.calls}); floor {fmt_time(self.floor)} = {fmt_bytes(self.ideal_bytes)} "
                 f"at {self.bandwidth / 1e9:.1f} GB/s"
                 + (f", {self.gemm / 1e6:.3g} MFLOP of GEMM at {self.gemm_peak / 1e9:.1f} "
                    "GFLOP/s" if self.gemm else "") + f" -> {self.ratio:.2f}x the floor"]
        if not self.kernels:
            lines.append("  (the numpy backend runs node by node: no kernels to time)")
            return "\n".join(lines)
        header = ("kernel", "kind", "threads", "over", "nodes", "read", "written", "flops",
                  "GEMM", "time", "floor", "x floor")
        rows = [(k.name, k.kind, str(k.threads), sh.show(k.space), str(k.nodes), fmt_bytes(k.read),
                 fmt_bytes(k.written), fmt_count(k.flops), fmt_count(k.gemm),
                 fmt_time(k.seconds), fmt_time(k.floor), f"{k.ratio:.2f}x")
                for k in self.kernels]
        widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
        for row in [header] + rows:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        inside = sum(k.seconds for k in self.kernels)
        lines.append(f"  the kernels, timed one at a time: {fmt_time(inside)}; the rest of a call "
                     f"(argument checks, buffers, dispatch, updates): "
                     f"{fmt_time(max(self.seconds - inside, 0.0))}")
        if self.choice is not None:
            threads, on_threads, on_one = self.choice
            measured = ", ".join(f"{way} {fmt_time(t)}" for way, t in
                                 (("on threads", on_threads), ("on one", on_one)) if t)
            lines.append(f"  calls run {'on threads' if threads else 'on one thread'}, the "
                         f"faster way lately (fastest recent calls: {measured or 'none yet'})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<staticgrad.inspect.explain.Report {fmt_time(self.seconds)} per call, "
                f"{self.ratio:.2f}x the floor, {len(self.kernels)} kernel(s)>")


def explain(function, args: tuple, repeat: int = 20) -> Report:
    """Time ``function(*args)`` and each of its kernels; see ``Function.explain``."""
    function(*args)                 # plan, compile (a tiered function's in the background)
    function.wait_compiled()
    function(*args)                 # warm up
    arrays, plan = function.prepare_call(args)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        function(*args)
        samples.append(time.perf_counter() - t0)
    floor = hardware.machine()
    program = function.program
    results = program.run(arrays, plan)
    ideal = sum(a.nbytes for a in arrays) + sum(np.asarray(r).nbytes for r in results) \
        + sum(p.value.nbytes for p in {id(n): n for n in function.graph.nodes
                                       if n.leaf == "parameter"}.values())
    kernels = kernel_rows(program, arrays, plan, max(3, repeat // 4), floor)
    gemm = sum(k.gemm for k in kernels)
    choice = getattr(plan, "choice", None)
    return Report(function.backend, statistics.median(samples), repeat, ideal, gemm,
                  floor["bandwidth"]["best"], floor["gemm"]["flops"], kernels,
                  None if choice is None else (choice.threads, *choice.fastest()))


def kernel_rows(program, arrays, plan, repeat: int, floor: dict) -> list:
    """A ``KernelTime`` per kernel: the backend's own timing next to the kernel's cost."""
    seconds = program.time_kernels(arrays, plan, repeat)
    rows = []
    bandwidth, peak = floor["bandwidth"]["best"], floor["gemm"]["flops"]
    for kernel, threads in zip(program.kernels, program.threads(plan)):
        cost = kernel.cost(plan.env)
        floor_s = max((cost["read"] + cost["written"]) / bandwidth, cost["gemm"] / peak)
        rows.append(KernelTime(kernel.name, kernel.kind, threads,
                               sh.evaluate(kernel.space, plan.env),
                               len(kernel.nodes), cost["read"], cost["written"], cost["flops"],
                               cost["gemm"], seconds.get(kernel.name, 0.0), floor_s))
    return rows


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def fmt_count(n: int) -> str:
    if not n:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
