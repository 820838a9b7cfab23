"""Runtime: the compiled program of one function, its buffers and its calls.

A ``Program`` loads the generated module, lays out memory per shape signature (temporaries
alive at different times share an arena), and runs the entry point. Each concurrent call takes
its own ``Workspace``, so calls from several threads never write the same memory.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import threading
import time
from collections.abc import Sequence

import numba
import numpy as np

from ... import shapes as sh
from ...graph import Graph
from ...inspect import timed
from ...schedule import is_view, schedule
from ...tensor import Tensor
from . import blas
from .cache import load
from .render import ALIGN, FORMAT, HEADER, PARALLEL_MIN, Names, arena_dtypes, layout, render


class Workspace:
    """The memory one call writes: the temporaries' arenas (in ``tail``, the arguments of
    ``run`` after the outputs) and the output arrays of its last call (reused once dropped)."""

    __slots__ = ("tail", "last")

    def __init__(self, tail: list, last: list):
        self.tail, self.last = tail, last


class Program:
    """What ``sg.function`` runs for ``backend="numba"``: one generated entry point.

    Intermediate buffers are allocated once per shape signature and reused; outputs are fresh
    arrays every call, so nothing returned is overwritten later.
    """

    def __init__(self, placeholders: Sequence[Tensor], graph: Graph, stats: dict):
        self.stats = stats
        seconds = stats.setdefault("seconds", {})
        self.targets = list(graph.outputs)
        self.graph = graph
        with timed(seconds, "schedule"):
            sched = schedule(self.targets)
        self.kernels = sched.kernels
        nodes = self.graph.nodes
        names = Names(nodes, placeholders)
        self.params = [n for n in nodes if n.leaf == "parameter"]
        consts = [n for n in nodes if n.leaf == "constant"]
        stored = [n for n in nodes if id(n) in sched.roots and id(n) not in sched.locals]
        output_ids = {id(t) for t in self.targets}
        self.outputs = [n for n in stored if id(n) in output_ids]
        self.temps = [n for n in stored if id(n) not in output_ids]
        self.render = lambda profile: render(sched, names, placeholders, self.params, consts,
                                             self.outputs, self.temps, profile)
        with timed(seconds, "codegen"):
            source, self.consts = self.render(False)
            self.source = self.header(source) + source
        self.sizes = [np.array(list(names.rows), np.int64)] if names.rows else []
        with timed(seconds, "import"):
            self.module = load(self.source)
        self.entry = self.module.run
        self.threads_entry = getattr(self.module, "run_threads", None)
        self.const_arenas = []
        offsets = layout(self.consts)
        for dtype in arena_dtypes(self.consts):
            mine = [(c, o) for c, o in zip(self.consts, offsets) if c.dtype == dtype]
            arena = np.zeros(max(o + c.value.size for c, o in mine), dtype)
            for c, o in mine:
                arena[o:o + c.value.size] = c.value.reshape(-1)
            self.const_arenas.append(arena)
        self.temp_dtypes = arena_dtypes(self.temps)
        self.spans = self.lifetimes()
        self.pick = self.picks(placeholders)
        # every result is an output buffer, each once and in order: the usual case
        self.plain = [p[:2] for p in self.pick] == [("out", k) for k in range(len(self.outputs))] \
            and not any(again for _, _, again in self.pick)
        self.stats["kernels"] = len(self.kernels)
        self.lock = threading.Lock()   # held while a plan's layout is worked out

    def header(self, source: str) -> str:
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        summary = f"{len(self.graph.nodes)} nodes, {len(self.kernels)} kernels"
        return HEADER.format(version=version(), format=FORMAT, digest=digest,
                             summary=summary) + "\n\n"

    def profiled(self):
        """The same program with every kernel a function of its own (``explain`` times them);
        compiled on first use, then cached like any module."""
        if getattr(self, "_profiled", None) is None:
            source, _ = self.render(True)
            self._profiled = load(self.header(source) + source)
        return self._profiled

    def time_kernels(self, arrays: Sequence[np.ndarray], plan, repeat: int) -> dict:
        """Median seconds of each kernel over ``repeat`` calls, by kernel name: the profiling
        build's ``run`` (every kernel a function of its own) runs as Python, each kernel it
        calls wrapped in a timer."""
        module = self.profiled()
        namespace = vars(module)
        spent: dict = {k.name: [] for k in self.kernels}
        originals = {}

        def timer(name, fn):
            def call(*a):
                t0 = time.perf_counter()
                out = fn(*a)
                spent[name].append(time.perf_counter() - t0)
                return out
            return call

        for kernel in self.kernels:
            for name in (kernel.name, f"{kernel.name}_serial"):
                if name in namespace:
                    originals[name] = namespace[name]
                    namespace[name] = timer(kernel.name, namespace[name])
        try:
            for _ in range(repeat):
                entry = module.run_threads if plan.threads else module.run
                self.run(arrays, plan, entry=entry.py_func)
        finally:
            namespace.update(originals)
        return {name: statistics.median(times) if times else 0.0
                for name, times in spent.items()}

    def lifetimes(self) -> list:
        """``(first kernel, last kernel)`` that touch each temporary buffer."""
        first, last = {}, {}
        for k, kernel in enumerate(self.kernels):
            for r in kernel.writes:
                first.setdefault(id(r), k)
            for r in kernel.reads:
                # a reshape view is read through its input's buffer in loops, but from its own
                # buffer where it is stored (a BLAS operand): both stay alive
                last[id(r)] = k
                if is_view(r):
                    last[id(r.inputs[0])] = k
        return [(first[id(t)], last.get(id(t), first[id(t)])) for t in self.temps]

    def prepare(self, plan) -> None:
        """The memory layout of one shape signature (made once, under the program's lock);
        temporaries alive at different times share memory. The memory itself is a
        ``Workspace``: one per concurrent call, so calls from several threads never share it."""
        with self.lock:
            if plan.prepared:
                return
            gemm = [k.cost(plan.env)["gemm"] for k in self.kernels if k.kind != "loop"]
            plan.blas = None if not any(gemm) else \
                blas.threads_for(max(gemm), numba.get_num_threads())
            plan.outputs = [(plan.shapes[id(n)], n.dtype) for n in self.outputs]
            # threads (and so the run_threads entry, compiled on first use) only if a loop is big
            plan.threads = self.threads_entry is not None and any(
                k.kind == "loop" and sh.evaluate(sh.size(k.space), plan.env) >= PARALLEL_MIN
                for k in self.kernels)
            plan.nc = numba.get_num_threads() if plan.threads else 1
            plan.entry = None   # chosen by the first call
            # temporaries alive at different times share memory: [offset, size, free after]
            blocks: dict = {d: [] for d in self.temp_dtypes}
            ends = dict.fromkeys(self.temp_dtypes, 0)
            offsets = []
            for t, (start, end) in zip(self.temps, self.spans):
                count = int(np.prod(plan.shapes[id(t)]))
                free = [b for b in blocks[t.dtype] if b[2] < start and b[1] >= count]
                block = min(free, key=lambda b: b[1]) if free else None
                if block is None:
                    size = -(-max(count, 1) // ALIGN) * ALIGN
                    block = [ends[t.dtype], size, end]
                    blocks[t.dtype].append(block)
                    ends[t.dtype] += size
                block[2] = end
                offsets.append(block[0])
            plan.off = np.array(offsets, np.int64)
            plan.arena_sizes = [max(ends[d], 1) for d in self.temp_dtypes]
            plan.pool = []          # idle workspaces of this plan
            plan.prepared = True    # last: other threads read the fields above once it is set

    def workspace(self, plan) -> Workspace:
        """Fresh memory for one call of ``plan``: its own arenas and output slots."""
        arenas = [np.empty(n, d) for n, d in zip(plan.arena_sizes, self.temp_dtypes)]
        # the arguments of run after the outputs: the same arrays on every call with this memory
        tail = self.const_arenas + arenas + ([plan.off] if self.temps else []) + self.sizes
        return Workspace(tail, [None] * len(self.outputs))

    def picks(self, placeholders: Sequence[Tensor]) -> list:
        """How to fetch each result: ``("out", k, copy?)``, ``("arg", k)`` or ``("leaf", node)``;
        repeated or leaf results are copies, so no two results share memory."""
        out_pos = {id(n): k for k, n in enumerate(self.outputs)}
        arg_pos = {id(p): k for k, p in enumerate(placeholders)}
        picks, seen = [], set()
        for t in self.targets:
            if id(t) in out_pos:
                picks.append(("out", out_pos[id(t)], id(t) in seen))
            elif t.leaf == "placeholder":
                picks.append(("arg", arg_pos[id(t)], True))
            else:
                picks.append(("leaf", t, True))
            seen.add(id(t))
        return picks

    def run(self, arrays: Sequence[np.ndarray], plan, entry=None) -> list:
        """One call on checked arguments; ``entry`` replaces the compiled ``run`` (``explain``
        passes its Python body, so that each kernel it calls can be timed).

        Safe from any thread: a call takes an idle workspace of its plan (or makes one), so
        calls running at the same time never write the same memory."""
        if not plan.prepared:
            self.prepare(plan)
        try:
            space = plan.pool.pop()       # atomic: two threads never take the same one
        except IndexError:
            space = self.workspace(plan)
        try:
            outs = self.call(arrays, plan, space, entry)
        finally:
            plan.pool.append(space)
        if self.plain:
            return outs
        return [(outs[k].copy() if again else outs[k]) if kind == "out" else
                np.array(arrays[k]) if kind == "arg" else np.array(k.value)
                for kind, k, again in self.pick]

    def call(self, arrays: Sequence[np.ndarray], plan, space: Workspace, entry) -> list:
        """Run the entry point with ``space``'s memory; returns the output arrays."""
        outs = space.last
        for k, (shape, dtype) in enumerate(plan.outputs):
            # The workspace's last array is reused if the caller dropped it (and every view of
            # it): two references are left, the workspace's and getrefcount's argument. Reusing
            # it saves a page fault per 4 KiB of a large fresh array (NumPy at 10M elements is
            # 26x slower than at 1M for that), and nothing can observe the overwrite. Only the
            # thread holding the workspace looks, so no other call can take the array meanwhile.
            if outs[k] is None or sys.getrefcount(outs[k]) > 2:
                outs[k] = np.empty(shape, dtype)
        if entry is None:
            entry = plan.entry
            if entry is None:
                return self.first_call(arrays, plan, space)
        if plan.blas is None:
            entry(*arrays, *[p._value for p in self.params], *outs, *space.tail, plan.nc)
        else:
            before = blas.set_threads(plan.blas)
            try:
                entry(*arrays, *[p._value for p in self.params], *outs, *space.tail, plan.nc)
            finally:
                if before is not None and before != plan.blas:
                    blas.set_threads(before)
        return list(outs)

    def first_call(self, arrays, plan, space: Workspace) -> list:
        """The first call of a plan picks its entry point. The first call of an entry point
        has Numba compile it or load it from its disk cache: ``stats`` records which, and how
        long that took (in ``seconds``, "first call")."""
        entry = self.threads_entry if plan.threads else self.entry
        fresh = not entry.signatures
        threads = "" if entry is self.entry else " with threads"
        took: dict = {}
        with timed(took, "first call" + threads):
            results = self.call(arrays, plan, space, entry)
        if fresh:
            self.stats["seconds"].update(took)
            self.stats["cache" + threads] = \
                "hit" if sum(entry.stats.cache_hits.values()) else "miss"
        plan.entry = entry
        return results


def version() -> str:
    from ... import __version__
    return __version__
