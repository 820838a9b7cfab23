"""Loop nests: one fused kernel written as Numba loops, from the schedule's data.

``KernelWriter`` walks a kernel's roots: each value is computed inline at the shallowest loop
depth its index allows and named once per (node, index); reductions accumulate in registers
(or per-chunk partials) as their ``Accumulator`` says. ``Nest`` places the statements in a loop
nest whose outer loop runs chunks ``c0 .. c1`` of ``nc``: one serial build serves every thread
(``pool.py`` runs the chunks). A kernel big enough for threads runs in stages (see
``KernelWriter.staged``): its chunks, then what only one thread may do once they are all done.
"""

from __future__ import annotations

import numpy as np

from ... import shapes as sh
from ...index import Affine, Gather, loop_index
from ...ops import REGISTRY, Kind
from ...schedule import Kernel, input_indices, is_view, reduced_axes
from ...tensor import Tensor

BLOCK = 1024             # a float32 sum adds this many elements in float32, then in float64
COLUMN_BLOCK = 64        # ... and a float32 sum over axis 0 this many rows, when it keeps
COLUMN_BLOCK_WIDTH = 256  # this many columns or more (see KernelWriter.column_blocks)
# A row loop of a fixed length in this range gets its length at run time (a size argument):
# given a literal, LLVM unrolls it completely and then cannot vectorize a body as large as
# exp's (a softmax over 10 classes ran 2x slower)
OPAQUE_ROWS = range(8, 129)
# An outer or middle loop of a fixed length from 2 up gets it at run time too. Given a literal
# 16, LLVM unrolls the loop around the row loop completely, 16 vectorized copies of it, and its
# loop strength reduction over them took 0.7 s of a copy kernel's 0.8 s compile (0.17 s opaque)
OPAQUE_OUTER = 2
# ... unless the loop and the loops inside it make this few iterations in all: then LLVM turns
# the nest into straight code (a 2x2 pooling window: its max-pool kernel 190 -> 100 us)
SMALL_NEST = 16


def opaque(extent, innermost: bool, nest: tuple = ()) -> bool:
    """Whether a loop of this extent is given its length as an argument, not a literal;
    ``nest`` is the extents of the loops it holds, itself first."""
    if not sh.is_static(extent):
        return False
    if innermost:
        return extent in OPAQUE_ROWS
    small = all(sh.is_static(e) for e in nest) and int(np.prod(nest)) <= SMALL_NEST
    return extent >= OPAQUE_OUTER and not small


