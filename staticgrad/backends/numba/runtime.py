"""Runtime: the compiled program of one function, its buffers and its calls.

A ``Program`` renders each kernel, loads one compiled function per distinct kernel text (from
the disk cache when it can) or takes the ``blas`` function a kernel's library call names, and
runs them in order from a table: one row per kernel with the slots of its array arguments.
Memory is laid out per shape signature (temporaries alive at different times share an arena);
each concurrent call takes its own ``Workspace``, so calls from several threads never write
the same memory.
"""

from __future__ import annotations

import operator
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
from . import blas, pool, steady, workers
from .cache import load, own_code
from .render import (
    CHUNKS,
    FORMAT,
    PARALLEL_MIN,
    all_chunks,
    checks,
    distinct,
    listing,
    render_kernel,
)

ALIGN = 16   # arena offsets are multiples of 16 elements, so every view is 64-byte aligned


class Workspace:
    """The memory one call uses: ``slots`` holds every array a kernel takes (arguments,
    parameters and outputs are filled per call; constants and the temporaries' views into
    this workspace's arenas stay), ``last`` the output arrays of its last call."""

    __slots__ = ("slots", "last")

    def __init__(self, slots: list, last: list):
        self.slots, self.last = slots, last


class Step:
    """One row of the program: a kernel's compiled function (its generated one, or the
    ``blas`` function of its library call) and where its arguments are."""

    __slots__ = ("code", "args", "checks", "kernel")

    def __init__(self, code, args: list, checks: list, kernel):
        self.code, self.args, self.checks, self.kernel = code, args, checks, kernel


