"""The graph as data: the nodes that outputs depend on, in order, with listing labels.

``sg.graph(outputs)`` shows what was built; a compiled function's ``.graph`` shows what the
rewrites made of it. Backward nodes name the forward node whose VJP built them.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence

from .inspect import dot, listing
from .inspect.listing import typed
from .tensor import Tensor, as_tensor, toposort

__all__ = ["Graph", "graph", "typed"]


def gc_paused(work):
    """``work`` with Python's cyclic garbage collector off, as it was after: a pass over a
    large graph makes many objects that live on, and the collector would walk all of them
    again and again (48k nodes, ``sg.grad`` + ``sg.function``: 12-15 s with it, 10-11 s
    without). Nothing is lost: garbage left meanwhile is collected later.

    >>> import gc
    >>> gc_paused(gc.isenabled)(), gc.isenabled()
    (False, True)
    """
    @functools.wraps(work)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return work(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return paused


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
        return listing.listing(self)

    __repr__ = __str__

    def row(self, n: Tensor) -> tuple:
        """``(code, type, note)``: one line of the listing, in columns."""
        return listing.row(self, n)

    def to_networkx(self):
        """A ``networkx.DiGraph``: nodes are positions in ``.nodes`` with attributes
        ``op, shape, dtype, name, is_leaf`` (and ``label, kind, source, backward_of, tensor``);
        an edge runs from each input to its user, with the argument ``positions``."""
        import networkx as nx  # 0.17 s to import: only for those who ask for it

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
        return dot.to_dot(self, kernels)

    def render(self, path: str) -> str:
        """Draw the graph to ``path`` (``.svg`` or ``.png``) with Graphviz's ``dot``; returns
        ``path``. Raises ``RuntimeError`` saying how to get Graphviz when ``dot`` is missing."""
        return dot.render(self.to_dot(), path)

    def show_kernels(self, kernels: Sequence) -> str:
        """One line per kernel: name, kind, loop shape, the nodes it computes (as labelled
        in this listing), the stored values it reads and the roots it writes."""
        return listing.show_kernels(self, kernels)


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
