"""``sg.graph``: nodes in topological order, inputs/outputs, the text listing, networkx and DOT."""

import os
import re
import shutil

import networkx as nx
import numpy as np
import pytest
from conftest import caller_line

import staticgrad as sg


def small_model():
    x = sg.placeholder((None, 4), np.float32, name="x")
    w = sg.parameter(np.ones((4, 3), np.float32), name="w")
    b = sg.parameter(np.zeros(3, np.float32), name="b")
    h = sg.relu(x @ w + b)
    loss = sg.mean(h ** 2)
    gw = sg.grad(loss, w)
    return x, w, b, h, loss, gw


def test_nodes_are_topological_and_complete():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph([loss, gw])
    nodes = g.nodes
    assert len(nodes) == len(g) and len({id(n) for n in nodes}) == len(nodes)
    position = {id(n): k for k, n in enumerate(nodes)}
    for n in nodes:
        assert isinstance(n, sg.Tensor)
        for i in n.inputs:
            assert id(i) in position and position[id(i)] < position[id(n)]
    for t in (x, w, b, h, loss, gw):
        assert id(t) in position
    # and nothing the outputs do not need
    reachable, stack = set(), [loss, gw]
    while stack:
        n = stack.pop()
        if id(n) not in reachable:
            reachable.add(id(n))
            stack.extend(n.inputs)
    assert reachable == set(position)


def test_single_output_and_subgraph():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph(h)
    assert g.outputs == (h,) or list(g.outputs) == [h]
    assert g.nodes[-1] is h
    assert all(n.origin is None for n in g.nodes)  # no backward nodes in the forward graph
    assert [n.op for n in g.nodes if n.op] == ["matmul", "add", "relu"]


def test_inputs_and_outputs():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph([loss, gw])
    assert list(g.outputs) == [loss, gw]
    assert {id(i) for i in g.inputs} == {id(x), id(w), id(b)}
    assert all(i.is_leaf for i in g.inputs)
    assert not any(isinstance(i, sg.Constant) for i in g.inputs)
    order = [id(n) for n in g.nodes]
    assert [id(i) for i in g.inputs] == [k for k in order if k in {id(x), id(w), id(b)}]


def test_graph_of_a_leaf_and_of_a_constant_expression():
    x = sg.placeholder((3,), name="x")
    g = sg.graph(x)
    assert g.nodes == [x] and list(g.inputs) == [x]
    c = sg.graph(sg.constant(np.ones(3)) * 2.0)
    assert list(c.inputs) == [] and c.nodes[-1].op == "mul"


def test_listing_has_one_line_per_node():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph([loss, gw])
    text = str(g)
    lines = text.splitlines()
    header, body = lines[0], lines[1:]
    # inputs with names and types in the header
    assert "x: f32[" in header and "w: f32[4,3]" in header and "b: f32[3]" in header
    op_nodes = [n for n in g.nodes if n.op is not None]
    assert len(body) >= len(op_nodes)
    for n in op_nodes:
        label = g.label(n)
        line = next(line for line in body if line.strip().startswith(f"{label} = "))
        assert f" {n.op} " in line + " ", line
        assert "f32[" in line or "bool[" in line or "i64[" in line, line
        for i in n.inputs:
            assert g.label(i) in line, line
        assert "test_graph.py:" in line, line
    # backward nodes name the rule that made them
    assert "MatmulBackward" in text and "ReluBackward" in text
    assert repr(g) == text


def test_listing_shows_shapes_dtypes_and_names():
    x = sg.placeholder((None, 2), np.float64, name="features")
    idx = sg.placeholder((None,), np.int64, name="labels")
    y = sg.sum(sg.take(x, idx, axis=0) * 3.0, axis=1)
    text = str(sg.graph(y))
    assert "features: f64[" in text and "labels: i64[" in text
    assert "take" in text and "mul" in text and "sum" in text
    assert re.search(r"sum .*f64\[\S*\]", text), text
    assert len(text.splitlines()) == 1 + sum(1 for n in sg.graph(y).nodes if n.op)


