"""The NumPy reference backend (``backend="numpy"``): runs the graph node by node with each
op's NumPy rule. It is the oracle every compiled backend is tested against, so it stays simple.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .. import shapes as sh
from ..graph import Graph
from ..ops import REGISTRY
from ..tensor import Tensor


def evaluate(nodes: Sequence[Tensor], feeds: dict, env: dict) -> dict:
    """Values of ``nodes`` (topologically ordered) given ``feeds`` (values by ``id``: every
    placeholder, and any other node given a value) and the call-time sizes ``env``; parameters
    are read from their current ``.value``."""
    values: dict = {}
    with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in compiled code
        for node in nodes:
            if node.leaf == "placeholder" or id(node) in feeds:
                values[id(node)] = feeds[id(node)]
            elif node.leaf is not None:
                values[id(node)] = node.value
            else:
                args = [values[id(i)] for i in node.inputs]
                attrs = {k: sh.evaluate(v, env) for k, v in node.attrs}
                try:
                    out = np.asarray(REGISTRY[node.op].numpy(*args, **attrs))
                except (IndexError, ValueError) as err:   # a bad index: name the op and line
                    where = f"{os.path.basename(node.source[0])}:{node.source[1]}"
                    raise type(err)(f"{node.op} at {where}: {err}") from None
                values[id(node)] = out.astype(node.dtype, copy=False)
    return values


class Program:
    """What ``sg.function`` runs for ``backend="numpy"``: evaluate, then copy the results."""

    kernels: list = []
    source = "# backend='numpy' runs the graph node by node; there is no generated code"

    def __init__(self, placeholders: Sequence[Tensor], graph: Graph, stats: dict):
        self.nodes = list(graph.nodes)
        self.placeholders = list(placeholders)
        self.targets = list(graph.outputs)
        self.graph, self.stats = graph, stats

    def time_kernels(self, arrays, plan, repeat: int) -> dict:
        """No kernels to time: the graph runs node by node."""
        return {}

    def threads(self, plan) -> list:
        """No kernels: nothing runs on threads of its own."""
        return []

    def run(self, arrays: Sequence[np.ndarray], plan) -> list:
        feeds = {id(p): a for p, a in zip(self.placeholders, arrays)}
        values = evaluate(self.nodes, feeds, plan.env)
        # copies: a result must not alias an argument, a parameter or another result
        return [np.array(values[id(t)]) for t in self.targets]


def compile(placeholders: Sequence[Tensor], graph: Graph, stats: dict) -> Program:
    """The backend entry point (see ``staticgrad.backends``): nothing to compile."""
    return Program(placeholders, graph, stats)
