"""Graphviz: a graph as DOT text (kernels drawn as clusters) and drawn to SVG or PNG."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from .. import shapes as sh
from ..tensor import Tensor
from .listing import typed


def to_dot(graph, kernels: Sequence | None = None) -> str:
    """Graphviz DOT text: leaves as boxes, backward nodes shaded, outputs outlined.

    With ``kernels`` (a compiled function's ``.kernels``) each kernel is a cluster of the
    nodes it computes; a node inlined into several kernels is drawn once in each (dashed
    where it is a recomputed copy), so the picture shows what each loop really does.
    """
    index = {id(n): k for k, n in enumerate(graph.nodes)}
    homes = kernel_homes(kernels or [])
    lines = ["digraph staticgrad {", "  rankdir=TB;", '  node [fontname="monospace"];']
    for k, n in enumerate(graph.nodes):
        if id(n) not in homes:
            lines.append(f"  {dot_node(graph, n, f'n{k}')}")
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
            lines.append(f"    {dot_node(graph, n, ident(n), homes[id(n)] != c)}")
        lines.append("  }")
        for n in kernel.nodes:
            lines += [f"  {ident(i)} -> {ident(n)};" for i in n.inputs]
    lines.append("}")
    return "\n".join(lines)


def dot_node(graph, n: Tensor, ident: str, copy: bool = False) -> str:
    """One DOT node statement for ``n`` (``copy``: a recomputed copy inside a cluster)."""
    title = n.op or f"{n.leaf} {graph.label(n)}"
    text = f"{title}\\n{typed(n)}"
    where = f"{os.path.basename(n.source[0])}:{n.source[1]}"
    attrs = [f'label="{escape(text)}"', f'tooltip="{escape(where)}"',
             "shape=box" if n.is_leaf else "shape=ellipse"]
    styles = (["filled"] if n.origin is not None else []) + (["dashed"] if copy else [])
    if styles:
        attrs.append(f'style="{",".join(styles)}"')
    if n.origin is not None:
        attrs.append('fillcolor="#e8e8f8"')  # backward nodes: shaded
    if any(o is n for o in graph.outputs):
        attrs.append("penwidth=2")
    return f"{ident} [{' '.join(attrs)}];"


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
