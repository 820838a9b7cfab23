"""Export: a compiled function to one file, and back in another process without the code that
built it. ``save(f, "step.sgz")`` writes the rewritten graph, the parameter and constant values
and the generated source; ``load("step.sgz")`` rebuilds the graph, compiles it (loading the
machine code from the disk cache when it is warm) and checks that it generates the same source.

The file (format ``FORMAT``) is a zip archive, with no pickled code anywhere:

- ``manifest.json``: ``format``, the ``staticgrad``/``numpy``/``numba`` versions that wrote it,
  ``codegen`` (the generated code's format), ``backend``, ``check_finite``, ``single`` (one
  output, not a list), ``n_outputs``, ``inputs`` (node ids of the placeholders, in call order),
  ``updates`` (``[parameter id, output position]``), ``outputs`` (node ids of the rewritten
  graph's outputs: the function's outputs, then the update values), ``source_sha256``,
  ``symbols`` (names of the call-time sizes) and ``nodes``. A node is ``{"id", "leaf"
  (placeholder, parameter, constant or null), "op", "inputs", "attrs", "dims", "dtype", "weak",
  "name", "requires_grad", "source" ([file, line] where the user built it), "origin" (the
  forward node whose VJP built it, or null)}``; a forward node that is not itself part of the
  graph is a ``"stub"`` holding only what listings show (op, dims, dtype, source). Nodes come
  inputs first. Attribute values are JSON numbers, strings, booleans and null, or objects:
  ``{"tuple": [...]}``, ``{"dtype": "float32"}``, ``{"dim": [[[symbol, ...], coeff], ...]}``
  (a call-time size), ``{"node": id}``, ``{"body": {...}}`` (a scan's step).
- ``values/<id>.npy``: each parameter's and constant's value (NumPy's format, no pickle).
- ``source.py``: the generated module, ``f.source``.

>>> import io, numpy as np, staticgrad as sg
>>> x = sg.placeholder((None,), name="x")
>>> w = sg.parameter(np.array([1.0, 2.0]), name="w")
>>> f = sg.function([x], sg.sum(x * w), backend="numpy")
>>> buffer = io.BytesIO()
>>> sg.save(f, buffer)
>>> g = sg.load(buffer.getvalue())
>>> float(g(np.array([3.0, 4.0]))), str(g.graph) == str(f.graph)
(11.0, True)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import types
import zipfile

import numpy as np

from . import shapes as sh
from .function import Function
from .graph import Graph
from .ops import REGISTRY, apply
from .ops.scan import Body
from .tensor import Constant, Tensor, derived_from, parameter

FORMAT = 1


# -- save ------------------------------------------------------------------------------------------
def save(f: Function, file) -> None:
    """Write the compiled function ``f`` to ``file`` (a path, written atomically, or a binary
    file object) in the format described in ``staticgrad.export``.

    >>> import io, numpy as np, staticgrad as sg
    >>> x = sg.placeholder((), name="x")
    >>> buffer = io.BytesIO()
    >>> sg.save(sg.function([x], x * 2.0, backend="numpy"), buffer)
    >>> float(sg.load(buffer.getvalue())(1.5))
    3.0
    """
    data = dumps(f)
    if hasattr(file, "write"):
        file.write(data)
        return
    from .backends.numba.cache import write_atomically
    write_atomically(os.fspath(file), data)


def dumps(f: Function) -> bytes:
    """The bytes ``save`` writes."""
    from . import __version__
    from .backends.numba.render import FORMAT as CODEGEN
    nodes, ids, stubs = saved_nodes(list(f.graph.outputs))
    symbols = sorted({s for n in nodes for s in sh.symbols_in(n.dims) |
                      sh.symbols_in(tuple(v for _, v in n.attrs))}, key=lambda s: s.serial)
    number = {id(s): k for k, s in enumerate(symbols)}
    encode = Encoder(ids, number, stubs)
    records = [encode.node(n) for n in nodes]
    n_out = len(f.outputs)
    manifest = {
        "format": FORMAT, "staticgrad": __version__, "numpy": np.__version__,
        "numba": numba_version(), "codegen": CODEGEN, "backend": f.backend,
        "check_finite": f.check_finite, "single": f.single, "n_outputs": n_out,
        "inputs": [ids[id(p)] for p in f.inputs],
        "updates": [[ids[id(p)], n_out + k] for k, (p, _) in enumerate(f.updates)],
        "outputs": [ids[id(o)] for o in f.graph.outputs],
        "source_sha256": hashlib.sha256(f.source.encode()).hexdigest(),
        "symbols": [s.name for s in symbols], "nodes": records}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        z.writestr("source.py", f.source, zipfile.ZIP_DEFLATED)
        for n in nodes:
            if n.leaf in ("parameter", "constant"):
                buffer = io.BytesIO()
                np.save(buffer, n.value, allow_pickle=False)
                z.writestr(f"values/{ids[id(n)]}.npy", buffer.getvalue())
    return out.getvalue()


def saved_nodes(outputs: list) -> tuple:
    """Every node the outputs need (through inputs, attributes and scan bodies), with the
    forward nodes named only as an ``origin`` (stubs), in the order they were built: each
    after everything it refers to. Returns ``(nodes, {id(node): position}, stub ids)``."""
    needed, stack = {}, list(outputs)
    while stack:
        node = stack.pop()
        if id(node) not in needed:
            needed[id(node)] = node
            stack += children(node)
    stubs = {id(n.origin): n.origin for n in needed.values()
             if n.origin is not None and id(n.origin) not in needed}
    order = sorted([*needed.values(), *stubs.values()], key=lambda n: n.serial)
    return order, {id(n): k for k, n in enumerate(order)}, set(stubs)


def children(node: Tensor) -> list:
    """The nodes ``node`` is built from: inputs, then tensors among its attributes."""
    found = list(node.inputs)
    for _, value in node.attrs:
        found += attr_tensors(value)
    return found


def attr_tensors(value) -> list:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Body):
        return [*value.carries, *value.xs, *value.consts, *value.outputs]
    if isinstance(value, tuple):
        return [t for v in value for t in attr_tensors(v)]
    return []


class Encoder:
    """Nodes and attribute values as JSON."""

    def __init__(self, ids: dict, symbols: dict, stubs: set):
        self.ids, self.symbols, self.stubs = ids, symbols, stubs

    def node(self, n: Tensor) -> dict:
        stub = id(n) in self.stubs
        record = {"id": self.ids[id(n)], "op": n.op, "leaf": n.leaf,
                  "dims": [self.value(d) for d in n.dims], "dtype": n.dtype.str,
                  "name": n.name, "source": [str(n.source[0]), int(n.source[1])],
                  "weak": n.weak, "requires_grad": n.requires_grad, "origin": None}
        if stub:
            record["stub"] = True
        elif n.op is not None:
            record.update(inputs=[self.ids[id(i)] for i in n.inputs],
                          attrs=[[k, self.value(v)] for k, v in n.attrs])
        if n.origin is not None and not stub:
            record["origin"] = self.ids[id(n.origin)]
        return record

    def value(self, v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, sh.Dim):
            return {"dim": [[[self.symbols[id(s)] for s in mono], c] for mono, c in v.terms]}
        if isinstance(v, tuple):
            return {"tuple": [self.value(x) for x in v]}
        if isinstance(v, np.dtype):
            return {"dtype": v.str}
        if isinstance(v, Tensor):
            return {"node": self.ids[id(v)]}
        if isinstance(v, Body):
            return {"body": {"carries": [self.ids[id(p)] for p in v.carries],
                             "xs": [self.ids[id(p)] for p in v.xs],
                             "consts": [self.ids[id(p)] for p in v.consts],
                             "outputs": [self.ids[id(o)] for o in v.outputs],
                             "n_ys": v.n_ys}}
        raise TypeError(f"save: cannot write an attribute of type {type(v).__name__} ({v!r})")


# -- load ------------------------------------------------------------------------------------------
def load(file) -> Function:
    """The function saved in ``file`` (a path, a binary file object, or the bytes): its graph
    rebuilt, compiled (machine code from the disk cache when it is there) and checked to
    generate the saved source. Its parameters are new ones holding the saved values.

    Raises ``ValueError`` for a file of another format, or one whose graph this version of
    staticgrad would compile to other code.
    """
    if isinstance(file, (bytes, bytearray)):
        file = io.BytesIO(file)
    try:
        archive = zipfile.ZipFile(file)
        manifest = json.loads(archive.read("manifest.json"))
        source = archive.read("source.py").decode()
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise ValueError(f"load: {describe(file)} is not a staticgrad export ({err})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"load: {describe(file)} is a staticgrad export of format "
                         f"{manifest.get('format')!r}, written by staticgrad "
                         f"{manifest.get('staticgrad')}; this staticgrad reads format {FORMAT}: "
                         "save the function again with this version")
    with archive:
        nodes = Decoder(manifest, archive).nodes()
    f = Function.__new__(Function)
    inputs = [nodes[k] for k in manifest["inputs"]]
    outputs = [nodes[k] for k in manifest["outputs"]]
    n_out = manifest["n_outputs"]
    updates = [(nodes[p], outputs[k]) for p, k in manifest["updates"]]
    f.assemble(inputs, outputs[:n_out], updates, manifest["backend"],
               manifest["check_finite"], manifest["single"], Graph(outputs), {"seconds": {}})
    if code(f.source) != code(source):
        raise ValueError(f"load: {describe(file)} was written by staticgrad "
                         f"{manifest['staticgrad']} (generated code format "
                         f"{manifest['codegen']}); this staticgrad generates other code for its "
                         "graph: save the function again with this version")
    return f


def code(source: str) -> str:
    """The generated source without its first line (which names the version that made it)."""
    return source.split("\n", 1)[-1]


def describe(file) -> str:
    name = getattr(file, "name", None) if not isinstance(file, (str, os.PathLike)) else file
    return repr(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else "the data"


class Decoder:
    """The nodes of a manifest, rebuilt in order."""

    def __init__(self, manifest: dict, archive: zipfile.ZipFile):
        self.manifest, self.archive = manifest, archive
        self.symbols = [sh.Sym(name) for name in manifest["symbols"]]
        self.built: dict = {}

    def nodes(self) -> dict:
        for record in self.manifest["nodes"]:
            origin = record["origin"]
            where = types.SimpleNamespace(source=tuple(record["source"]),
                                          origin=None if origin is None else self.built[origin])
            with derived_from(where):   # nodes made here take the saved line and origin
                made = self.node(record)
            dims, dtype = tuple(self.value(d) for d in record["dims"]), np.dtype(record["dtype"])
            if made.dims != dims or made.dtype != dtype:
                raise ValueError(f"load: {made.op or made.leaf} gives "
                                 f"{made.dtype}{sh.show(made.dims)} here, the saved graph says "
                                 f"{dtype}{sh.show(dims)}")
            self.built[record["id"]] = made
        return self.built

    def node(self, r: dict) -> Tensor:
        dims = tuple(self.value(d) for d in r["dims"])
        dtype = np.dtype(r["dtype"])
        if r["leaf"] in ("parameter", "constant"):
            value = np.load(io.BytesIO(self.archive.read(f"values/{r['id']}.npy")),
                            allow_pickle=False)
            if r["leaf"] == "parameter":
                return parameter(value, name=r["name"])
            # a constant of its own, not the one this process may have interned with the same
            # value: that one would carry another line and origin
            value.flags.writeable = False
            made = Constant.__new__(Constant)
            made._init(None, (), (), dims, dtype, r["weak"], r["name"], "constant", False,
                       value=value)
            return made
        if r["leaf"] == "placeholder" or r.get("stub"):
            # a placeholder with its saved sizes; a stub only names a forward node in listings
            made = Tensor.__new__(Tensor)
            made._init(r["op"], (), (), dims, dtype, r["weak"], r["name"], r["leaf"],
                       r["requires_grad"])
            return made
        if r["op"] not in REGISTRY:
            raise ValueError(f"load: the graph uses op {r['op']!r}, which this staticgrad "
                             "does not have")
        return apply(r["op"], [self.built[k] for k in r["inputs"]],
                     **{k: self.value(v) for k, v in r["attrs"]})

    def value(self, v):
        if not isinstance(v, dict):
            return v
        (kind, x), = v.items()
        if kind == "dim":
            return sh.Dim(tuple((tuple(self.symbols[s] for s in mono), c) for mono, c in x))
        if kind == "tuple":
            return tuple(self.value(e) for e in x)
        if kind == "dtype":
            return np.dtype(x)
        if kind == "node":
            return self.built[x]
        if kind == "body":
            return Body(*[[self.built[k] for k in x[part]] for part in
                          ("carries", "xs", "consts", "outputs")], x["n_ys"])
        raise ValueError(f"load: unknown attribute value {v!r}")


def numba_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("numba")
    except Exception:  # noqa: BLE001 (only informative)
        return None
