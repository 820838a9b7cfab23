"""Render: kernels -> one readable Python module of Numba loops.

``render`` writes one ``@njit`` function per kernel and a ``run`` entry point that calls them in
order (one dispatch per call, not one per op); ``cache.load`` imports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from ... import shapes as sh
from ...index import Affine, Gather, loop_index
from ...ops import REGISTRY, Kind
from ...schedule import Kernel, checks_of, input_indices, is_view, reduced_axes
from ...tensor import Tensor

PARALLEL_MIN = 1 << 18   # elements below which a loop runs on one thread (thread start-up)
BLOCK = 1024             # a float32 sum adds this many elements in float32, then in float64
FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz'}"  # never nnan/ninf: NaN and inf propagate
# error_model numpy: x / 0 gives inf or nan as in NumPy, not ZeroDivisionError
JIT_FLAGS = f"fastmath={FASTMATH}, error_model='numpy', cache=True"
# A row loop of a fixed length in this range gets its length at run time (from ``sizes``):
# given a literal, LLVM unrolls it completely and then cannot vectorize a body as large as
# exp's (a softmax over 10 classes ran 2x slower)
OPAQUE_ROWS = range(8, 129)
FORMAT = 10              # bump when the generated code changes meaning


# -- names ---------------------------------------------------------------------------------
class Names:
    """Stable code names: arguments ``a<k>``, parameters ``p<k>``, constants ``c<k>``,
    buffers ``t<k>`` (k: position in the graph listing), call-time sizes ``n<k>``."""

    def __init__(self, nodes: list, placeholders: Sequence[Tensor]):
        self.index = {id(n): k for k, n in enumerate(nodes)}
        self.syms: dict = {}
        for p in placeholders:
            for d in p.dims:
                for s in sh.symbols_in(d):
                    self.syms.setdefault(s, f"n{len(self.syms)}")
        self.arg = {id(p): f"a{k}" for k, p in enumerate(placeholders)}
        self.rows: dict = {}   # fixed row length -> the name that holds it (see OPAQUE_ROWS)
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        """A new local name: kernels share ``run``'s body, so names are unique per module."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def array(self, node: Tensor) -> str:
        if node.leaf == "placeholder":
            return self.arg[id(node)]
        prefix = {"parameter": "p", "constant": "c"}.get(node.leaf, "t")
        return f"{prefix}{self.index[id(node)]}"

    def view(self, node: Tensor) -> str:
        """The reshaped view of a buffer, made at the top of each kernel that reads it."""
        return f"w{self.index[id(node)]}"

    def dim(self, d) -> str:
        if sh.is_static(d):
            return str(d)
        parts = []
        for mono, coeff in d.terms:
            factors = [self.syms[s] for s in mono] + ([str(coeff)] if coeff != 1 or not mono
                                                       else [])
            parts.append(" * ".join(factors))
        return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]

    def row(self, length: int) -> str:
        """The row length ``length`` as a variable ``s<length>``, read from ``sizes``."""
        return self.rows.setdefault(length, f"s{length}")

    def size(self, dims) -> str:
        return " * ".join(self.dim(d) for d in dims) if dims else "1"


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
        self.before: list = []   # before the chunk loop
        self.after: list = []    # after it
        self.current = 0

    def emit(self, depth: int, line: str, post: bool = False, block: bool = False) -> None:
        if depth < 0:   # loop-invariant values go before the loops (Numba's parallel
            self.before.append(line)   # lowering cannot index a 0-d array inside them)
            return
        if block:
            depth = self.rank - 1
        side = 1 if post else 0
        table = self.shared[side] if depth < self.split else self.own[self.current][side]
        table["block" if block else depth].append(line)

    def lines(self, parallel: bool) -> list:
        out = list(self.before)
        if self.rank == 0:
            for p in range(len(self.own)):
                out += self.own[p][0][0] + self.own[p][1][0]
            return out + self.after
        n0 = self.writer.names.dim(self.writer.space[0])
        if not parallel:   # one chunk: the whole range
            body = self.level(0)
            chunk = ["c = 0"] if re.search(r"\bc\b", "\n".join(out + body + self.after)) else []
            return out + chunk + [f"lo, hi = np.uint64(0), np.uint64({n0})"] + body + self.after
        # unsigned bounds: LLVM then knows the indices are not negative, drops Numba's
        # wraparound select and loads consecutive vectors
        out += ["for c in numba.prange(nc):",
                f"    lo = np.uint64(c * {n0} // nc)",
                f"    hi = np.uint64((c + 1) * {n0} // nc)"]
        out += indent(self.level(0), 1)
        return out + self.after

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
        if d > 0 and d == self.rank - 1 and sh.is_static(extent) and extent in OPAQUE_ROWS:
            hi = self.writer.names.row(extent)
        if not head and not tail or d > 0 and sh.is_static(extent) and extent <= BLOCK:
            bounds = "lo, hi" if d == 0 else hi   # (a short row is one block)
            return head + [f"for i{d} in range({bounds}):"] + indent(body, 1) + tail
        step = f"np.uint64({BLOCK})" if d == 0 else str(BLOCK)   # unsigned with unsigned
        inner = [f"for i{d} in range(b{d}, min(b{d} + {step}, {hi})):"] + indent(body, 1)
        return [f"for b{d} in range({lo}, {hi}, {BLOCK}):"] + indent(head + inner + tail, 1)