def test_to_networkx():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph([loss, gw])
    G = g.to_networkx()
    assert isinstance(G, nx.DiGraph)
    assert G.number_of_nodes() == len(g.nodes)
    assert nx.is_directed_acyclic_graph(G)
    by_tensor = {}
    for key, attrs in G.nodes(data=True):
        for field in ("op", "shape", "dtype", "name", "is_leaf"):
            assert field in attrs, (key, attrs)
        by_tensor[id(attrs["tensor"])] = (key, attrs)
    assert set(by_tensor) == {id(n) for n in g.nodes}
    for n in g.nodes:
        key, attrs = by_tensor[id(n)]
        assert attrs["op"] == n.op and attrs["shape"] == n.shape
        assert attrs["dtype"] == n.dtype and attrs["name"] == n.name
        assert attrs["is_leaf"] == n.is_leaf
        preds = set(G.predecessors(key))
        assert preds == {by_tensor[id(i)][0] for i in n.inputs}
    # the inputs are the sources that are placeholders or parameters
    names = {attrs["name"] for _, attrs in G.nodes(data=True) if attrs["is_leaf"] and
             attrs["op"] is None and attrs["name"]}
    assert {"x", "w", "b"} <= names
    x_attrs = by_tensor[id(x)][1]
    assert x_attrs["shape"] == (None, 4) and x_attrs["dtype"] == np.float32
    # a topological order of the networkx graph exists that matches .nodes
    order = list(nx.topological_sort(G))
    assert sorted(order) == sorted(G.nodes)


def test_to_networkx_repeated_input():
    x = sg.placeholder((3,), name="x")
    y = x * x
    G = sg.graph(y).to_networkx()
    assert G.number_of_nodes() == 2 and G.number_of_edges() == 1
    (u, v), = G.edges
    assert G.nodes[u]["name"] == "x" and G.nodes[v]["op"] == "mul"


def test_to_dot():
    x, w, b, h, loss, gw = small_model()
    g = sg.graph([loss, gw])
    dot = g.to_dot()
    assert isinstance(dot, str)
    lines = [line.strip() for line in dot.strip().splitlines()]
    assert re.match(r"^(strict\s+)?digraph\b.*\{$", lines[0]), lines[0]
    assert lines[-1] == "}"
    assert dot.count("{") == dot.count("}")
    assert dot.count('"') % 2 == 0
    for op in {n.op for n in g.nodes if n.op}:
        assert op in dot, op
    for name in ("x", "w", "b"):
        assert re.search(rf"\b{name}\b", dot)
    edges = re.findall(r"(\w+)\s*->\s*(\w+)", dot)
    declared = set(re.findall(r"^\s*(\w+)\s*\[", dot, flags=re.M)) - {"node", "edge", "graph"}
    assert len(declared) == len(g.nodes)
    assert len(edges) == sum(len(n.inputs) for n in g.nodes)
    assert all(a in declared and b in declared for a, b in edges)


@pytest.mark.parametrize("outputs", ["one", "list", "tuple"])
def test_graph_accepts_tensor_list_or_tuple(outputs):
    x = sg.placeholder((2,), name="x")
    y, z = sg.exp(x), sg.sin(x)
    arg = {"one": y, "list": [y, z], "tuple": (y, z)}[outputs]
    g = sg.graph(arg)
    assert isinstance(g, sg.Graph)
    assert g.nodes[0] is x and len(g.outputs) == (1 if outputs == "one" else 2)


def test_compiled_function_exposes_a_graph(backend):
    x = sg.placeholder((None, 3), name="x")
    f = sg.function([x], sg.sum(sg.exp(x)), backend=backend)
    assert isinstance(f.graph, sg.Graph)
    assert any(n.leaf == "placeholder" for n in f.graph.nodes)
    assert "exp" in str(f.graph) or "exp" in f.source
    assert isinstance(f.source, str) and isinstance(f.kernels, list)
    assert float(f(np.zeros((2, 3)))) == 6.0


