"""Codegen stage: kernels -> one readable Python module of Numba loops, cached on disk.

``render`` writes one ``@njit`` function per kernel and a ``run`` entry point that calls them in
order (one dispatch per call, not one per op). ``load`` writes the module under the cache
folder by a hash of its text and imports it normally, so Numba's own ``cache=True`` keeps the
machine code and a second process does not compile again. ``compile_function`` runs the
pipeline: simplify -> schedule -> render -> load.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib
import os
import pickletools
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

import numba
import numpy as np

from . import blas, rewrite
from . import shapes as sh
from .graph import Graph
from .ops import REGISTRY, Kind
from .schedule import Gathered, Kernel, input_indices, is_view, loop_index, reduced_axes, schedule
from .tensor import Tensor

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


def cache_dir() -> str:
    """Where generated modules live: ``$STATICGRAD_CACHE_DIR`` or ``~/.cache/staticgrad``."""
    return os.environ.get("STATICGRAD_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "staticgrad")


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


def depth_of(code: str) -> int:
    """How many loops a code string depends on: ``t3[i0, i2]`` -> 3."""
    found = [int(k) for k in re.findall(r"\bi(\d+)\b", code)]
    return max(found) + 1 if found else 0


def accumulator_dtype(node: Tensor) -> np.dtype:
    # float32 sums accumulate in float64: 10M-element sums keep float32 accuracy
    if node.op in ("sum", "prod") and node.dtype == np.float32:
        return np.dtype(np.float64)
    return node.dtype


def initial(node: Tensor) -> str:
    init = REGISTRY[node.op].init
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
                index = loop_index(self.rank)
                code, depth = self.value(r, index, top=True)
                idx = ", ".join(index) or "()"
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
        key = (id(node), tuple(e if isinstance(e, str) else id(e) for e in index))
        if key in self.values:
            return self.values[key]
        code, depth = self.compute(node, index, top)
        if not re.fullmatch(r"[\w.]+|np\.\w+\([^()]*\)", code):
            var = self.fresh("v")
            # a 0-d kernel has no loops: everything stays in program order
            self.nest.emit(depth if depth > 0 or self.rank == 0 else -1, f"{var} = {code}")
            code = var
        self.values[key] = (code, depth)
        return code, depth

    def compute(self, node: Tensor, index: tuple, top: bool) -> tuple:
        if node.op is None or is_view(node) or (id(node) in self.roots and not top):
            idx, depth = self.index_code(index)
            name = self.names.view(node) if is_view(node) else self.names.array(node)
            return f"{name}[{idx}]", depth
        if node.op == "numel":
            dims = node.inputs[0].dims
            count = self.names.size(tuple(dims[a] for a in dict(node.attrs)["axes"]))
            return f"{ctor(node.dtype)}({count})", 0
        opdef = REGISTRY[node.op]
        operands = input_indices(node, index, self.names.dim)
        if opdef.kind is not Kind.ELEMENTWISE:
            return self.value(node.inputs[0], operands[0])
        args, depth = [], 0
        for x, xi in zip(node.inputs, operands):
            code, d = self.value(x, xi)
            args.append(code)
            depth = max(depth, d)
        template = opdef.loop(node.dtype) if callable(opdef.loop) else opdef.loop
        return template.format(*args, t=ctor(node.dtype)), depth

    def index_code(self, index: tuple) -> tuple:
        parts, depth = [], 0
        for e in index:
            if isinstance(e, Gathered):
                var, d = self.value(e.indices, e.index)
                size = self.names.dim(e.size)
                parts.append(f"({var} + {size} if {var} < 0 else {var})")
                depth = max(depth, d)
            else:
                parts.append(e)
                depth = max(depth, depth_of(e))
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
        combine = REGISTRY[node.op].loop
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
            if node.op == "sum" and node.inputs[0].dtype == np.float32 and acc_dtype != np.float32:
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


# -- opaque kernels --------------------------------------------------------------------------
def operand(x: Tensor, names: Names) -> str:
    """A matmul operand: a buffer, or a buffer with its last two axes swapped (no copy)."""
    if x.op == "transpose":
        base = names.array(x.inputs[0])
        return f"{base}.T" if x.ndim == 2 else f"np.swapaxes({base}, -1, -2)"
    return names.array(x)


def matmul_lines(node: Tensor, names: Names) -> list:
    a, b = (operand(x, names) for x in node.inputs)
    out = names.array(node)
    q, k = names.fresh("q"), names.fresh("k")
    if node.dtype.kind != "f":
        return [f"{out}[...] = 0",
                f"for {q} in np.ndindex({out}.shape):",
                f"    for {k} in range({a}.shape[-1]):",
                f"        {out}[{q}] += {a}[{q}[:-1] + ({k},)] * {b}[{q}[:-2] + ({k}, {q}[-1])]"]
    if node.ndim == 2:
        return [f"np.dot({a}, {b}, {out})"]
    return [f"for {q} in np.ndindex({out}.shape[:-2]):",
            f"    np.dot({a}[{q}], {b}[{q}], {out}[{q}])"]


def slice_code(index: tuple, names: Names) -> str:
    def part(v):
        return "" if v is None else names.dim(v)
    return ", ".join(f"{part(s[0])}:{part(s[1])}:{s[2]}" for s in index) or "..."


def concatenate_lines(node: Tensor, names: Names) -> list:
    axis = dict(node.attrs)["axis"]
    out, lines, start = names.array(node), [], 0
    for x in node.inputs:
        stop = start + x.dims[axis]
        where = [":"] * node.ndim
        where[axis] = f"{names.dim(start)}:{names.dim(stop)}"
        lines.append(f"{out}[{', '.join(where)}] = {names.array(x)}")
        start = stop
    return lines


def unslice_lines(node: Tensor, names: Names) -> list:
    out = names.array(node)
    return [f"{out}[...] = 0",
            f"{out}[{slice_code(dict(node.attrs)['index'], names)}] = "
            f"{names.array(node.inputs[0])}"]


def untake_lines(node: Tensor, names: Names) -> list:
    g, idx = node.inputs
    axis, size = dict(node.attrs)["axis"], dict(node.attrs)["size"]
    out, gn, xn = names.array(node), names.array(g), names.array(idx)
    k = idx.ndim
    q, j = names.fresh("q"), names.fresh("j")
    lines = [f"{out}[...] = 0", f"for {q} in np.ndindex({gn}.shape):",
             f"    {j} = {xn}[{q}[{axis}:{axis + k}]]" if k else f"    {j} = {xn}[()]",
             f"    {j} = {j} + {names.dim(size)} if {j} < 0 else {j}",
             f"    {out}[{q}[:{axis}] + ({j},) + {q}[{axis + k}:]] += {gn}[{q}]"]
    return lines


OPAQUE_WRITERS = {"matmul": matmul_lines, "concatenate": concatenate_lines,
                  "unslice": unslice_lines, "untake": untake_lines}


# -- the module ----------------------------------------------------------------------------
HEADER = '''"""Generated by staticgrad {version} (format {format}) — do not edit.