def indent(lines: list, levels: int) -> list:
    return ["    " * levels + line for line in lines]


class KernelWriter:
    """Writes one loop kernel: values are computed inline at the shallowest loop depth their
    indices allow and shared by (node, index) within the pass that can see them."""

    def __init__(self, kernel: Kernel, names: Names, roots: set, local: set):
        self.kernel, self.names, self.roots, self.local = kernel, names, roots, local
        self.space, self.rank = kernel.space, len(kernel.space)
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

    def lines(self, parallel: bool) -> list:
        out = []
        for nest in self.nests:
            out += nest.lines(parallel)
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
        return template.format(*args, t=ctor(node.dtype)), depth, not opdef.reads_data

    def index_code(self, index: tuple) -> tuple:
        parts, depth = [], 0
        for e in index:
            if isinstance(e, Gather):
                var, d = self.value(e.indices, e.index)
                size = self.names.dim(e.size)
                parts.append(f"({var} + {size} if {var} < 0 else {var})")
                depth = max(depth, d)
            else:
                parts.append(e.show(self.names.dim))
                depth = max(depth, e.depth)
        return (", ".join(parts) if parts else "()"), depth

    # reductions ----------------------------------------------------------------------------
    def reduction(self, node: Tensor) -> None:
        """Accumulate in a register when the reduced axes are the innermost ones (per chunk
        for a full reduction, combined after), else in per-chunk partial arrays or in place."""
        axes, keepdims = reduced_axes(node), dict(node.attrs)["keepdims"]
        rank, nest = self.rank, self.nest
        kept = [a for a in range(rank) if a not in axes]
        out_index = [("0" if a in axes else f"i{a}") for a in range(rank)] if keepdims \
            else [f"i{a}" for a in kept]
        out = self.names.array(node)
        stored = id(node) not in self.local
        accumulator = REGISTRY[node.op].accumulator
        combine = accumulator.combine
        acc_dtype = accumulator_dtype(node)
        value, depth = self.value(node.inputs[0], loop_index(rank))
        raw = value
        if acc_dtype != node.inputs[0].dtype:
            value = f"{ctor(acc_dtype)}({value})"
        depth = max(depth, rank)

        def finish(code: str) -> str:
            return f"{ctor(node.dtype)}({code})" if acc_dtype != node.dtype else code

        if axes and tuple(axes) == tuple(range(kept[-1] + 1 if kept else 0, rank)):
            first = len(kept)
            acc = self.fresh("acc")
            nest.emit(first, f"{acc} = {initial(node)}")
            if accumulator.blocked and node.inputs[0].dtype == np.float32 \
                    and acc_dtype != np.float32:
                block = self.fresh("blk")
                nest.emit(depth, f"{block} = {literal(0, np.float32)}", block=True)
                nest.emit(depth, f"{block} = {combine.format(block, raw)}")
                nest.emit(depth, f"{acc} = {combine.format(acc, f'{ctor(acc_dtype)}({block})')}",
                          post=True, block=True)
            else:
                nest.emit(depth, f"{acc} = {combine.format(acc, value)}")
            if first == 0 and rank > 0:
                part, total = self.fresh("part"), self.fresh("total")
                nest.before.append(f"{part} = np.empty(nc, {ctor(acc_dtype)})")
                nest.emit(0, f"{part}[c] = {acc}", post=True)
                nest.after += [f"{total} = {initial(node)}", "for c in range(nc):",
                               f"    {total} = {combine.format(total, f'{part}[c]')}"]
                result = self.fresh("r")
                nest.after.append(f"{result} = {finish(total)}")
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
        if 0 in axes:
            # chunks run in parallel over axis 0: each adds into its own partial row
            part = self.fresh("part")
            shape = [self.names.dim(self.space[a]) for a in kept]
            nest.before.append(f"{part} = np.full((nc, {', '.join(shape)}), {initial(node)}, "
                               f"{ctor(acc_dtype)})")
            slot = ", ".join(["c"] + [f"i{a}" for a in kept])
            nest.emit(depth, f"{part}[{slot}] = {combine.format(f'{part}[{slot}]', value)}")
            loops = [f"for q{j} in range({s}):" for j, s in enumerate(shape)]
            cell = ", ".join(f"q{j}" for j in range(len(kept)))
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
            # rows are independent across chunks: accumulate in the output itself
            nest.before.append(f"{out}[...] = {initial(node)}")
            nest.emit(depth, f"{out}[{idx}] = {combine.format(f'{out}[{idx}]', value)}")