# -- kernels as clusters, rendering --------------------------------------------------------------
def softmax_step(backend="numba"):
    x = sg.placeholder((None, 5), name="x")
    w = sg.parameter(np.ones((5, 5)) / 5, name="w")
    loss = sg.sum(sg.log_softmax(sg.tanh(x @ w), axis=-1) ** 2)
    return sg.function([x], [loss, sg.grad(loss, w)], backend=backend)


@pytest.fixture(scope="module")
def compiled():
    return softmax_step()


def test_compiled_dot_draws_each_kernel_as_a_cluster(compiled):
    dot = compiled.to_dot()
    clusters = re.findall(r"subgraph cluster_(\d+) \{\s*label=\"(k\d+): (\w+) over", dot)
    assert [(int(c), name) for c, name, _ in clusters] == \
        [(k, kernel.name) for k, kernel in enumerate(compiled.kernels)]
    assert {kind for _, _, kind in clusters} == {k.kind for k in compiled.kernels}
    # every node a kernel computes is drawn inside that kernel's cluster
    for c, kernel in enumerate(compiled.kernels):
        body = dot.split(f"subgraph cluster_{c} {{", 1)[1].split("\n  }", 1)[0]
        assert body.count("label=") == len(kernel.nodes) + 1
    assert dot.count("{") == dot.count("}")


def test_show_kernels_lists_members_reads_and_writes(compiled):
    text = compiled.graph.show_kernels(compiled.kernels)
    lines = text.splitlines()
    assert len(lines) == len(compiled.kernels)
    for line, kernel in zip(lines, compiled.kernels):
        assert line.startswith(f"{kernel.name} {kernel.kind} over ")
        assert "(reads " in line and "; writes " in line


def fake_dot(tmp_path, monkeypatch) -> None:
    """A stand-in for Graphviz's ``dot`` on PATH: it records its arguments and input."""
    script = tmp_path / "bin" / "dot"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n"
                      "cat > \"$(dirname \"$0\")/input\"\n"
                      "for a in \"$@\"; do last=\"$a\"; done\necho '<svg/>' > \"$last\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")


def test_render_runs_dot_with_the_format_of_the_file_name(compiled, tmp_path, monkeypatch):
    fake_dot(tmp_path, monkeypatch)
    out = tmp_path / "step.svg"
    assert compiled.render(str(out)) == str(out)
    assert out.read_text().strip() == "<svg/>"
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args[0] == "-Tsvg" and args[-1] == str(out)
    assert (tmp_path / "bin" / "input").read_text() == compiled.to_dot()
    sg.graph(compiled.outputs).render(str(tmp_path / "built.png"))
    assert (tmp_path / "bin" / "args").read_text().split()[0] == "-Tpng"


def test_render_without_graphviz_says_how_to_get_it(compiled, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # no dot anywhere on PATH
    with pytest.raises(RuntimeError, match="Graphviz's `dot` program is not on PATH.*"
                                           "apt-get install graphviz"):
        compiled.render(str(tmp_path / "step.svg"))
    with pytest.raises(ValueError, match="cannot tell the format of 'step.pdf'"):
        sg.graph(compiled.outputs).render("step.pdf")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_render_with_graphviz_writes_an_svg(compiled, tmp_path):
    out = tmp_path / "step.svg"
    compiled.render(str(out))
    assert "<svg" in out.read_text()


def test_a_node_made_of_constants_is_listed_at_the_line_that_made_it():
    # pow's VJP builds ``2.0 - 1.0``: shared by unrelated graphs, it would carry the line of
    # whichever graph made it first into every listing
    def square_grad():
        x = sg.placeholder((3,), np.float32, name="x")
        return sg.grad(sg.sum(x ** 2), x)

    first = square_grad()
    x = sg.placeholder((3,), np.float32, name="x")
    second = sg.grad(sg.sum(x ** 2), x)
    line = caller_line() - 1
    ours = str(sg.graph(second))
    assert f"test_graph.py:{line}" in ours
    assert f"test_graph.py:{line - 4}" not in ours       # square_grad's line
    assert str(sg.graph(first)).count("sub ") == ours.count("sub ") == 1
