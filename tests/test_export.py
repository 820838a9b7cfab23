"""``sg.save`` / ``sg.load``: a compiled function to one file and back, here and in a fresh
process that has none of the code that built the graph. The loaded function has the same
graph, kernels and source, gives bit-identical results, and trains its parameters as the
original does."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import staticgrad as sg
from staticgrad.backends.numba import cache

ROOT = Path(__file__).resolve().parents[1]


@sg.custom_vjp
def clipped(x):
    return x * 1.0


@clipped.defvjp
def clipped_vjp(g, y, x):
    return [sg.clip(g, -1.0, 1.0)]


def mlp():
    rng = np.random.default_rng(0)
    x = sg.placeholder((None, 6), np.float32, name="x")
    y = sg.placeholder((None,), np.int64, name="y")
    w1 = sg.parameter(rng.standard_normal((6, 8)).astype(np.float32) * 0.5, name="w1")
    w2 = sg.parameter(rng.standard_normal((8, 3)).astype(np.float32) * 0.5, name="w2")
    h = clipped(sg.relu(x @ w1))
    log_p = sg.log_softmax(h @ w2, axis=-1)
    loss = -sg.mean(sg.sum(sg.one_hot(y, 3, np.float32) * log_p, axis=-1))
    step = sg.function([x, y], [loss, log_p[:, 1:]], updates=sg.optim.adam(loss, [w1, w2]))
    args = (rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, 5))
    return step, args


def rnn():
    rng = np.random.default_rng(1)
    x = sg.placeholder((7, 4, 3), name="x")
    wx = sg.parameter(rng.standard_normal((3, 5)) * 0.3, name="wx")
    wh = sg.parameter(rng.standard_normal((5, 5)) * 0.3, name="wh")
    h, _ = sg.scan(lambda h, xt: (sg.tanh(xt @ wx + h @ wh), None),
                   sg.constant(np.zeros((4, 5))), x)
    loss = sg.sum(h ** 2)
    step = sg.function([x], [loss, *sg.grad(loss, [wx, wh])],
                       updates=sg.optim.sgd(loss, [wx, wh], lr=0.01))
    return step, (rng.standard_normal((7, 4, 3)),)


def shapes():
    # call-time sizes shared between placeholders, slices, concatenation, take, casts
    a = sg.placeholder(("n", 3), name="a")
    b = sg.placeholder(("n",), np.int32, name="b")
    i = sg.placeholder((None,), np.int64, name="i")
    out = sg.concatenate([a[1:], a[:-1] * 2.0], axis=0)
    picked = sg.take(sg.cast(b, np.float64) + sg.sum(a, axis=1), i)
    f = sg.function([a, b, i], [out, picked, sg.grad(sg.sum(out ** 2) + sg.sum(picked), a)])
    return f, (np.arange(12.0).reshape(4, 3), np.arange(4, dtype=np.int32), np.array([3, 0]))


def reference():
    x = sg.placeholder((None,), name="x")
    w = sg.parameter(np.array(0.5), name="w")
    loss = sg.sum((x * w - 1.0) ** 2)
    return sg.function([x], loss, updates=sg.optim.sgd(loss, [w], lr=0.1),
                       backend="numpy"), (np.arange(3.0),)


CASES = {"mlp": mlp, "rnn": rnn, "shapes": shapes, "reference": reference}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    f, args = CASES[request.param]()
    return request.param, f, args


def round_trip(f):
    buffer = io.BytesIO()
    sg.save(f, buffer)
    return sg.load(buffer.getvalue()), buffer.getvalue()


def values(f) -> list:
    return [p.value.copy() for p in f.parameters]


def test_a_loaded_function_is_the_same_function(case):
    name, f, args = case
    g, _ = round_trip(f)
    assert str(g.graph) == str(f.graph)
    assert [str(k) for k in g.kernels] == [str(k) for k in f.kernels]
    assert g.graph.show_kernels(g.kernels) == f.graph.show_kernels(f.kernels)
    assert g.source == f.source
    assert [p.name for p in g.inputs] == [p.name for p in f.inputs]
    assert [p.name for p in g.parameters] == [p.name for p in f.parameters]
    assert all(p is not q for p, q in zip(g.parameters, f.parameters))   # its own parameters


def test_a_loaded_function_trains_bit_for_bit_as_the_original(case):
    name, f, args = case
    g, _ = round_trip(f)
    for p, q in zip(g.parameters, f.parameters):
        np.testing.assert_array_equal(p.value, q.value)
    for _ in range(3):
        got, want = g(*args), f(*args)
        got, want = (got, want) if isinstance(got, list) else ([got], [want])
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for p, q in zip(g.parameters, f.parameters):
            assert p.value.tobytes() == q.value.tobytes()


def test_the_file_holds_json_npy_and_source_only(case):
    name, f, args = case
    _, data = round_trip(f)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("source.py").decode() == f.source
        for member in names:
            if member.startswith("values/"):
                np.load(io.BytesIO(z.read(member)), allow_pickle=False)   # no pickled objects
    assert {n.split("/")[0] for n in names} <= {"manifest.json", "source.py", "values"}
    assert manifest["format"] == sg.export.FORMAT and manifest["staticgrad"] == sg.__version__
    assert len([n for n in names if n.startswith("values/")]) >= len(f.parameters)


def rewritten(data: bytes, **changes) -> bytes:
    """The export ``data`` with members replaced (``manifest`` a function of the manifest)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(out, "w") as w:
        for member in z.namelist():
            body = z.read(member)
            if member == "manifest.json" and "manifest" in changes:
                body = json.dumps(changes["manifest"](json.loads(body))).encode()
            if member == "source.py" and "source" in changes:
                body = changes["source"](body.decode()).encode()
            w.writestr(member, body)
    return out.getvalue()