# -- the module ----------------------------------------------------------------------------
HEADER = '''"""Generated by staticgrad {version} (format {format}) — do not edit.

graph {digest}: {summary}
"""
import math

import numba
import numpy as np

from staticgrad.backends.numba import mathlib
'''


def render(sched, names: Names, placeholders: Sequence[Tensor], params: list, consts: list,
           outputs: list, temps: list, profile: bool = False) -> tuple:
    """``(module text, the constants it takes)``: ``run`` does every kernel in order.

    Loops and BLAS calls are written into ``run`` itself, so Numba compiles one function, not
    one per kernel. Where a loop can be large enough for threads, ``run_threads`` does the same
    but calls it as a function of its own (``parallel=True``); it is compiled only when a call
    first needs it, since a parallel loop takes Numba seconds to compile. ``profile`` makes
    every kernel a function, so ``explain`` can time each. Constants and temporaries are views
    into one array per dtype (``const_float32``, ``mem_float32``; ``off`` holds the
    temporaries' offsets, planned per call shape): fewer arguments make a call cheaper and
    Numba's compile faster. Loops write one-element constants as literals, so those are taken
    only where BLAS or an index check reads them.
    """
    functions, serial, threads = [], [], []
    for kernel in sched.kernels:
        fns, one, many = render_kernel(kernel, sched, names, profile)
        checks = index_checks(kernel.nodes, names)
        functions += fns
        serial += checks + one
        threads += checks + many
    used = set(re.findall(r"\bc\d+\b", "\n".join(functions + serial + threads)))
    consts = [c for c in consts if c.value.size != 1 or names.array(c) in used]
    body = []
    for sym, var in names.syms.items():
        for p in placeholders:
            axis = next((a for a, d in enumerate(p.dims) if not sh.is_static(d)
                         and d.terms == ((((sym,), 1),))), None)
            if axis is not None:
                body.append(f"{var} = {names.array(p)}.shape[{axis}]")
                break
    body += [f"{var} = sizes[{k}]" for k, var in enumerate(names.rows.values())]
    const_arenas, views = arena_views(consts, names, static=True)
    body += views
    temp_arenas, views = arena_views(temps, names, static=False)
    body += views
    args = [names.array(n) for n in list(placeholders) + params + outputs] + const_arenas \
        + temp_arenas + (["off"] if temps else []) + (["sizes"] if names.rows else [])
    entries = [("run", serial)] + ([("run_threads", threads)] if threads != serial else [])
    for name, calls in entries:
        functions.append("\n".join([f"@numba.njit({JIT_FLAGS})",
                                    f"def {name}({', '.join(args + ['nc'])}):",
                                    *indent(body + calls or ["pass"], 1)]))
    return "\n\n\n".join(functions) + "\n", consts


def arena_dtypes(nodes: list) -> list:
    return sorted({n.dtype for n in nodes}, key=lambda d: d.name)


def arena_views(nodes: list, names: Names, static: bool) -> tuple:
    """``(arena argument names, lines making each node's view into its dtype's arena)``.
    Constants sit at fixed offsets (``layout``); temporaries at ``off[k]``, set per call."""
    prefix = "const" if static else "mem"
    arenas = [f"{prefix}_{d.name}" for d in arena_dtypes(nodes)]
    lines, offsets = [], layout(nodes) if static else None
    for k, n in enumerate(nodes):
        size = names.size(n.dims)
        start = str(offsets[k]) if static else f"off[{k}]"
        stop = str(offsets[k] + sh.size(n.dims)) if static else f"off[{k}] + {size}"
        dims = ", ".join(names.dim(d) for d in n.dims)
        lines.append(f"{names.array(n)} = {prefix}_{n.dtype.name}[{start}:{stop}]"
                     f".reshape(({dims}{',' if n.dims else ''}))")
    return arenas, lines


