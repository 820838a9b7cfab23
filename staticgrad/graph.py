"""Inspect stage: a read-only view of any graph, as a typed listing, networkx or Graphviz DOT.

``sg.graph(outputs)`` shows what was built; a compiled function's ``.graph`` shows what the
rewrites made of it. Backward nodes name the forward node whose VJP built them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import networkx as nx
import numpy as np

from . import dtypes as dt
from . import shapes as sh
from .tensor import GradFn, Tensor, as_tensor, toposort


class Graph:
    """The nodes that ``outputs`` depend on, in topological order.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 3), np.float32, name="x")
    >>> g = sg.graph(sg.sum(sg.exp(x)))
    >>> [n.op for n in g.nodes]
    [None, 'exp', 'sum']
    """

    def __init__(self, outputs: Sequence[Tensor]):
        self.outputs: tuple = tuple(outputs)
        self.nodes: list = toposort(self.outputs)
        self.inputs: list = [n for n in self.nodes if n.leaf in ("placeholder", "parameter")]
        self._labels = labels(self.nodes)

    def label(self, node: Tensor) -> str:
        """How the listing refers to ``node``: its name, ``%k``, or a small constant's value."""
        return self._labels[id(node)]

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        head = ", ".join(f"{self.label(n)}: {typed(n)}" for n in self.inputs)
        outs = ", ".join(self.label(o) for o in self.outputs)
        lines = [f"graph({head}) -> ({outs})"]
        rows = [self.row(n) for n in self.nodes if n.op is not None or shown_as_node(n)]
        width = max((len(r[0]) for r in rows), default=0)
        twidth = max((len(r[1]) for r in rows), default=0)
        for code, ty, note in rows:
            lines.append(f"  {code:<{width}}  {ty:<{twidth}}  {note}".rstrip())
        return "\n".join(lines)

    __repr__ = __str__

    def row(self, n: Tensor) -> tuple:
        if n.op is None:
            code = f"{self.label(n)} = constant"
        else:
            args = ", ".join(self.label(i) for i in n.inputs)
            attrs = " ".join(f"{k}={show_attr(v)}" for k, v in n.attrs if k != "params")
            code = f"{self.label(n)} = {n.op} {args}" + (f"  {attrs}" if attrs else "")
        note = f"{os.path.basename(n.source[0])}:{n.source[1]}"
        if n.name and n.op is not None:
            note = f"{n.name}  {note}"
        if n.origin is not None:
            forward = self.label(n.origin) if id(n.origin) in self._labels else \
                f"{n.origin.op} at {os.path.basename(n.origin.source[0])}:{n.origin.source[1]}"
            note += f"  [{GradFn(n.origin).name} of {forward}]"
        return code, typed(n), note

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``: nodes are positions in ``.nodes`` with attributes
        ``op, shape, dtype, name, is_leaf`` (and ``label, kind, source, backward_of, tensor``);
        an edge runs from each input to its user, with the argument ``positions``."""
        g = nx.DiGraph()
        index = {id(n): k for k, n in enumerate(self.nodes)}
        for k, n in enumerate(self.nodes):
            g.add_node(k, op=n.op, shape=n.shape, dtype=n.dtype, name=n.name,
                       is_leaf=n.is_leaf, label=self.label(n), kind=n.leaf or "op",
                       source=f"{n.source[0]}:{n.source[1]}",
                       backward_of=index.get(id(n.origin)) if n.origin is not None else None,
                       tensor=n)
            for pos, i in enumerate(n.inputs):
                if g.has_edge(index[id(i)], k):
                    g.edges[index[id(i)], k]["positions"].append(pos)
                else:
                    g.add_edge(index[id(i)], k, positions=[pos])
        return g

    def to_dot(self, kernels: Sequence | None = None) -> str:
        """Graphviz DOT text: leaves as boxes, backward nodes shaded, outputs outlined.

        With ``kernels`` (a compiled function's ``.kernels``) each kernel is a cluster of the
        nodes it computes; a node inlined into several kernels is drawn once in each (dashed
        where it is a recomputed copy), so the picture shows what each loop really does.
        """
        index = {id(n): k for k, n in enumerate(self.nodes)}
        homes = kernel_homes(kernels or [])
        lines = ["digraph staticgrad {", "  rankdir=TB;", '  node [fontname="monospace"];']
        for k, n in enumerate(self.nodes):
            if id(n) not in homes:
                lines.append(f"  {self.dot_node(n, f'n{k}')}")
                lines += [f"  n{index[id(i)]} -> n{k};" for i in n.inputs]
        for c, kernel in enumerate(kernels or []):
            members = {id(n) for n in kernel.nodes}

            def ident(n, c=c, members=members) -> str:
                copy = id(n) in members and homes.get(id(n)) != c
                return f"k{c}_n{index[id(n)]}" if copy else f"n{index[id(n)]}"

            title = f"{kernel.name}: {kernel.kind} over {sh.show(kernel.space)}"
            lines += [f"  subgraph cluster_{c} {{", f'    label="{escape(title)}";',
                      '    style="rounded,dashed"; color="#7070a0";']
            for n in kernel.nodes:
                lines.append(f"    {self.dot_node(n, ident(n), homes[id(n)] != c)}")
            lines.append("  }")
            for n in kernel.nodes:
                lines += [f"  {ident(i)} -> {ident(n)};" for i in n.inputs]
        lines.append("}")
        return "\n".join(lines)

    def dot_node(self, n: Tensor, ident: str, copy: bool = False) -> str:
        """One DOT node statement for ``n`` (``copy``: a recomputed copy inside a cluster)."""
        title = n.op or f"{n.leaf} {self.label(n)}"
        text = f"{title}\\n{typed(n)}"
        where = f"{os.path.basename(n.source[0])}:{n.source[1]}"
        attrs = [f'label="{escape(text)}"', f'tooltip="{escape(where)}"',
                 "shape=box" if n.is_leaf else "shape=ellipse"]
        styles = (["filled"] if n.origin is not None else []) + (["dashed"] if copy else [])
        if styles:
            attrs.append(f'style="{",".join(styles)}"')
        if n.origin is not None:
            attrs.append('fillcolor="#e8e8f8"')  # backward nodes: shaded
        if any(o is n for o in self.outputs):
            attrs.append("penwidth=2")
        return f"{ident} [{' '.join(attrs)}];"

    def render(self, path: str) -> str:
        """Draw the graph to ``path`` (``.svg`` or ``.png``) with Graphviz's ``dot``; returns
        ``path``. Raises ``RuntimeError`` saying how to get Graphviz when ``dot`` is missing."""
        return render(self.to_dot(), path)

    def show_kernels(self, kernels: Sequence) -> str:
        """One line per kernel: name, kind, loop shape, the nodes it computes (as labelled
        in this listing), the stored values it reads and the roots it writes."""
        lines = []
        for k in kernels:
            passes = f", {len(k.passes)} passes" if len(k.passes) > 1 else ""
            nodes = ", ".join(f"{self.label(n)} {n.op}" for n in k.nodes)
            reads = ", ".join(self.label(r) for r in k.reads) or "-"
            writes = ", ".join(self.label(w) for w in k.writes)
            lines.append(f"{k.name} {k.kind} over {sh.show(k.space)}{passes}: {nodes}"
                         f"  (reads {reads}; writes {writes})")
        return "\n".join(lines)


def graph(outputs) -> Graph:
    """A ``Graph`` of everything ``outputs`` (a tensor or a list) depend on.

    >>> import staticgrad as sg
    >>> x = sg.placeholder((), name="x")
    >>> print(sg.graph(x * 2.0))  # doctest: +ELLIPSIS
    graph(x: f64[]) -> (%2)
      %2 = mul x, 2.0  f64[]  ...
    """
    outs = [outputs] if not isinstance(outputs, (list, tuple)) else list(outputs)
    return Graph([as_tensor(o) for o in outs])


def typed(n: Tensor) -> str:
    return f"{dt.short(n.dtype)}{sh.show(n.dims)}"


def shown_as_node(n: Tensor) -> bool:
    return n.leaf == "constant" and n.value.size > 1


def labels(nodes: list) -> dict:
    out, used = {}, set()
    for k, n in enumerate(nodes):
        if n.leaf == "constant" and n.value.size == 1:
            value = n.value.reshape(()).item()
            out[id(n)] = repr(value)
        elif n.leaf in ("placeholder", "parameter") and n.name and n.name not in used:
            out[id(n)] = n.name
            used.add(n.name)
        else:
            out[id(n)] = f"%{k}"
    return out


def show_attr(v) -> str:
    if isinstance(v, Tensor):   # a custom function's body: named by its last op
        return v.op or v.leaf
    if isinstance(v, np.dtype):
        return dt.short(v)
    if isinstance(v, tuple) and v and all(isinstance(s, tuple) for s in v):
        return "[" + ",".join(":".join("" if p is None else str(p) for p in s) for s in v) + "]"
    return repr(v)


def escape(text: str) -> str:
    return text.replace('"', '\\"')


def kernel_homes(kernels: Sequence) -> dict:
    """id(node) -> the kernel whose cluster draws it: where it is stored, else the first kernel
    that computes it."""
    homes: dict = {}
    for c, kernel in enumerate(kernels):
        for n in kernel.roots:
            homes.setdefault(id(n), c)
    for c, kernel in enumerate(kernels):
        for n in kernel.nodes:
            homes.setdefault(id(n), c)
    return homes


FORMATS = ("svg", "png")
NO_DOT = ("render: Graphviz's `dot` program is not on PATH, so {path} was not drawn. Install "
          "Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
          "conda: conda install graphviz), or save .to_dot() to a .dot file and open it in "
          "any Graphviz viewer.")


def render(dot: str, path: str) -> str:
    """Run Graphviz's ``dot`` on the DOT text ``dot``, writing ``path`` in the format its
    extension names (``.svg`` or ``.png``)."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"render: cannot tell the format of {path!r}; use a .svg or .png name")
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(NO_DOT.format(path=path))
    done = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot.encode(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"render: dot exited with status {done.returncode} drawing {path}: "
                           f"{done.stderr.decode(errors='replace').strip()}")
    return path