graph {digest}: {summary}
"""
import math

import numba
import numpy as np

from staticgrad import mathlib
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
        if node.op not in ("take", "untake"):
            continue
        idx = node.inputs[1]
        size = node.inputs[0].dims[dict(node.attrs)["axis"]] if node.op == "take" \
            else dict(node.attrs)["size"]
        where = f"{os.path.basename(node.source[0])}:{node.source[1]}"
        n, j = names.dim(size), names.fresh("j")
        lines += [f"for {j} in {names.array(idx)}.ravel():",
                  f"    if {j} < -{n} or {j} >= {n}:",
                  f"        raise IndexError('{node.op} at {where}: an index is out of bounds "
                  f"for an axis of size {sh.show_dim(size)}')"]
    return lines


def render_kernel(kernel: Kernel, sched, names: Names, profile: bool) -> tuple:
    """``(functions, lines of run, lines of run_threads)`` for one kernel: its code, or calls."""
    members = ", ".join(f"%{names.index[id(n)]} {n.op}" for n in kernel.nodes)
    comment = f"# {kernel.name}: {kernel.kind} over {sh.show(kernel.space)} — {members}"
    if kernel.kind != "loop":
        body = OPAQUE_WRITERS[kernel.kind](kernel.roots[0], names)
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


# -- load ----------------------------------------------------------------------------------
def load(source: str):
    """Import the module for ``source`` from the cache folder, writing it first if needed.

    The file name is a hash of the text, so an entry is never stale: a different graph, or a
    different staticgrad/Numba/NumPy, gives a different name. A file whose text does not match
    (a torn or edited write) is replaced; writes go through a temporary file and an atomic
    rename, so processes compiling the same graph at once all succeed.
    """
    stamp = f"{FORMAT}|{numba.__version__}|{np.__version__}|{sys.version_info[:2]}"
    digest = hashlib.sha256((stamp + source).encode()).hexdigest()[:24]
    name = f"staticgrad_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".py")
    if not matches(path, source):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    drop_broken_numba_cache(folder, name)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def drop_broken_numba_cache(folder: str, name: str) -> None:
    """Numba loads its cache files without checking them; a torn or foreign file would crash
    the first call. Every file must unpickle, else all of this module's files go (and the
    functions compile again)."""
    files = glob.glob(os.path.join(folder, "__pycache__", f"{name}.*.nb[ic]"))
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
            # walk the pickle opcodes without running them (that would import this module)
            offset = 0
            for _ in range(2 if path.endswith(".nbi") else 1):   # .nbi: version, index
                stop = max(pos for _op, _arg, pos in pickletools.genops(data[offset:]))
                offset += stop + 1
            if offset != len(data):
                raise ValueError("trailing bytes")
        except Exception:
            for other in files:
                with contextlib.suppress(OSError):
                    os.remove(other)
            return


def matches(path: str, source: str) -> bool:
    try:
        with open(path) as f:
            return f.read() == source
    except OSError:
        return False


# -- the compiled program ------------------------------------------------------------------
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

    def __init__(self, placeholders: Sequence[Tensor], targets: Sequence[Tensor]):
        seconds: dict = {}
        with timed(seconds, "rewrite"):
            simplified, self.stats = rewrite.simplify(targets)
        self.stats["seconds"] = seconds
        self.targets = simplified
        self.graph = Graph(simplified)
        with timed(seconds, "schedule"):
            sched = schedule(simplified)
        self.kernels = sched.kernels
        nodes = self.graph.nodes
        names = Names(nodes, placeholders)
        self.params = [n for n in nodes if n.leaf == "parameter"]
        consts = [n for n in nodes if n.leaf == "constant"]
        stored = [n for n in nodes if id(n) in sched.roots and id(n) not in sched.locals]
        output_ids = {id(t) for t in simplified}
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
            flops = [2 * np.prod(plan.shapes[id(k.roots[0])]) * k.roots[0].inputs[0].dims[-1]
                     for k in self.kernels if k.kind == "matmul"]
            plan.blas = None if not flops else \
                blas.threads_for(max(sh.evaluate(f, plan.env) for f in flops),
                                 numba.get_num_threads())
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


@contextlib.contextmanager
def timed(seconds: dict, stage: str):
    """Record in ``seconds[stage]`` how long the ``with`` block took."""
    clock = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = time.perf_counter() - clock


def version() -> str:
    from . import __version__
    return __version__


def compile_function(placeholders: Sequence[Tensor], targets: Sequence[Tensor]) -> Program:
    """simplify -> schedule -> render -> load."""
    return Program(placeholders, targets)