ALIGN = 16   # arena offsets are multiples of 16 elements, so every view is 64-byte aligned


def layout(nodes: list) -> list:
    """Offsets of constants packed one after another in their dtype's arena."""
    ends: dict = {}
    out = []
    for n in nodes:
        start = ends.get(n.dtype, 0)
        out.append(start)
        ends[n.dtype] = start + -(-max(int(n.value.size), 1) // ALIGN) * ALIGN
    return out


def index_checks(nodes: list, names: Names) -> list:
    """Indices are checked before the kernel that uses them (and after the one computing
    them), so a bad index raises, not corrupts."""
    lines = []
    for node in nodes:
        for idx, size in checks_of(node):
            where = f"{os.path.basename(node.source[0])}:{node.source[1]}"
            n, j = names.dim(size), names.fresh("j")
            lines += [f"for {j} in {names.array(idx)}.ravel():",
                      f"    if {j} < -{n} or {j} >= {n}:",
                      f"        raise IndexError('{node.op} at {where}: an index is out of "
                      f"bounds for an axis of size {sh.show_dim(size)}')"]
    return lines


def render_kernel(kernel: Kernel, sched, names: Names, profile: bool) -> tuple:
    """``(functions, lines of run, lines of run_threads)`` for one kernel: its code, or calls."""
    members = ", ".join(f"%{names.index[id(n)]} {n.op}" for n in kernel.nodes)
    comment = f"# {kernel.name}: {kernel.kind} over {sh.show(kernel.space)} — {members}"
    if kernel.kind != "loop":
        root = kernel.roots[0]
        body = REGISTRY[root.op].emit(root, names)
        if profile:
            text, call = function(kernel.name, comment, body, parallel=False)
            return [text], call, call
        return [], [comment, *body], [comment, *body]
    writer = KernelWriter(kernel, names, sched.roots, sched.locals)
    size = sh.size(kernel.space)
    serial = view_lines(kernel, names) + [re.sub(r"\bnc\b", "1", line)
                                          for line in writer.lines(False)]
    functions = []
    if profile:
        text, call = function(f"{kernel.name}_serial", comment, serial, parallel=False)
        functions, serial = [text], call
    else:
        serial = [comment, *serial]
    if not kernel.space or sh.is_static(size) and size < PARALLEL_MIN:
        return functions, serial, serial
    # the thread count is an argument: calling numba.get_num_threads() in the function would
    # make it uncacheable (it reads a dynamic global)
    text, call = function(kernel.name, comment, view_lines(kernel, names) + writer.lines(True),
                          parallel=True)
    functions.append(text)
    if sh.is_static(size):
        return functions, serial, [comment, *call]
    return functions, serial, [comment, f"if {names.size(kernel.space)} >= {PARALLEL_MIN}:",
                               *indent(call, 1), "else:", *indent(serial, 1)]


def function(name: str, comment: str, body: list, parallel: bool) -> tuple:
    """``(function text, the line of run calling it)``: its arguments are the arrays and
    sizes its body uses."""
    text = "\n".join(body)
    used = sorted(set(re.findall(r"\b[apct]\d+\b", text)),
                  key=lambda s: (s[0], int(s[1:])))
    defined = set(re.findall(r"^\s*([apct]\d+) = ", text, re.M))
    arrays = [u for u in used if u not in defined]
    sizes = sorted(set(re.findall(r"\b[ns]\d+\b", text)), key=lambda s: (s[0], int(s[1:])))
    params = arrays + sizes + (["nc"] if parallel else [])
    flags = "parallel=True, " if parallel else ""
    lines = [comment, f"@numba.njit({flags}{JIT_FLAGS})", f"def {name}({', '.join(params)}):",
             *indent(body, 1)]
    return "\n".join(lines), [f"{name}({', '.join(params)})"]


def view_lines(kernel: Kernel, names: Names) -> list:
    """Reshaped views of contiguous buffers, made once at the top of a kernel."""
    lines = []
    for v in kernel.reads:
        if is_view(v):
            dims = ", ".join(names.dim(d) for d in v.dims)
            lines.append(f"{names.view(v)} = {names.array(v.inputs[0])}.reshape(({dims},))")
    return lines