def literal(value, dtype: np.dtype) -> str:
    """A scalar constant typed for generated code, so float32 loops stay float32."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return "True" if value else "False"
    if dtype.kind == "f":
        v = float(value)
        # the shortest text that gives the same value in this dtype: 1e-06, not 9.99...e-07
        text = "np.nan" if np.isnan(v) else ("np.inf" if v == np.inf else
                                             "-np.inf" if v == -np.inf else
                                             repr(float(str(dtype.type(v)))))
        return f"np.{dtype.name}({text})"
    return f"np.{dtype.name}({int(value)})"


def ctor(dtype: np.dtype) -> str:
    return "np.bool_" if np.dtype(dtype) == np.bool_ else f"np.{np.dtype(dtype).name}"


def accumulator_dtype(node: Tensor) -> np.dtype:
    if REGISTRY[node.op].accumulator.wide and node.dtype == np.float32:
        return np.dtype(np.float64)
    return node.dtype


def initial(node: Tensor) -> str:
    init = REGISTRY[node.op].accumulator.init
    dtype = accumulator_dtype(node)
    if dtype.kind in "iu" and np.isinf(init):
        info = np.iinfo(dtype)
        init = info.min if init < 0 else info.max
    if dtype == np.bool_:
        return "False" if init in (0, -np.inf) else "True"
    return literal(init, dtype)


# -- loop kernels --------------------------------------------------------------------------
class Nest:
    """One chunked loop nest. ``pre[d]`` runs inside loops ``0..d-1`` before loop ``d`` opens
    and ``post[d]`` after it closes. Depths below ``split`` are shared by all passes; from
    ``split`` down each pass has its own loops, run one after another over the same row.

    Lines emitted with ``block=True`` make the innermost loop run in blocks of ``BLOCK``
    elements, the lines running before and after each block: a float32 sum then adds a block
    in float32 (full-width vectors) and the blocks in float64 (accuracy)."""

    def __init__(self, writer: KernelWriter, split: int, passes: int):
        self.writer, self.split, self.rank = writer, split, writer.rank

        def table() -> dict:
            return {**{d: [] for d in range(self.rank + 1)}, "block": []}

        self.shared = [table(), table()]
        self.own = [[table(), table()] for _ in range(passes)]
        self.before: list = []   # before the loops (staged: values only, run by every stage)
        self.start: list = []    # first in each chunk (it fills its own rows)
        self.totals: list = []   # after every chunk: values from their partials (no stores)
        self.after: list = []    # after every chunk: the stores, by one thread
        self.per_chunk = False   # whether each chunk keeps partials of its own
        self.current = 0

    def emit(self, depth: int, line: str, post: bool = False, block: bool = False) -> None:
        if depth < 0:   # loop-invariant values go before the loops, once per call
            self.before.append(line)
            return
        if block:
            depth = self.rank - 1
        side = 1 if post else 0
        table = self.shared[side] if depth < self.split else self.own[self.current][side]
        table["block" if block else depth].append(line)

    def loops(self) -> list:
        """The loop nest: over the whole range, or over chunks ``c0 .. c1`` of ``nc``."""
        if self.rank == 0:
            out = []
            for p in range(len(self.own)):
                out += self.own[p][0][0] + self.own[p][1][0]
            return out
        extent = self.writer.space[0]
        fixed = opaque(extent, self.rank == 1, tuple(self.writer.space))
        n0 = self.writer.names.row(extent) if fixed else self.writer.names.dim(extent)
        if not self.writer.chunked:   # too small for threads: one pass over the whole range
            return [f"lo, hi = np.uint64(0), np.uint64({n0})"] + self.start + self.level(0)
        # the threads split axis 0 into nc chunks, each running some. Unsigned bounds: LLVM
        # then knows the indices are not negative, drops Numba's wraparound select and loads
        # consecutive vectors
        if not self.per_chunk:
            # chunks c0 .. c1 are one range: the same elements, each computed alone. Inside a
            # loop over chunks, LLVM made W2-like tanh loops 15-25% slower
            return [f"lo = np.uint64(c0 * {n0} // nc)", f"hi = np.uint64(c1 * {n0} // nc)",
                    *self.start, *self.level(0)]
        return ["for c in range(c0, c1):",
                f"    lo = np.uint64(c * {n0} // nc)",
                f"    hi = np.uint64((c + 1) * {n0} // nc)",
                *indent(self.start + self.level(0), 1)]

    def level(self, d: int) -> list:
        if d >= self.split:
            out = []
            for p in range(len(self.own)):
                out += self.own_level(p, d)
            return out
        return (self.shared[0][d] + self.loop(d, self.level(d + 1), self.shared)
                + self.shared[1][d])

    def own_level(self, p: int, d: int) -> list:
        pre, post = self.own[p][0][d], self.own[p][1][d]
        inner = self.loop(d, self.own_level(p, d + 1), self.own[p]) if d < self.rank else []
        return pre + inner + post

    def loop(self, d: int, body: list, section: list) -> list:
        if d >= self.rank or not body:
            return []
        lo, hi = ("lo", "hi") if d == 0 else ("0", self.writer.names.dim(self.writer.space[d]))
        head, tail = (section[0]["block"], section[1]["block"]) if d == self.rank - 1 \
            else ([], [])
        extent = self.writer.space[d]
        if d > 0 and opaque(extent, d == self.rank - 1, tuple(self.writer.space[d:])):
            hi = self.writer.names.row(extent)
        if not head and not tail or d > 0 and sh.is_static(extent) and extent <= BLOCK:
            bounds = "lo, hi" if d == 0 else hi   # (a short row is one block)
            return head + [f"for i{d} in range({bounds}):"] + indent(body, 1) + tail
        step = f"np.uint64({BLOCK})" if d == 0 else str(BLOCK)   # unsigned with unsigned
        inner = [f"for i{d} in range(b{d}, min(b{d} + {step}, {hi})):"] + indent(body, 1)
        return [f"for b{d} in range({lo}, {hi}, {BLOCK}):"] + indent(head + inner + tail, 1)


def indent(lines: list, levels: int) -> list:
    return ["    " * levels + line for line in lines]


def guarded(condition: str | None, lines: list) -> list:
    """``lines`` under ``if condition:`` (as they are when ``condition`` is ``None``)."""
    if condition is None or not lines:
        return list(lines)
    return [f"if {condition}:", *indent(lines, 1)]


class KernelWriter:
    """Writes one loop kernel: values are computed inline at the shallowest loop depth their
    indices allow and shared by (node, index) within the pass that can see them."""

    def __init__(self, kernel: Kernel, names, roots: set, local: set, chunked: bool):
        self.kernel, self.names, self.roots, self.local = kernel, names, roots, local
        self.space, self.rank = kernel.space, len(kernel.space)
        self.chunked = chunked and self.rank > 0   # the outer loop runs in nc chunks
        self.registers: dict = {}   # id(reduction) -> variable holding its finished value
        self.values: dict = {}
        self.nests: list = []
        split = self.rank if kernel.split is None else kernel.split
        if split == 0 and len(kernel.passes) > 1:
            # a reduction over everything finishes only after every chunk: one nest per pass
            for roots_ in kernel.passes:
                self.nest = Nest(self, self.rank, 1)
                self.nests.append(self.nest)
                # only values computed before the loops (depth 0) are seen by later nests
                self.values = {k: v for k, v in self.values.items() if v[1] == 0}
                self.write_pass(roots_)
        else:
            self.nest = Nest(self, split, len(kernel.passes))
            self.nests.append(self.nest)
            for p, roots_ in enumerate(kernel.passes):
                self.nest.current = p
                # values at the row depth stay visible to later passes; deeper ones do not
                self.values = {k: v for k, v in self.values.items() if v[1] <= split}
                self.write_pass(roots_)

    def write_pass(self, roots_: list) -> None:
        for r in roots_:
            if REGISTRY[r.op].kind is Kind.REDUCE:
                self.reduction(r)
            else:
                code, depth = self.value(r, loop_index(self.rank), top=True)
                idx = ", ".join(f"i{k}" for k in range(self.rank)) or "()"
                self.nest.emit(self.rank, f"{self.names.array(r)}[{idx}] = {code}")

    def fresh(self, prefix: str) -> str:
        return self.names.fresh(prefix)

    def lines(self) -> list:
        if self.chunked:
            return self.staged()
        out = []
        for nest in self.nests:
            out += nest.before + nest.loops() + nest.totals + nest.after
        return out

    def stages(self) -> tuple:
        """For each nest, whether it has stores to make after all its chunks (a stage of its
        own): what the runtime needs to run a chunked kernel on threads."""
        return tuple(bool(nest.after) for nest in self.nests)

    def staged(self) -> list:
        """A chunked kernel's nests, each in two stages a call selects with ``stage``: nest
        ``p`` runs its chunks ``c0 .. c1`` at stage ``2p`` (on every thread, each its own
        chunks) and its stores at ``2p + 1`` (on one thread, after all the chunks); stage -1
        runs everything in order (one thread, all chunks). Values from a nest's partials
        (``totals``) are worked out again by every later stage that reads them: they live in
        registers, and the partials stay in the workspace."""
        out, last = [], len(self.nests) - 1
        for p, nest in enumerate(self.nests):
            run, done = 2 * p, 2 * p + 1
            alone = last == 0 and not nest.totals and not nest.after
            out += guarded(None if p == 0 else f"stage < 0 or stage >= {run}", nest.before)
            out += guarded(None if alone else f"stage < 0 or stage == {run}", nest.loops())
            if p == last:   # nothing runs after the last store stage: one guard serves both
                out += guarded(f"stage < 0 or stage == {done}", nest.totals + nest.after)
            else:
                out += guarded(f"stage < 0 or stage > {run}", nest.totals)
                out += guarded(f"stage < 0 or stage == {done}", nest.after)
        return out

    # values ------------------------------------------------------------------------------
    def value(self, node: Tensor, index: tuple, top: bool = False) -> tuple:
        """``(code, depth)``: ``node`` read at ``index``, emitting the statements it needs."""
        if node.leaf == "constant" and node.value.size == 1:
            return literal(node.value.reshape(()).item(), node.dtype), 0
        if id(node) in self.registers:
            return self.registers[id(node)]
        key = (id(node), tuple(e if isinstance(e, Affine) else id(e) for e in index))
        if key in self.values:
            return self.values[key]
        code, depth, simple = self.compute(node, index, top)
        if not simple:   # a name or a literal is used as it is; anything else gets a name
            var = self.fresh("v")
            # a 0-d kernel has no loops: everything stays in program order
            self.nest.emit(depth if depth > 0 or self.rank == 0 else -1, f"{var} = {code}")
            code = var
        self.values[key] = (code, depth)
        return code, depth

    def compute(self, node: Tensor, index: tuple, top: bool) -> tuple:
        """``(code, depth, simple)``: ``simple`` code is a name or literal, never bound."""
        if node.op is None or is_view(node) or (id(node) in self.roots and not top):
            idx, depth = self.index_code(index)
            name = self.names.view(node) if is_view(node) else self.names.array(node)
            return f"{name}[{idx}]", depth, False
        opdef = REGISTRY[node.op]
        operands = input_indices(node, index)
        if opdef.kind is not Kind.ELEMENTWISE:   # an index map: the input, read elsewhere
            code, depth = self.value(node.inputs[0], operands[0])
            return code, depth, True
        args, depth = [], 0
        for x, xi in zip(node.inputs, operands):
            code, d = self.value(x, xi)
            args.append(code)
            depth = max(depth, d)
        template = opdef.loop(node, self.names.dim) if callable(opdef.loop) else opdef.loop
        at = ""
        if "{at}" in template:   # the element's row-major position (counter-based random bits)
            at, d = self.position(index, node.dims)
            depth = max(depth, d)
        return template.format(*args, t=ctor(node.dtype), at=at), depth, not opdef.reads_data

    def entry_code(self, e) -> tuple:
        """``(code, depth)`` of one index entry."""
        if isinstance(e, Gather):
            var, d = self.value(e.indices, e.index)
            size = self.names.dim(e.size)
            j = f"({var} + {size} if {var} < 0 else {var})"
            j = j if e.step == 1 else f"{e.step} * {j}"
            return (j if sh.is_static(e.start) and e.start == 0 else
                    f"({self.names.dim(e.start)} + {j})"), d
        return e.show(self.names.dim, self.names.offset), e.depth

    def index_code(self, index: tuple) -> tuple:
        parts, depth = [], 0
        for e in index:
            code, d = self.entry_code(e)
            parts.append(code)
            depth = max(depth, d)
        return (", ".join(parts) if parts else "()"), depth

    def position(self, index: tuple, dims: tuple) -> tuple:
        """``(code, depth)``: the row-major position of element ``index`` of an array of
        ``dims``, in int64 (loop variables may be unsigned: mixed, Numba would use floats)."""
        code, depth = "np.int64(0)", 0
        for axis, (e, d) in enumerate(zip(index, dims)):
            part, k = self.entry_code(e)
            code = f"np.int64({part})" if axis == 0 else \
                f"({code} * np.int64({self.names.dim(d)}) + np.int64({part}))"
            depth = max(depth, k)
        return code, depth

    def partials(self, prefix: str, dtype, dims: list, init: str | None = None) -> str:
        """A per-chunk array of shape ``(nc, *dims)`` that the caller passes in (the runtime
        keeps one per workspace): allocating it here cost Numba 0.2-0.4 s of compile per
        process and kind (``np.empty``, ``np.full``, ``np.zeros``) and an allocation per call.
        With ``init``, each chunk first fills its own row (the threads touch only their own)."""
        name = self.names.partials(prefix, dtype, dims)
        self.nest.per_chunk = True
        if init is not None:
            self.nest.start += self.names.fill(name, dims, init, lead="c")
        return name

    # reductions ----------------------------------------------------------------------------
    def reduction(self, node: Tensor) -> None:
        """Accumulate in a register when the reduced axes are the innermost ones (per chunk
        for a full reduction, combined after), else in per-chunk partial arrays or in place."""
        axes, keepdims = reduced_axes(node), dict(node.attrs)["keepdims"]
        rank, nest = self.rank, self.nest
        kept = [a for a in range(rank) if a not in axes]
        out_index = [("0" if a in axes else f"i{a}") for a in range(rank)] if keepdims \
            else [f"i{a}" for a in kept]
        stored = id(node) not in self.local
        out = self.names.array(node) if stored else None   # a local one has no array
        accumulator = REGISTRY[node.op].accumulator
        combine = accumulator.combine
        acc_dtype = accumulator_dtype(node)
        value, depth = self.value(node.inputs[0], loop_index(rank))
        raw = value
        if acc_dtype != node.inputs[0].dtype and accumulator.converts:
            value = f"{ctor(acc_dtype)}({value})"
        depth = max(depth, rank)
        # a float32 sum adds blocks in float32 (full-width vectors), then them in float64
        blocked = accumulator.blocked and node.inputs[0].dtype == np.float32 \
            and acc_dtype != np.float32

        def finish(code: str) -> str:
            return f"{ctor(node.dtype)}({code})" if acc_dtype != node.dtype else code

        if axes and tuple(axes) == tuple(range(kept[-1] + 1 if kept else 0, rank)):
            first = len(kept)
            acc = self.fresh("acc")
            nest.emit(first, f"{acc} = {initial(node)}")
            if blocked:
                block = self.fresh("blk")
                nest.emit(depth, f"{block} = {literal(0, np.float32)}", block=True)
                nest.emit(depth, f"{block} = {combine.format(block, raw)}")
                nest.emit(depth, f"{acc} = {combine.format(acc, f'{ctor(acc_dtype)}({block})')}",
                          post=True, block=True)
            elif accumulator.ignoring_nan and acc_dtype.kind == "f":
                seen = self.fresh("nan")
                nest.emit(first, f"{seen} = False")
                nest.emit(depth, f"{acc} = {accumulator.ignoring_nan.format(acc, value)}")
                nest.emit(depth, f"{seen} = {seen} | ({value} != {value})")
                nest.emit(first, f"{acc} = {literal(np.nan, acc_dtype)} if {seen} else {acc}",
                          post=True)
            else:
                nest.emit(depth, f"{acc} = {combine.format(acc, value)}")
            if first == 0 and self.chunked:   # each chunk's total, added after
                part, total = self.partials("part", acc_dtype, []), self.fresh("total")
                nest.emit(0, f"{part}[c] = {acc}", post=True)
                nest.totals += [f"{total} = {initial(node)}", "for c in range(nc):",
                                f"    {total} = {combine.format(total, f'{part}[c]')}"]
                result = self.fresh("r")
                nest.totals.append(f"{result} = {finish(total)}")
                if stored:
                    nest.after.append(f"{out}[{', '.join(out_index) or '()'}] = {result}")
                self.registers[id(node)] = (result, 0)
                return
            result = self.fresh("r")
            nest.emit(first, f"{result} = {finish(acc)}", post=True)
            if stored:
                nest.emit(first, f"{out}[{', '.join(out_index) or '()'}] = {result}",
                          post=True)
            self.registers[id(node)] = (result, first)
            return
        idx = ", ".join(out_index) or "()"
        if 0 in axes and self.chunked:
            # chunks run in parallel over axis 0: each adds into its own partial row
            width = [self.space[a] for a in kept]
            part = self.partials("part", acc_dtype, width, initial(node))
            slot = ", ".join(["c"] + [f"i{a}" for a in kept])
            loops = [f"for q{j} in range({self.names.dim(w)}):" for j, w in enumerate(width)]
            cell = ", ".join(f"q{j}" for j in range(len(kept)))
            if blocked and all(sh.is_static(w) for w in width) \
                    and int(np.prod(width)) >= COLUMN_BLOCK_WIDTH:
                self.column_blocks(part, slot, cell, width, loops, raw, combine)
            else:
                nest.emit(depth, f"{part}[{slot}] = {combine.format(f'{part}[{slot}]', value)}")
            target = ", ".join("0" if a in axes else f"q{kept.index(a)}" for a in range(rank)) \
                if keepdims else cell
            total = self.fresh("total")
            body = [f"{total} = {initial(node)}", "for c in range(nc):",
                    f"    {total} = {combine.format(total, f'{part}[c, {cell}]')}",
                    f"{out}[{target}] = {finish(total)}"]
            block = body
            for header in reversed(loops):
                block = [header] + indent(block, 1)
            nest.after += block
        else:
            # rows are independent across chunks: accumulate in the output itself, each
            # chunk in its own rows (axis 0 is kept: the partials above serve the others)
            if self.chunked:
                nest.start += self.names.fill(out, node.dims, initial(node), rows="lo, hi")
            else:
                nest.before += self.names.fill(out, node.dims, initial(node))
            nest.emit(depth, f"{out}[{idx}] = {combine.format(f'{out}[{idx}]', value)}")

    def column_blocks(self, part: str, slot: str, cell: str, width: list, loops: list, raw: str,
                      combine: str) -> None:
        """A float32 sum over axis 0 adds ``COLUMN_BLOCK`` rows into a float32 row, then that
        row into the float64 partials: a float64 update per element (two conversions, twice
        the loads and stores) cost W6's kernel a fifth of its time. The float32 row costs
        LLVM time, though (W6 compiles 1.3-2 s longer, W5 0.4-0.7 s), so only wide sums, the
        mark of a large layer, get it: W5's ten-column bias gradient would gain microseconds."""
        block = self.partials("colblk", np.float32, width, literal(0, np.float32))
        self.nest.emit(self.rank, f"{block}[{slot}] = {combine.format(f'{block}[{slot}]', raw)}")
        cells = f"c, {cell}"
        wide = combine.format(f"{part}[{cells}]", f"np.float64({block}[{cells}])")
        flush = [f"{part}[{cells}] = {wide}", f"{block}[{cells}] = np.float32(0.0)"]
        for header in reversed(loops):
            flush = [header] + indent(flush, 1)
        # after every COLUMN_BLOCK rows of the chunk, and after its last
        self.nest.emit(1, f"if (i0 - lo) % {COLUMN_BLOCK} == {COLUMN_BLOCK - 1} or i0 + 1 == hi:",
                       post=True)
        for line in indent(flush, 1):
            self.nest.emit(1, line, post=True)
