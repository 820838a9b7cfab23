"""Inspect stage: a read-only view of any graph, as a typed listing, networkx or Graphviz DOT.

``sg.graph(outputs)`` shows what was built; a compiled function's ``.graph`` shows what the
rewrites made of it. Backward nodes name the forward node whose VJP built them.
"""

from __future__ import annotations

import os
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
            attrs = " ".join(f"{k}={show_attr(v)}" for k, v in n.attrs)
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

    def to_dot(self) -> str:
        """Graphviz DOT text: leaves as boxes, backward nodes shaded, outputs outlined."""
        outs = {id(o) for o in self.outputs}
        lines = ["digraph staticgrad {", "  rankdir=TB;", '  node [fontname="monospace"];']
        index = {id(n): k for k, n in enumerate(self.nodes)}
        for k, n in enumerate(self.nodes):
            title = n.op or f"{n.leaf} {self.label(n)}"
            text = f"{title}\\n{typed(n)}"
            style = ['shape=box'] if n.is_leaf else ['shape=ellipse']
            if n.origin is not None:
                style.append('style=filled fillcolor="#e8e8f8"')
            if id(n) in outs:
                style.append("penwidth=2")
            lines.append(f'  n{k} [label="{escape(text)}" {" ".join(style)}];')
        for k, n in enumerate(self.nodes):
            for i in n.inputs:
                lines.append(f"  n{index[id(i)]} -> n{k};")
        lines.append("}")
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
    if isinstance(v, np.dtype):
        return dt.short(v)
    if isinstance(v, tuple) and v and all(isinstance(s, tuple) for s in v):
        return "[" + ",".join(":".join("" if p is None else str(p) for p in s) for s in v) + "]"
    return repr(v)


def escape(text: str) -> str:
    return text.replace('"', '\\"')