def test_a_file_from_another_version_is_refused_clearly():
    f, _ = reference()
    _, data = round_trip(f)

    def newer(m):
        return dict(m, format=m["format"] + 1, staticgrad="9.9.9")

    with pytest.raises(ValueError, match=r"format 2, written by staticgrad 9\.9\.9; this "
                                         r"staticgrad reads format 1"):
        sg.load(rewritten(data, manifest=newer))

    def other_ops(m):
        nodes = [dict(n, op="warp") if n["op"] == "mul" else n for n in m["nodes"]]
        return dict(m, nodes=nodes)

    with pytest.raises(ValueError, match="op 'warp', which this staticgrad does not have"):
        sg.load(rewritten(data, manifest=other_ops))
    x = sg.placeholder((None,), name="x")
    g = sg.function([x], sg.sum(sg.exp(x)))
    _, numba_data = round_trip(g)

    def older(m):
        return dict(m, staticgrad="0.0.1", codegen=1)

    with pytest.raises(ValueError, match=r"written by staticgrad 0\.0\.1 \(generated code format "
                                         r"1\); this staticgrad generates other code"):
        sg.load(rewritten(numba_data, manifest=older,
                          source=lambda s: s.replace("mathlib.exp(", "mathlib.exp2(")))
    with pytest.raises(ValueError, match="is not a staticgrad export"):
        sg.load(b"not a zip file")


def test_save_to_a_path_is_atomic_and_loads_back(tmp_path):
    f, args = reference()
    path = tmp_path / "step.sgz"
    sg.save(f, path)
    sg.save(f, str(path))                       # over an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["step.sgz"]   # no temporary file left
    assert float(sg.load(path)(*args)) == float(f(*args))


LOADER = """
    import sys, numpy as np, staticgrad as sg
    path, out = sys.argv[1], sys.argv[2]
    f = sg.load(path)
    args = [np.load(a, allow_pickle=False) for a in sys.argv[3:]]
    first = f(*args)
    first = first if isinstance(first, list) else [first]
    for _ in range(2):
        f(*args)
    np.savez(out, *first, *[p.value for p in f.parameters])
    print(repr(str(f.graph)), repr(f.source), repr([str(k) for k in f.kernels]),
          f.stats.get("cache"), f.stats.get("compiled"), sep="\\n")
"""


def test_a_fresh_process_loads_and_runs_it_without_the_building_code(tmp_path):
    # the fresh process imports only staticgrad: no code of this test module, where the
    # graph was built (its custom_vjp included)
    f, args = mlp()
    f(*args)                                     # compiled here: the disk cache is warm
    path = tmp_path / "step.sgz"
    sg.save(f, path)
    arg_files = []
    for k, a in enumerate(args):
        arg_files.append(tmp_path / f"arg{k}.npy")
        np.save(arg_files[-1], a)
    env = dict(os.environ, STATICGRAD_CACHE_DIR=cache.cache_dir(),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(LOADER), str(path),
                           str(tmp_path / "out.npz"), *map(str, arg_files)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    graph, source, kernels, hit, compiled = done.stdout.strip().split("\n")
    assert eval(graph) == str(f.graph) and eval(source) == f.source
    assert eval(kernels) == [str(k) for k in f.kernels]
    assert (hit, compiled) == ("hit", "0")       # loaded from the warm cache: no compile
    # the same first results and the same parameters after three steps, bit for bit
    first = f(*args)
    for _ in range(2):
        f(*args)
    with np.load(tmp_path / "out.npz") as out:
        got = [out[f"arr_{k}"] for k in range(len(out.files))]
    want = [*first, *[p.value for p in f.parameters]]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
