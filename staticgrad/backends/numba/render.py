"""Render: each scheduled kernel -> one Numba function of its own, named by what it computes.

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

from ... import shapes as sh
from ...ops import REGISTRY
from ...schedule import Kernel, checks_of
from ...tensor import Tensor
from .loops import KernelWriter, indent

PARALLEL_MIN = 1 << 18   # elements below which a loop runs on one thread (thread start-up)
FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz'}"  # never nnan/ninf: NaN and inf propagate
# error_model numpy: x / 0 gives inf or nan as in NumPy, not ZeroDivisionError
JIT_FLAGS = f"fastmath={FASTMATH}, error_model='numpy', cache=True"
FORMAT = 11              # bump when the generated code changes meaning

HEADER = '''"""staticgrad kernel {digest} (format {format}) — generated, do not edit."""
import math

import numba
import numpy as np

from staticgrad.backends.numba import mathlib
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

    def array(self, node: Tensor) -> str:
        if id(node) not in self.arrays:
            self.arrays[id(node)] = (f"x{len(self.arrays)}", node)
        return self.arrays[id(node)][0]

    def view(self, node: Tensor) -> str:
        """A reshaped view of a stored buffer, made at the top of the kernel."""
        if id(node) not in self.views:
            self.views[id(node)] = (f"w{len(self.views)}", node)
        return self.views[id(node)][0]

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

    def row(self, length: int) -> str:
        """A fixed row length passed as an argument (see ``loops.OPAQUE_ROWS``)."""
        return self.symbol(("row", length))

    def size(self, dims) -> str:
        return " * ".join(self.dim(d) for d in dims) if dims else "1"


@dataclass
class KernelCode:
    """One kernel's function: its text, what its arguments are, and whether it can use
    threads. ``arrays`` are the nodes bound to ``x0, x1, ...``; ``sizes`` the size symbols (or
    ``("row", n)``) bound to ``n0, n1, ...``; a ``chunked`` kernel also takes ``nc``."""
    kernel: Kernel
    text: str
    arrays: list
    sizes: list
    chunked: bool
    digest: str = field(init=False)

    def __post_init__(self):
        self.digest = hashlib.sha256(f"{FORMAT}|{self.text}".encode()).hexdigest()[:16]

    def module(self, parallel: bool) -> str:
        """The module holding this kernel as ``kernel``, compiled with or without threads."""
        flags = "parallel=True, " if parallel else ""
        return HEADER.format(digest=self.digest, format=FORMAT) + "\n\n" + \
            f"@numba.njit({flags}{JIT_FLAGS})\n{self.text}\n"


def threadable(kernel: Kernel) -> bool:
    """Only a loop that can reach ``PARALLEL_MIN`` elements gets a threaded build."""
    size = sh.size(kernel.space)
    return kernel.kind == "loop" and bool(kernel.space) and \
        not (sh.is_static(size) and size < PARALLEL_MIN)


def render_kernel(kernel: Kernel, roots: set, local: set) -> KernelCode:
    """The function for one kernel: a loop nest, or an opaque op's own code."""
    names = KernelNames()
    chunked = threadable(kernel)
    if kernel.kind == "loop":
        body = KernelWriter(kernel, names, roots, local, chunked).lines()
    else:
        root = kernel.roots[0]
        body = REGISTRY[root.op].emit(root, names)
    views = []
    for name, node in list(names.views.values()):
        dims = ", ".join(names.dim(d) for d in node.dims)
        views.append(f"{name} = {names.array(node.inputs[0])}.reshape(({dims},))")
    params = [f"x{k}" for k in range(len(names.arrays))] + \
        [f"n{k}" for k in range(len(names.sizes))] + (["nc"] if chunked else [])
    text = "\n".join([f"def kernel({', '.join(params)}):", *indent(views + body or ["pass"], 1)])
    return KernelCode(kernel, text, [node for _, node in names.arrays.values()],
                      list(names.sizes), chunked)


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


def listing(codes: list, labels, placeholders: list, targets: list, header: str) -> str:
    """The program as one readable Python module: every distinct kernel once, then ``run``,
    which calls them in order with the graph's values (as the runtime does, from a table)."""
    seen, functions = set(), []
    for code in codes:
        if code.digest not in seen:
            seen.add(code.digest)
            functions.append(code.text.replace("def kernel(", f"def k_{code.digest}(", 1))

    def arg(node) -> str:
        try:
            return label_name(labels(node))
        except KeyError:   # a placeholder the outputs do not depend on
            return node.name or "unused"

    def size_arg(key) -> str:
        if isinstance(key, tuple):          # a fixed row length, passed as an argument
            return str(key[1])
        for p in placeholders:
            for axis, d in enumerate(p.dims):
                if sh.single_symbol(d) is key:
                    return f"{arg(p)}.shape[{axis}]"
        return repr(key)

    lines = []
    for code in codes:
        k = code.kernel
        members = ", ".join(f"{labels(n)} {n.op}" for n in k.nodes)
        lines.append(f"# {k.name}: {k.kind} over {sh.show(k.space)} — {members}")
        for idx, size, _ in checks(k):
            bound = size if sh.is_static(size) else " + ".join(
                (f"{c} * " if c != 1 else "") + " * ".join(size_arg(s) for s in mono)
                for mono, c in size.terms)
            lines.append(f"check_bounds({arg(idx)}, {bound})")
        args = [arg(n) for n in code.arrays] + [size_arg(key) for key in code.sizes] + \
            (["nc"] if code.chunked else [])
        lines.append(f"k_{code.digest}({', '.join(args)})")
    params = [arg(p) for p in placeholders]
    run = [f"def run({', '.join(params)}):",
           '    """The kernels in order. The runtime makes every buffer (t<k> for %k) first and',
           '    gives a loop of PARALLEL_MIN or more elements nc = numba.get_num_threads()."""',
           "    nc = 1",
           *indent(lines or ["pass"], 1),
           f"    return {', '.join(arg(t) for t in targets)}"]
    return header + "\n\n" + "\n\n\n".join([f"@numba.njit({JIT_FLAGS})\n{f}" for f in functions]
                                          + ["\n".join(run)]) + "\n"


def label_name(label: str) -> str:
    """A listing label as a Python name: ``%12`` -> ``t12``; names and literals stay."""
    return f"t{label[1:]}" if label.startswith("%") else label
