"""Listings: a graph as typed text, kernels one a line, and ``STATICGRAD_DEBUG`` printouts.

``Graph.__str__`` and ``Graph.show_kernels`` call these; ``announce`` prints what each new
function compiled to, as much as ``$STATICGRAD_DEBUG`` (1 graph, 2 kernels, 3 source) asks for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..tensor import GradFn, Tensor


def typed(n: Tensor) -> str:
    return f"{dt.short(n.dtype)}{sh.show(n.dims)}"


def shown_as_node(n: Tensor) -> bool:
    return n.leaf == "constant" and n.value.size > 1


def show_attr(v) -> str:
    if isinstance(v, Tensor):   # a custom function's body: named by its last op
        return v.op or v.leaf
    if isinstance(v, np.dtype):
        return dt.short(v)
    if isinstance(v, tuple) and v and all(isinstance(s, tuple) for s in v):
        return "[" + ",".join(":".join("" if p is None else str(p) for p in s) for s in v) + "]"
    return repr(v)


def listing(graph) -> str:
    """The typed listing of ``graph`` (a ``Graph``): one node a line."""
    head = ", ".join(f"{graph.label(n)}: {typed(n)}" for n in graph.inputs)
    outs = ", ".join(graph.label(o) for o in graph.outputs)
    lines = [f"graph({head}) -> ({outs})"]
    rows = [graph.row(n) for n in graph.nodes if n.op is not None or shown_as_node(n)]
    width = max((len(r[0]) for r in rows), default=0)
    twidth = max((len(r[1]) for r in rows), default=0)
    for code, ty, note in rows:
        lines.append(f"  {code:<{width}}  {ty:<{twidth}}  {note}".rstrip())
    return "\n".join(lines)


def row(graph, n: Tensor) -> tuple:
    """``(code, type, note)`` of node ``n`` in the listing of ``graph``."""
    if n.op is None:
        code = f"{graph.label(n)} = constant"
    else:
        args = ", ".join(graph.label(i) for i in n.inputs)
        attrs = " ".join(f"{k}={show_attr(v)}" for k, v in n.attrs if k != "params")
        code = f"{graph.label(n)} = {n.op} {args}" + (f"  {attrs}" if attrs else "")
    note = f"{os.path.basename(n.source[0])}:{n.source[1]}"
    if n.name and n.op is not None:
        note = f"{n.name}  {note}"
    if n.origin is not None:
        forward = graph.label(n.origin) if id(n.origin) in graph._labels else \
            f"{n.origin.op} at {os.path.basename(n.origin.source[0])}:{n.origin.source[1]}"
        note += f"  [{GradFn(n.origin).name} of {forward}]"
    return code, typed(n), note


def show_kernels(graph, kernels: Sequence) -> str:
    """One line per kernel: name, kind, loop shape, the nodes it computes (as labelled
    in this listing), the stored values it reads and the roots it writes."""
    lines = []
    for k in kernels:
        passes = f", {len(k.passes)} passes" if len(k.passes) > 1 else ""
        nodes = ", ".join(f"{graph.label(n)} {n.op}" for n in k.nodes)
        reads = ", ".join(graph.label(r) for r in k.reads) or "-"
        writes = ", ".join(graph.label(w) for w in k.writes)
        lines.append(f"{k.name} {k.kind} over {sh.show(k.space)}{passes}: {nodes}"
                     f"  (reads {reads}; writes {writes})")
    return "\n".join(lines)


def debug_level() -> int:
    """``$STATICGRAD_DEBUG`` as a level: 0 off, 1 graph, 2 + kernels, 3 + generated source."""
    text = os.environ.get("STATICGRAD_DEBUG", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        return 1   # any other non-empty value: switched on


def announce(function) -> None:
    """Print what was just compiled to stderr, as much as ``STATICGRAD_DEBUG`` asks for."""
    level = debug_level()
    if level <= 0:
        return
    out = [f"staticgrad: compiled {function!r}", str(function.graph)]
    nodes = function.stats.get("nodes")
    if nodes:
        out.append("rewrites: " + " -> ".join(f"{name} {count}" for name, count in nodes))
    if level >= 2:
        kernels = function.graph.show_kernels(function.kernels)
        out.append(f"kernels ({len(function.kernels)}):\n{kernels}" if function.kernels else
                   f"kernels: none (backend {function.backend!r} runs node by node)")
    if level >= 3:
        out.append(function.source)
    print("\n".join(out), file=sys.stderr)