class Program:
    """What ``sg.function`` runs for ``backend="numba"``: the kernels, called in order.

    ``stats`` gains ``kernels`` (how many), ``distinct`` (how many different generated
    texts), and after the first call ``compiled`` / ``loaded`` (distinct generated kernels
    Numba compiled, or loaded from the disk cache), ``library`` (the same for the ``blas``
    functions of library calls, per argument types: compiled once for every graph, so not
    kernels of this one) and ``cache`` ("hit" when nothing was compiled, else "miss"); and
    ``threads``, for the call sizes with work enough for threads, whether their calls run on
    threads or on one (``pool.Choice``: the faster, measured).
    """

    def __init__(self, placeholders: Sequence[Tensor], graph: Graph, stats: dict):
        self.stats = stats
        seconds = stats.setdefault("seconds", {})
        self.targets = list(graph.outputs)
        self.graph = graph
        with timed(seconds, "schedule"):
            sched = schedule(self.targets)
        self.kernels = sched.kernels
        nodes = graph.nodes
        self.params = [n for n in nodes if n.leaf == "parameter"]
        stored = [n for n in nodes if id(n) in sched.roots and id(n) not in sched.locals
                  and id(n) not in sched.aliases]
        output_ids = {id(t) for t in self.targets}
        self.outputs = [n for n in stored if id(n) in output_ids]
        self.temps = [n for n in stored if id(n) not in output_ids]
        with timed(seconds, "codegen"):
            self.codes = [render_kernel(k, sched.roots, sched.locals) for k in self.kernels]
        # slots: arguments, parameters, outputs, views of those (filled per call), then
        # constants, temporaries and views of those (made once per workspace)
        fixed = list(placeholders) + self.params + self.outputs
        self.slot = {id(n): k for k, n in enumerate(fixed)}
        aliases = [(n, *sched.aliases[id(n)]) for n in nodes if id(n) in sched.aliases]
        self.call_views = [a for a in aliases if id(a[1]) in self.slot]
        self.space_views = [a for a in aliases if id(a[1]) not in self.slot]
        for alias, _, _ in self.call_views:
            self.slot[id(alias)] = len(self.slot)
        self.per_call = len(self.slot)
        self.nothing = [None] * self.per_call
        self.consts = []
        bases = [base for _, base, _ in self.space_views]
        for n in [n for code in self.codes for n in code.arrays] + bases + \
                [i for code in self.codes for i, _, _ in checks(code.kernel)]:
            if n.leaf == "constant" and id(n) not in self.slot:
                self.slot[id(n)] = len(self.slot)
                self.consts.append(n)
        for t in self.temps:
            self.slot[id(t)] = len(self.slot)
        for alias, _, _ in self.space_views:
            self.slot[id(alias)] = len(self.slot)
        # then each kernel's per-chunk partials (made per workspace, shaped per plan)
        partials, end = [], len(self.slot)
        for code in self.codes:
            partials.append(list(range(end, end + len(code.scratch))))
            end += len(code.scratch)
        self.base = {id(alias): base for alias, base, _ in aliases}
        with timed(seconds, "import"):
            self.steps = [self.step(code, mine) for code, mine in zip(self.codes, partials)]
        # the package functions among the steps' (their stats are kept apart)
        self.library = {id(step.kernel) for step in self.steps if step.code.call is not None}
        self.spans = self.lifetimes()
        self.pick = self.picks(placeholders)
        # every result is an output buffer, each once and in order: the usual case
        self.plain = [p[:2] for p in self.pick] == [("out", k) for k in range(len(self.outputs))] \
            and not any(again for _, _, again in self.pick)
        calls = sum(1 for c in self.codes if c.call is not None)
        header = (f'"""Generated by staticgrad {version()} (format {FORMAT}): '
                  f'{len(nodes)} nodes, {len(self.kernels)} kernels ({distinct(self.codes)} '
                  f'distinct, {calls} library call{"" if calls == 1 else "s"})."""\n'
                  "import math\n\nimport numba\nimport numpy as np\n\n"
                  "from staticgrad.backends.numba import blas, mathlib\n")
        self.source = listing(self.codes, graph.label, list(placeholders), self.targets, header,
                              aliases)
        stats["kernels"] = len(self.kernels)
        stats["distinct"] = distinct(self.codes)
        self.lock = threading.Lock()   # held while a plan's layout is worked out

    def step(self, code, partials: list) -> Step:
        """A kernel's row: its generated function (imported from the disk cache's module) and
        its arrays' slots, or for a library call the ``blas`` function and the call's arrays.
        """
        bounds = [(self.slot[id(i)], size, message) for i, size, message in checks(code.kernel)]
        if code.call is not None:
            return Step(code, [self.slot[id(n)] for n in code.call.arrays], bounds,
                        getattr(blas, code.call.function))
        return Step(code, [self.slot[id(n)] for n in code.arrays] + partials, bounds,
                    own_code(load(code.module()).kernel))

    def lifetimes(self) -> list:
        """``(first kernel, last kernel)`` that touch each temporary buffer."""
        first, last = {}, {}
        for k, kernel in enumerate(self.kernels):
            for r in kernel.writes:
                first.setdefault(id(r), k)
            for r in kernel.reads:
                # a reshape view is read through its input's buffer; an alias is its base's
                for m in (r, r.inputs[0]) if is_view(r) else (r,):
                    last[id(self.base.get(id(m), m))] = k
        return [(first[id(t)], last.get(id(t), first[id(t)])) for t in self.temps]

    def prepare(self, plan) -> None:
        """Everything about one shape signature, worked out once under the program's lock:
        each kernel's sizes and threads (``plan.spread``: the rows whose chunks run on
        ``pool`` threads), the BLAS threads, and the arena layout (temporaries alive at
        different times share memory)."""
        with self.lock:
            if plan.prepared:
                return
            env = plan.env
            plan.blas = self.blas_threads(env)
            plan.outputs = [(plan.shapes[id(n)], n.dtype) for n in self.outputs]
            threads = pool.size()
            rows = []
            plan.partials = []   # (shape, dtype) of each kernel's partials, in slot order
            plan.spread = {}     # row -> its stages, for a loop run on threads
            for r, step in enumerate(self.steps):
                code = step.code
                ints = list(code.call.ints) if code.call is not None else \
                    [key[1] if isinstance(key, tuple) else env[key] for key in code.sizes]
                nc = 1
                if code.chunked:
                    if threads > 1 and \
                            sh.evaluate(sh.size(code.kernel.space), env) >= PARALLEL_MIN:
                        nc, plan.spread[r] = threads, code.stages
                    ints += all_chunks(nc)   # pool.spread replaces them on threads
                plan.partials += [((nc, *(int(sh.evaluate(d, env)) for d in dims)), dtype)
                                  for _, dtype, dims in code.scratch]
                bounds = [(slot, int(sh.evaluate(size, env)), message)
                          for slot, size, message in step.checks]
                rows.append((step.kernel, gather(step.args), tuple(ints), bounds))
            plan.rows = rows
            blocks: dict = {}
            ends: dict = {}
            offsets = []
            for t, (start, end) in zip(self.temps, self.spans):
                count = int(np.prod(plan.shapes[id(t)]))
                mine = blocks.setdefault(t.dtype, [])   # [offset, size, free after]
                free = [b for b in mine if b[2] < start and b[1] >= count]
                block = min(free, key=lambda b: b[1]) if free else None
                if block is None:
                    size = -(-max(count, 1) // ALIGN) * ALIGN
                    block = [ends.get(t.dtype, 0), size, end]
                    mine.append(block)
                    ends[t.dtype] = block[0] + size
                block[2] = end
                offsets.append(block[0])
            plan.off = np.array(offsets, np.int64)
            plan.arena_sizes = ends
            plan.call_views = [self.view_of(a, plan) for a in self.call_views]
            plan.space_views = [self.view_of(a, plan) for a in self.space_views]
            plan.pool = []          # idle workspaces of this plan
            # threads on this plan's calls only if they beat one thread (see pool.Choice)
            sizes = ", ".join(sorted(f"{name}={size}" for name, size in env.items()))
            plan.choice = pool.Choice(self.stats.setdefault("threads", {}), sizes) \
                if plan.spread or any(count > 1 for count in plan.blas.values()) else None
            plan.prepared = True    # last: other threads read the fields above once it is set

    def view_of(self, alias: tuple, plan) -> tuple:
        """``(base slot, start, stop, shape)`` of an alias for a plan's sizes."""
        node, base, offset = alias
        start = int(sh.evaluate(offset, plan.env))
        shape = plan.shapes[id(node)]
        return self.slot[id(base)], start, start + int(np.prod(shape)), shape

    def blas_wanted(self, env: dict) -> dict:
        """``{row: BLAS threads}`` for each kernel that calls BLAS: the threads its largest
        single product wants (a scan's per-step products on one thread, the big product next
        to it on two)."""
        largest = {r: kernel.cost(env)["largest"] for r, kernel in enumerate(self.kernels)
                   if kernel.kind != "loop"}
        return {r: blas.threads_for(flops, pool.size())
                for r, flops in largest.items() if flops}

    def blas_threads(self, env: dict) -> dict:
        """``{row: BLAS threads to set before it}``: ``blas_wanted``, set only where the count
        changes."""
        switches, current = {}, None
        for r, wanted in self.blas_wanted(env).items():
            if wanted != current:
                switches[r] = current = wanted
        return switches

    def threads(self, plan) -> list:
        """How many threads each kernel runs on for ``plan``: a loop's chunk count (1 below
        ``PARALLEL_MIN``), a matrix product's BLAS threads, 1 for any other kernel; 1 for
        all of them while the plan's calls run on one thread (``pool.Choice``)."""
        if not on_threads(plan):
            return [1] * len(self.steps)
        products = self.blas_wanted(plan.env)
        return [ints[-len(CHUNKS)] if step.code.chunked else products.get(r, 1)
                for r, (step, (_, _, ints, _)) in enumerate(zip(self.steps, plan.rows))]

    def workspace(self, plan) -> Workspace:
        """Fresh memory for calls of ``plan``: its own arenas, with a view per temporary."""
        arenas = {d: np.empty(n, d) for d, n in plan.arena_sizes.items()}
        slots = [None] * self.per_call + [c.value for c in self.consts]
        for t, offset in zip(self.temps, plan.off.tolist()):
            shape = plan.shapes[id(t)]
            count = int(np.prod(shape))
            slots.append(arenas[t.dtype][offset:offset + count].reshape(shape))
        for base, start, stop, shape in plan.space_views:
            slots.append(slots[base].reshape(-1)[start:stop].reshape(shape))
        slots += [np.empty(shape, dtype) for shape, dtype in plan.partials]
        return Workspace(slots, [None] * len(self.outputs))

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

    def run(self, arrays: Sequence[np.ndarray], plan, spent: dict | None = None) -> list:
        """One call on checked arguments (``spent``: add each kernel's seconds to it).

        Safe from any thread: a call takes an idle workspace of its plan (or makes one), so
        calls running at the same time never write the same memory. After a plan's first
        call, ``sg.function`` calls its ``steady`` function instead (see ``steady_source``)."""
        if not plan.prepared:
            self.prepare(plan)
        try:
            space = plan.pool.pop()       # atomic: two threads never take the same one
        except IndexError:
            space = self.workspace(plan)
        try:
            outs = self.call(arrays, plan, space, spent)
        finally:
            plan.pool.append(space)
        return self.results(outs, arrays)

    def results(self, outs: list, arrays) -> list:
        """The function's results from the output buffers (copies where a result repeats, or
        is an argument or a leaf)."""
        if self.plain:
            return outs
        return [(outs[k].copy() if again else outs[k]) if kind == "out" else
                np.array(arrays[k]) if kind == "arg" else np.array(k.value)
                for kind, k, again in self.pick]

    def call(self, arrays: Sequence[np.ndarray], plan, space: Workspace, spent) -> list:
        """Run every kernel with ``space``'s memory; returns the output arrays."""
        self.fill(arrays, plan, space)
        return self.run_rows(plan, space, spent)

    def fill(self, arrays: Sequence[np.ndarray], plan, space: Workspace) -> None:
        """Put a call's arrays in ``space``'s slots: arguments, parameters, output buffers
        (fresh, or the last call's if nobody holds them) and views of those."""
        outs = space.last
        for k, (shape, dtype) in enumerate(plan.outputs):
            # The workspace's last array is reused if the caller dropped it (and every view of
            # it): two references are left, the workspace's and getrefcount's argument. Reusing
            # it saves a page fault per 4 KiB of a large fresh array (NumPy at 10M elements is
            # 26x slower than at 1M for that), and nothing can observe the overwrite. Only the
            # thread holding the workspace looks, so no other call can take the array meanwhile.
            if outs[k] is None or sys.getrefcount(outs[k]) > 2:
                outs[k] = np.empty(shape, dtype)
        slots = space.slots
        slots[:self.per_call] = [*arrays, *[p._value for p in self.params], *outs,
                                 *[None] * len(plan.call_views)]
        for k, (base, start, stop, shape) in enumerate(plan.call_views, self.per_call -
                                                       len(plan.call_views)):
            slots[k] = slots[base].reshape(-1)[start:stop].reshape(shape)

    def run_rows(self, plan, space: Workspace, spent) -> list:
        """The kernels in order on ``space``'s slots, each under the BLAS thread count it
        wants; each timed into ``spent`` when given. A plan's first call also has Numba
        compile or load the kernels it has not run yet (``stats`` records which). Later calls
        take the plan's steady code instead (``steady.make``)."""
        slots = space.slots
        first = not plan.called
        clock = time.perf_counter()
        if first:
            fresh = self.compile_new(plan, slots)
            plan.called = True   # after plan.types: a call finding it set may make the steady code
        before = None
        threads = on_threads(plan)
        try:
            for r, (step, (fn, args, ints, bounds)) in enumerate(zip(self.steps, plan.rows)):
                if r in plan.blas:
                    previous = blas.set_threads(plan.blas[r] if threads else 1)
                    before = previous if before is None else before
                t0 = time.perf_counter()
                if bounds:
                    check_bounds(slots, bounds)
                if r in plan.spread:
                    own = len(CHUNKS)
                    pool.spread(fn, (*args(slots), *ints[:-own]), ints[-own], plan.spread[r],
                                threads)
                else:
                    fn(*args(slots), *ints)
                if spent is not None:
                    spent.setdefault(step.code.kernel.name, []).append(time.perf_counter() - t0)
        finally:
            # the workspace must not keep the caller's arrays (or the outputs) alive
            slots[:self.per_call] = self.nothing
            if before is not None:
                blas.set_threads(before)
        if first:
            self.record(fresh, "first call", time.perf_counter() - clock)
            steady.make(self, plan)
        return list(space.last)

    def steady_source(self, plan) -> str:
        """The Python of a plan's calls after its first (see ``steady.source``)."""
        return steady.source(self, plan)

    def compile_new(self, plan, slots: list) -> dict:
        """Have Numba compile (or load from the disk cache) each function of ``plan`` not yet
        compiled or loaded in this process for the argument types ``slots`` give it: before
        any thread calls one, and on worker processes when there are many (a package
        function has no module of its own for a worker to import: compiled here). Notes each
        row's argument types in ``plan.types``: a function may have several compiled
        overloads (a package function has one per dtype), and the steady path calls the entry
        point of the row's own. Returns ``(function, argument types, cache misses before)``
        by ``(id, types)`` (``record`` tells compiled from loaded by them)."""
        plan.types = [arg_types(row, slots) for row in plan.rows]
        fresh = {}
        for (fn, _, _, _), types in zip(plan.rows, plan.types):
            if types not in fn.overloads:
                fresh.setdefault((id(fn), types), (fn, types, fn.stats.cache_misses[types]))
        jobs = [(fn, types) for fn, types, _ in fresh.values()]
        if jobs:
            self.stats["workers"] = workers.compile_all(
                [job for job in jobs if id(job[0]) not in self.library],
                local=[job for job in jobs if id(job[0]) in self.library])
        for fn, types in jobs:
            fn.compile(types)
        return fresh

    def precompile(self, plan, arrays: Sequence[np.ndarray]) -> None:
        """What a plan's first call compiles, without running anything: ``arrays`` only give
        the argument types (stand-ins of the right shapes will do). Tiered functions call it
        from their background thread; the plan's first call then only loads nothing new."""
        if not plan.prepared:
            self.prepare(plan)
        space = self.workspace(plan)
        self.fill(arrays, plan, space)
        clock = time.perf_counter()
        try:
            self.record(self.compile_new(plan, space.slots), "compile",
                        time.perf_counter() - clock)
        finally:
            space.slots[:self.per_call] = self.nothing
        plan.pool.append(space)   # its buffers serve the calls

    def record(self, fresh: dict, stage: str, seconds: float) -> None:
        """``stats``: how many distinct kernels were compiled and how many loaded from the
        disk cache, the same for the library calls' functions (``library``, per argument
        types), and the seconds of ``stage`` (the first call, or a tiered compile)."""
        stats = self.stats
        kernels, compiled = set(), set()
        library = dict(stats.get("library", {"compiled": 0, "loaded": 0}))
        for fn, types, misses in fresh.values():
            missed = fn.stats.cache_misses[types] > misses
            if id(fn) in self.library:
                library["compiled" if missed else "loaded"] += 1
            else:
                kernels.add(id(fn))
                if missed:
                    compiled.add(id(fn))
        stats["compiled"] = stats.get("compiled", 0) + len(compiled)
        stats["loaded"] = stats.get("loaded", 0) + len(kernels - compiled)
        if self.library:
            stats["library"] = library
        stats["cache"] = "miss" if stats["compiled"] or library["compiled"] else "hit"
        stats["seconds"][stage] = stats["seconds"].get(stage, 0.0) + seconds

    def time_kernels(self, arrays: Sequence[np.ndarray], plan, repeat: int) -> dict:
        """Median seconds of each kernel over ``repeat`` calls, by kernel name: the same
        compiled kernels, each call timed from Python."""
        spent: dict = {}
        for _ in range(repeat):
            self.run(arrays, plan, spent)
        return {k.name: statistics.median(spent[k.name]) if spent.get(k.name) else 0.0
                for k in self.kernels}


def on_threads(plan) -> bool:
    """Whether ``plan``'s calls use threads now: always, unless its ``pool.Choice`` measured
    one thread faster."""
    return plan.choice is None or plan.choice.threads


def arg_types(row: tuple, slots: list) -> tuple:
    """The Numba types of the arguments a program row's kernel gets from ``slots``."""
    _, args, ints, _ = row
    return tuple(numba.typeof(v) for v in (*args(slots), *ints))


def gather(positions: list):
    """``slots -> tuple of slots[k] for k in positions``, as fast as Python allows."""
    if len(positions) == 1:
        (k,) = positions
        return lambda slots: (slots[k],)
    return operator.itemgetter(*positions) if positions else (lambda slots: ())


def check_bounds(slots: list, bounds: list) -> None:
    """``check_index`` of each ``(slot, size, message)``."""
    for slot, size, message in bounds:
        steady.check_index(slots[slot], size, message)


def version() -> str:
    from ... import __version__
    return __version__
