"""Render: each scheduled kernel -> one Numba function of its own, named by what it computes,
or a call of a function of ``blas.py`` for an op whose ``call`` rule says so (a 2-D float
matrix product: one compiled function for every graph's products, not a kernel each).

A kernel's code uses kernel-local names: arrays ``x0, x1, ...`` in the order it first reads or
writes them, call-time sizes ``n0, n1, ...``, values ``v0, v1, ...``. So the same computation in
two places (the T steps of an unrolled RNN, two functions of one model) is the same text, has
one digest, and is compiled once: ``cache.py`` keeps one module per digest. ``KernelCode``
records which node each array is and which size each ``n`` is; the runtime calls the kernel
with those, and ``listing`` shows the whole program as readable Python.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from ... import shapes as sh
from ...ops import REGISTRY
from ...rewrite import simplify
from ...schedule import Kernel, checks_of, schedule
from ...tensor import Tensor, toposort
from .loops import KernelWriter, indent, literal

PARALLEL_MIN = 1 << 18   # elements below which a loop runs on one thread (thread start-up)
FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz'}"  # never nnan/ninf: NaN and inf propagate
# error_model numpy: x / 0 gives inf or nan as in NumPy, not ZeroDivisionError. nogil: the
# threads of pool.py run one build at once (and so can calls from the user's threads). That
# serial build is all a kernel compiles: a parfor build took Numba 3.1 s for W6's kernel
# against 1.2 s, 1.5 s for W2's against 0.5 s
JIT_FLAGS = f"fastmath={FASTMATH}, error_model='numpy', nogil=True, cache=True"
# A loop body's kernels are inlined into the loop's function by Numba (at its IR, before
# typing), not compiled as functions of their own and linked: W7's reverse scan, whose body has
# seven, compiled in 2.4 s instead of 3.7 s
HELPER_FLAGS = f"inline='always', {JIT_FLAGS}"
CHUNKS = ["nc", "c0", "c1", "stage"]   # a chunked kernel's last arguments (loops.py)


def all_chunks(nc) -> list:
    """The values of ``CHUNKS`` that run every one of ``nc`` chunks, in order, on the
    calling thread (``pool.spread`` gives each thread its own instead).

    >>> all_chunks(2)
    [2, 0, 2, -1]
    """
    return [nc, 0, nc, -1]
FORMAT = 15              # bump when the generated code changes meaning

HEADER = '''"""staticgrad kernel {digest} (format {format}) — generated, do not edit."""
import math

import numba
import numpy as np

from staticgrad.backends.numba import blas, mathlib
'''


class KernelNames:
    """The names inside one kernel function, handed out on first use; ``emit`` rules of opaque
    ops get this object as ``code`` (``code.array(node)``, ``code.dim(size)``,
    ``code.fresh("q")``)."""

    def __init__(self):
        self.arrays: dict = {}    # id(node) -> (name, node)
        self.views: dict = {}     # id(view node) -> (name, node)
        self.sizes: dict = {}     # size symbol, or ("row", length) -> name
        self.counts: dict = {}
        self.helpers: dict = {}   # name -> text of a module-level function this kernel calls
        self.scratch: list = []   # (name, dtype, dims): per-chunk arrays (nc, *dims) passed in

    def array(self, node: Tensor) -> str:
        if id(node) not in self.arrays:
            self.arrays[id(node)] = (f"x{len(self.arrays)}", node)
        return self.arrays[id(node)][0]

    def view(self, node: Tensor) -> str:
        """A reshaped view of a stored buffer, made at the top of the kernel."""
        if id(node) not in self.views:
            self.views[id(node)] = (f"w{len(self.views)}", node)
        return self.views[id(node)][0]

    def partials(self, prefix: str, dtype, dims: list) -> str:
        """A kernel argument for an array of shape ``(nc, *dims)`` the caller provides."""
        name = self.fresh(prefix)
        self.scratch.append((name, np.dtype(dtype), tuple(dims)))
        return name

    def fresh(self, prefix: str) -> str:
        k = self.counts.get(prefix, 0)
        self.counts[prefix] = k + 1
        return f"{prefix}{k}"

    def symbol(self, key) -> str:
        if key not in self.sizes:
            self.sizes[key] = f"n{len(self.sizes)}"
        return self.sizes[key]

    def dim(self, d) -> str:
        if sh.is_static(d):
            return str(d)
        parts = []
        for mono, coeff in d.terms:
            factors = [self.symbol(s) for s in mono] + ([str(coeff)] if coeff != 1 or not mono
                                                         else [])
            parts.append(" * ".join(factors))
        return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]

    def offset(self, d) -> str:
        """A fixed index offset passed as an argument: the kernels reading step t of an
        unrolled loop differ only in it, so they are one text, compiled once."""
        return self.symbol(("offset", d)) if sh.is_static(d) else self.dim(d)

    def row(self, length: int) -> str:
        """A fixed row length passed as an argument (see ``loops.OPAQUE_ROWS``)."""
        return self.symbol(("row", length))

    def size(self, dims) -> str:
        return " * ".join(self.dim(d) for d in dims) if dims else "1"

    def each(self, dims, body) -> list:
        """Loops over every index of ``dims`` (loop variables ``i0, i1, ...``) around
        ``body(["i0", "i1", ...]) -> lines``. Element loops compile in a fraction of the time
        Numba takes for an array assignment such as ``out[:, 2:5] = x`` (4 s)."""
        names = [f"i{k}" for k in range(len(dims))]
        lines = body(names)
        for k in reversed(range(len(dims))):
            lines = [f"for {names[k]} in range({self.dim(dims[k])}):", *indent(lines, 1)]
        return lines

    def fill(self, array: str, dims, value: str, lead: str = "", rows: str = "") -> list:
        """Loops setting ``array[lead, ...]`` to ``value`` over ``dims`` (over ``range(rows)``
        of the first axis, given ``rows``): ``out.fill(0)`` costs Numba 0.15 s more to
        compile, the first time in a process."""
        cells = [self.fresh("f") for _ in dims]
        at = ", ".join(([lead] if lead else []) + cells) or "()"
        lines = [f"{array}[{at}] = {value}"]
        for axis, (cell, d) in reversed(list(enumerate(zip(cells, dims)))):
            bounds = rows if rows and axis == 0 else self.dim(d)
            lines = [f"for {cell} in range({bounds}):", *indent(lines, 1)]
        return lines

    def copy(self, dst: str, src: str, count: int) -> list:
        """``dst[...] = src`` for two C-contiguous arrays of ``count`` elements, as one loop."""
        d, s, q = self.fresh("dst"), self.fresh("src"), self.fresh("q")
        return [f"{d} = {dst}.reshape({count})", f"{s} = {src}.reshape({count})",
                f"for {q} in range({count}):", f"    {d}[{q}] = {s}[{q}]"]

    def subgraph(self, outputs: list, feeds: dict, targets: list) -> tuple:
        """Code running a graph inside this kernel (a loop body): ``feeds`` maps its
        placeholders (by id) to expressions, ``targets`` has one expression per output to
        write. Its own kernels become helper functions of this kernel's module, compiled with
        it. Returns ``(lines allocating its buffers, lines of one run)``. Shapes are static."""
        simplified, _ = simplify(list(outputs))
        sched = schedule(simplified)
        codes = [render_kernel(k, sched.roots, sched.locals) for k in sched.kernels]
        before, step, where = [], [], dict(feeds)

        def staged(node, expr: str) -> str:
            # a 0-d value is a scalar when indexed out of an array: kernels take 0-d arrays
            if node.ndim:
                return expr
            buf = self.fresh("s")
            before.append(f"{buf} = np.empty((), np.{node.dtype.name})")
            step.append(f"{buf}[()] = {expr}")
            return buf

        for node in toposort(simplified):
            if node.leaf == "placeholder":
                where[id(node)] = staged(node, feeds[id(node)])
        copies = []
        for out, target in zip(simplified, targets):
            if id(out) in sched.roots and id(out) not in where and out.ndim:
                where[id(out)] = target
            else:
                copies.append((out, target))
        for code in codes:
            for node in code.arrays:
                if id(node) in where:
                    continue
                if node.leaf == "constant":
                    where[id(node)] = self.array(node)
                else:
                    buf = self.fresh("b")
                    dims = ", ".join(str(d) for d in node.dims)
                    before.append(f"{buf} = np.empty(({dims}{',' if node.dims else ''}), "
                                  f"np.{node.dtype.name})")
                    where[id(node)] = buf
        for code in codes:
            name = f"b_{code.digest}"
            self.helpers[name] = code.text.replace("def kernel(", f"def {name}(", 1)
            self.helpers.update(code.helpers)
            for idx, size, message in checks(code.kernel):
                j = self.fresh("j")
                step += [f"for {j} in {where[id(idx)]}.ravel():",
                         f"    if {j} < -{size} or {j} >= {size}:",
                         f"        raise IndexError({message!r})"]
            # np.int64(16), not 16: Numba types a bare 16 as Literal[int](16) and compiles the
            # body once per distinct size, with the size folded in (and its loops unrolled)
            scratch = []
            for _, dtype, dims in code.scratch:   # one chunk (nc = 1): static sizes
                scratch.append(self.fresh("b"))
                before.append(f"{scratch[-1]} = np.empty({tuple_text(['1', *map(str, dims)])}, "
                              f"np.{dtype.name})")
            args = [where[id(n)] for n in code.arrays] + scratch + \
                [f"np.int64({key[1]})" for key in code.sizes] + \
                ([str(v) for v in all_chunks(1)] if code.chunked else [])
            step.append(f"{name}({', '.join(args)})")
        for out, target in copies:
            if out.leaf == "constant" and out.value.size > 1 and id(out) not in where:
                where[id(out)] = self.array(out)
            value = literal_or(out, where)
            step += [f"{target} = {value}"] if not out.ndim else \
                self.copy(target, value, int(sh.size(out.dims)))
        return before, step


@dataclass(frozen=True)
class LibraryCall:
    """A kernel run as ``blas.<function>(*arrays, *values of flags)``: a function of the
    package, compiled once per dtype for every graph, not a generated one (an op's ``call``
    rule). ``arrays`` are stored nodes (one may appear twice: ``x @ x.T``); ``flags`` are
    ``(parameter name, int)`` pairs."""
    function: str
    arrays: tuple
    flags: tuple

    @property
    def ints(self) -> tuple:
        return tuple(value for _, value in self.flags)


@dataclass
class KernelCode:
    """One kernel's function: its text, what its arguments are, and whether it can use
    threads. ``arrays`` are the nodes bound to ``x0, x1, ...``; ``scratch`` the ``(name,
    dtype, dims)`` of the per-chunk arrays after them (shape ``(nc, *dims)``, contents left to
    the kernel); ``sizes`` the size symbols (or ``("row", n)``) bound to ``n0, n1, ...``; a
    ``chunked`` kernel also takes ``nc, c0, c1, stage`` and has ``stages``, whether each of
    its nests has a store stage (see ``loops.KernelWriter.staged``). With a ``call``, a
    program runs the kernel as that call of a ``blas`` function and never compiles ``text``
    (a loop's body still inlines the text: ``KernelNames.subgraph``)."""
    kernel: Kernel
    text: str
    arrays: list
    sizes: list
    chunked: bool
    helpers: dict = field(default_factory=dict)   # functions it calls (a loop's body)
    scratch: list = field(default_factory=list)
    stages: tuple = ()
    call: LibraryCall | None = None
    digest: str = field(init=False)

    def __post_init__(self):
        whole = "\n".join([self.text, *self.helpers.values()])
        self.digest = hashlib.sha256(f"{FORMAT}|{whole}".encode()).hexdigest()[:16]

    def module(self) -> str:
        """The module holding this kernel as ``kernel``."""
        helpers = "".join(f"@numba.njit({HELPER_FLAGS})\n{text}\n\n\n"
                          for text in self.helpers.values())
        return HEADER.format(digest=self.digest, format=FORMAT) + "\n\n" + helpers + \
            f"@numba.njit({JIT_FLAGS})\n{self.text}\n"


def threadable(kernel: Kernel) -> bool:
    """Only a loop that can reach ``PARALLEL_MIN`` elements runs in chunks (on threads)."""
    size = sh.size(kernel.space)
    return kernel.kind == "loop" and bool(kernel.space) and \
        not (sh.is_static(size) and size < PARALLEL_MIN)


def render_kernel(kernel: Kernel, roots: set, local: set) -> KernelCode:
    """The function for one kernel: a loop nest, or an opaque op's own code."""
    names = KernelNames()
    chunked, stages, call = False, (), None
    if kernel.kind == "loop":
        writer = KernelWriter(kernel, names, roots, local, threadable(kernel))
        body, chunked = writer.lines(), writer.chunked
        stages = writer.stages() if chunked else ()
    else:
        root = kernel.roots[0]
        body = REGISTRY[root.op].emit(root, names)
        call = library_call(root, names, roots, local)
    views = []
    for name, node in list(names.views.values()):
        dims = ", ".join(names.dim(d) for d in node.dims)
        views.append(f"{name} = {names.array(node.inputs[0])}.reshape(({dims},))")
    params = [f"x{k}" for k in range(len(names.arrays))] + \
        [name for name, _, _ in names.scratch] + \
        [f"n{k}" for k in range(len(names.sizes))] + (CHUNKS if chunked else [])
    text = "\n".join([f"def kernel({', '.join(params)}):", *indent(views + body or ["pass"], 1)])
    return KernelCode(kernel, text, [node for _, node in names.arrays.values()],
                      list(names.sizes), chunked, dict(names.helpers),
                      list(names.scratch), stages, call)


def library_call(root: Tensor, names: KernelNames, roots: set,
                 local: set) -> LibraryCall | None:
    """The op's ``call`` rule for an opaque kernel's node, when it has one that applies and
    passes only arrays the runtime has (the kernel's own, or other stored nodes: a reshape
    stored as a view of its input's memory) and the kernel needs no per-chunk partials."""
    rule = REGISTRY[root.op].call
    found = rule(root) if rule is not None else None
    if found is None:
        return None
    function, arrays, flags = found
    if names.scratch or not all(id(n) in names.arrays or (id(n) in roots and id(n) not in local)
                                for n in arrays):
        return None
    return LibraryCall(function, tuple(arrays), tuple(flags))


def distinct(codes: list) -> int:
    """How many generated kernels ``codes`` compile: one per text, library calls not
    counted (their functions are the package's, compiled once per dtype for every graph)."""
    return len({c.digest for c in codes if c.call is None})


def checks(kernel: Kernel) -> list:
    """``(index node, axis size, message)`` to check before ``kernel`` runs: a bad index
    raises an ``IndexError`` naming the op and the user's line instead of reading or writing
    outside an array."""
    out = []
    for node in kernel.nodes:
        for idx, size in checks_of(node):
            where = f"{os.path.basename(node.source[0])}:{node.source[1]}"
            out.append((idx, size, f"{node.op} at {where}: an index is out of bounds for an "
                                   f"axis of size {sh.show_dim(size)}"))
    return out


def listing(codes: list, labels, placeholders: list, targets: list, header: str,
            aliases: list = ()) -> str:
    """The program as one readable Python module: every distinct kernel once, then ``run``,
    which calls them (or a library function, for a kernel with a ``call``) in order with the
    graph's values (as the runtime does, from a table).
    ``aliases`` are ``(node, base, offset)``: values that are views of another's memory."""
    seen, functions = set(), []
    for code in codes:
        if code.call is None and code.digest not in seen:
            seen.add(code.digest)
            for name, text in code.helpers.items():
                if name not in seen:
                    seen.add(name)
                    functions.append(f"@numba.njit({HELPER_FLAGS})\n{text}")
            functions.append(f"@numba.njit({JIT_FLAGS})\n" +
                             code.text.replace("def kernel(", f"def k_{code.digest}(", 1))

    def arg(node) -> str:
        try:
            return label_name(labels(node))
        except KeyError:   # a placeholder the outputs do not depend on
            return node.name or "unused"

    def size_arg(key) -> str:
        if isinstance(key, tuple):          # a fixed row length or offset, as an argument
            return str(key[1])
        for p in placeholders:
            for axis, d in enumerate(p.dims):
                if sh.single_symbol(d) is key:
                    return f"{arg(p)}.shape[{axis}]"
        return repr(key)

    def views_of(bases: set) -> list:
        return [f"{arg(n)} = {arg(base)}.reshape(-1)[{start}:{start} + {count}]"
                f".reshape({tuple_text([show_size(d) for d in n.dims])})  # a view"
                for n, base, offset in aliases if id(base) in bases
                for start, count in [(show_size(offset), show_size(sh.size(n.dims)))]]

    def show_size(d) -> str:
        return str(d) if sh.is_static(d) else " + ".join(
            " * ".join(([str(c)] if c != 1 else []) + [size_arg(s) for s in mono]) or "1"
            for mono, c in d.terms)

    lines = views_of({id(p) for p in placeholders} |
                     {id(b) for _, b, _ in aliases if b.op is None})
    for code in codes:
        k = code.kernel
        members = ", ".join(f"{labels(n)} {n.op}" for n in k.nodes)
        lines.append(f"# {k.name}: {k.kind} over {sh.show(k.space)} — {members}")
        for idx, size, _ in checks(k):
            lines.append(f"check_bounds({arg(idx)}, {show_size(size)})")
        scratch = [f"{k.name}_{name}" for name, _, _ in code.scratch]
        for name, (_, dtype, dims) in zip(scratch, code.scratch):
            shape = tuple_text(["nc", *map(show_size, dims)])
            lines.append(f"{name} = np.empty({shape}, np.{dtype.name})  # per-chunk partials")
        if code.call is not None:
            call = code.call
            args = [arg(n) for n in call.arrays] + [f"{name}={v}" for name, v in call.flags]
            lines.append(f"blas.{call.function}({', '.join(args)})")
        else:
            args = [arg(n) for n in code.arrays] + scratch + \
                [size_arg(key) for key in code.sizes] + \
                ([str(v) for v in all_chunks("nc")] if code.chunked else [])
            lines.append(f"k_{code.digest}({', '.join(args)})")
        lines += views_of({id(n) for n in k.writes})
    params = [arg(p) for p in placeholders]
    run = [f"def run({', '.join(params)}):",
           '    """The kernels in order. The runtime makes every buffer (t<k> for %k, and the',
           '    partials, once per workspace) first. A loop of PARALLEL_MIN or more elements',
           '    runs in nc chunks, one per thread (pool.spread runs its stages: chunks c0..c1',
           '    on each thread, then the stores on one); here all of them run on one."""',
           "    nc = 1",
           *indent(lines or ["pass"], 1),
           f"    return {', '.join(arg(t) for t in targets)}"]
    return header + "\n\n" + "\n\n\n".join(functions + ["\n".join(run)]) + "\n"


def tuple_text(items: list) -> str:
    """``["2", "n0"]`` -> ``"(2, n0)"``, ``["3"]`` -> ``"(3,)"``."""
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def label_name(label: str) -> str:
    """A listing label as a Python name: ``%12`` -> ``t12``; names and literals stay."""
    return f"t{label[1:]}" if label.startswith("%") else label


def literal_or(node: Tensor, where: dict) -> str:
    """A one-element constant as a literal, anything else by its expression."""
    if node.leaf == "constant" and node.value.size == 1:
        return literal(node.value.reshape(()).item(), node.dtype)
    expr = where[id(node)]
    return f"{expr}[()]" if not node.ndim else expr
