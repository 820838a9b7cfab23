"""bench/: the float64 reference is right, and ``python -m bench --quick`` runs and checks out.

No timing assertions: only that the runs complete, the outputs are written, and the
correctness checks pass for NumPy and staticgrad. Peers (torch, jax, pytensor, matplotlib) are
optional: a second run hides them to show the harness reports them as missing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import staticgrad as sg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.run import parse  # noqa: E402
from bench.systems import numpy_hand as hand  # noqa: E402
from bench.systems import select  # noqa: E402
from bench.workloads import LAYER_NORM_EPS, WORKLOADS, compare  # noqa: E402

PEERS = ["torch", "jax", "pytensor", "matplotlib"]


# --- the reference: hand-written float64 gradients against finite differences ---------------

def check_gradient(loss, arrays: dict, name: str, grad: np.ndarray, samples: int = 6) -> None:
    """Central differences of ``loss(**arrays)`` wrt a few entries of ``arrays[name]``."""
    rng = np.random.default_rng(0)
    flat = arrays[name].reshape(-1)   # a view: nudging it nudges the array
    for k in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
        eps = 1e-6 * max(1.0, abs(flat[k]))
        old = flat[k]
        flat[k] = old + eps
        hi = loss(**arrays)
        flat[k] = old - eps
        lo = loss(**arrays)
        flat[k] = old
        numeric = (hi - lo) / (2 * eps)
        scale = max(1.0, np.abs(grad).max())
        assert abs(grad.reshape(-1)[k] - numeric) <= 1e-6 * scale, (name, k, numeric)


def f64(name: str) -> dict:
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v
            for k, v in WORKLOADS[name].make_data(True).items()}


def test_reference_mlp_gradients():
    d = f64("W1")
    loss = lambda x, y, w1, w2: np.sum((np.maximum(x @ w1, 0) @ w2 - y) ** 2)
    value, g1, g2 = hand.mlp_loss_and_grads(**d)
    assert value == pytest.approx(loss(**d))
    check_gradient(loss, d, "w1", g1)
    check_gradient(loss, d, "w2", g2)


def test_reference_elementwise_gradients():
    d = f64("W2")
    loss = lambda x, w: np.sum(np.tanh(x * w + 1) ** 2 * np.exp(-x * x))
    value, gx, gw = hand.elementwise_loss_and_grads(**d)
    assert value == pytest.approx(loss(**d))
    check_gradient(loss, d, "x", gx)
    check_gradient(loss, d, "w", gw)


def test_reference_tiny_graph():
    assert hand.tiny_graph(2.0, 1.0) == (6.0, 2.0, 5.0)  # the PyTorch tutorial's numbers


def test_reference_hessian_vector_product():
    d = f64("W4")
    x, v, h = d["x"], d["v"], 1e-4
    phi = lambda t: np.sin(t) * t ** 3        # f is a sum of phi(x_i): its Hessian is diagonal
    second = (phi(x + h) - 2 * phi(x) + phi(x - h)) / h ** 2
    np.testing.assert_allclose(hand.hessian_vector_product(x, v), second * v,
                               rtol=1e-5, atol=1e-5)


def test_reference_softmax_regression_gradients():
    d = f64("W5")

    def loss(X, labels, W, b):
        z = X @ W + b
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -np.mean(log_p[np.arange(len(labels)), labels])

    value, gW, gb = hand.softmax_regression(**d)
    assert value == pytest.approx(loss(**d))
    check_gradient(loss, d, "W", gW)
    check_gradient(loss, d, "b", gb)


def test_reference_layer_norm_gradients():
    d = f64("W6")

    def loss(x, gamma, beta, R):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return np.sum(((x - mu) / np.sqrt(var + LAYER_NORM_EPS) * gamma + beta) * R)

    value, gx, ggamma, gbeta = hand.layer_norm(**d, eps=LAYER_NORM_EPS)
    assert value == pytest.approx(loss(**d))
    for name, g in [("x", gx), ("gamma", ggamma), ("beta", gbeta)]:
        check_gradient(loss, d, name, g)


def test_reference_digits_cnn_gradients():
    d = f64("W9")
    names = hand.CNN_INPUTS[2:]
    loss = lambda **a: hand.digits_cnn(*(a[k] for k in hand.CNN_INPUTS))[0]
    value, *grads = hand.digits_cnn(*(d[k] for k in hand.CNN_INPUTS))
    assert value == pytest.approx(loss(**d))
    for name, g in zip(names, grads):
        check_gradient(loss, d, name, g)


def test_compare_flags_wrong_outputs():
    w = WORKLOADS["W2"]
    ref = [np.float64(1.0), np.ones(3), np.ones(3)]
    assert compare(w, [np.float32(1.0), np.ones(3, np.float32), np.ones(3)], ref)[0]
    ok, report = compare(w, [np.float32(1.0), np.ones(3), 1.01 * np.ones(3)], ref)
    assert not ok and [r["ok"] for r in report] == [True, True, False]
    assert not compare(w, [np.float32(np.nan), np.ones(3), np.ones(3)], ref)[0]
    assert not compare(w, [np.float32(1.0), np.ones(4), np.ones(3)], ref)[0]


# --- the command line ------------------------------------------------------------------------

def test_selection():
    assert [s.name for s in select(["torch"])] == ["numpy", "torch"]
    assert [s.name for s in select(["staticgrad"])] == ["numpy", "staticgrad-numba",
                                                        "staticgrad-numpy"]
    with pytest.raises(ValueError, match="unknown system"):
        select(["tensorflow"])
    assert [w.name for w in parse(["--workload", "w1,W3"]).workloads] == ["W1", "W3"]
    with pytest.raises(SystemExit):
        parse(["--workload", "W42"])


# --- quick runs, end to end ------------------------------------------------------------------

# Run the benchmark in a child process whose imports of the optional peers fail, as on a
# machine without the bench extra installed.
HIDE_PEERS = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)")
sys.meta_path.insert(0, Hide())
from bench.run import main
sys.exit(main(sys.argv[1:]))
"""


def run_bench(out: Path, *args: str, hide: list[str] | None = None) -> tuple[dict, str]:
    prefix = ["-c", HIDE_PEERS.format(names=set(hide))] if hide else ["-m", "bench"]
    done = subprocess.run([sys.executable, *prefix, "--quick", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "bench-quick.json").read_text()), done.stdout


def rows(result: dict, system: str) -> list[dict]:
    return [r for w in result["workloads"] for r in w["rows"] if r["system"] == system]


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def numba_backend_problem() -> str | None:
    """Why ``backend="numba"`` cannot compile even a trivial graph, or ``None`` if it can."""
    try:
        x = sg.placeholder((), name="x")
        sg.function([x], x * 2.0, backend="numba")(1.0)
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


def check_staticgrad_and_numpy(result: dict) -> None:
    for system in ("numpy", "staticgrad-numpy"):
        for row in rows(result, system):
            assert row["status"] == "ok", row
            assert all(c["ok"] for c in row["check"])
    problem = numba_backend_problem()
    for row in rows(result, "staticgrad-numba"):
        if problem is None:
            assert row["status"] == "ok", row
        else:  # the backend is not there yet: the row must say so, not fake a number
            assert row["status"] == "failed" and "timing" not in row, row


def test_quick_run(tmp_path):
    result, stdout = run_bench(tmp_path)
    assert [w["name"] for w in result["workloads"]] == list(WORKLOADS)
    check_staticgrad_and_numpy(result)
    for peer, systems in [("torch", ["torch"]), ("jax", ["jax"]),
                          ("pytensor", ["pytensor", "pytensor-numba", "pytensor-c"])]:
        installed = importable(peer)
        for system in systems:
            for row in rows(result, system):
                # a peer may be missing or fail on this machine; it is never silently wrong
                assert row["status"] != "wrong", row
                assert (row["status"] == "missing") == (not installed), row
    assert result["hardware"]["bandwidth"]["best"] > 0 and result["hardware"]["gemm"]["flops"] > 0
    # how much the threads gained, before and after the workloads, in the record and the text
    before, after = result["hardware"]["cores"]
    assert before["threads"] == after["threads"] >= 1
    assert before["speedup"] > 0 and after["speedup"] > 0
    assert f"{after['speedup']:.2f}x as fast as one" in stdout
    for w in result["workloads"]:
        assert w["floor"]["seconds"] > 0
        assert f"### {w['name']}" in stdout
    assert (tmp_path / "bench-quick.md").read_text().startswith("## staticgrad benchmarks")
    assert (tmp_path / "bench-quick.png").exists() == importable("matplotlib")
    # staticgrad's start-up in fresh processes is measured on W3 in quick mode
    w3 = next(w for w in result["workloads"] if w["name"] == "W3")
    start = next(r for r in w3["rows"] if r["system"] == "staticgrad-numpy")["startup"]
    assert "error" not in start["cold"] and "error" not in start["warm"], start


def test_each_system_can_run_in_a_process_of_its_own(tmp_path):
    # full runs do this by default: no library's threads share the cores with another's
    result, stdout = run_bench(tmp_path, "--isolate", "--workload", "W3,W4",
                               "--systems", "staticgrad")
    assert result["settings"]["isolated"] is True
    assert [w["name"] for w in result["workloads"]] == ["W3", "W4"]
    check_staticgrad_and_numpy(result)
    assert set(result["systems"]) == {"numpy", "staticgrad-numba", "staticgrad-numpy"}
    assert "### W4" in stdout


def test_quick_run_without_peers(tmp_path):
    result, stdout = run_bench(tmp_path, "--workload", "W2,W3", hide=PEERS)
    check_staticgrad_and_numpy(result)
    for system in ("torch", "jax", "pytensor", "pytensor-numba", "pytensor-c"):
        for row in rows(result, system):
            assert row["status"] == "missing" and "hidden by the test" in row["reason"], row
    assert not (tmp_path / "bench-quick.png").exists()
    assert "no chart was written" in (tmp_path / "bench-quick.md").read_text()
    assert "| PyTorch eager | — | missing |" in stdout
    # --readme puts the tables between markers, replacing the previous run's
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nintro\n")
    for _ in range(2):
        report.update_readme(result, readme, None)
    text = readme.read_text()
    assert text.startswith("# project\n\nintro\n") and text.count(report.README_START) == 1
    assert "#### W2: " in text and text.rstrip().endswith(report.README_END)


def test_scaling_times_every_stage_and_counts_distinct_kernels():
    from bench import scaling
    short, longer = scaling.stages(4), scaling.stages(40)
    for row in (short, longer):
        assert {"build", "grad", "rewrite", "schedule", "render", "listing"} <= set(row)
    assert longer["nodes"] > 5 * short["nodes"]
    assert longer["distinct"] <= 16           # the steps repeat the same kernels


def test_w7_runs_the_same_model_in_every_system():
    from bench import w7
    assert set(w7.SYSTEMS) == {"staticgrad unrolled", "staticgrad sg.scan", "JAX jit, unrolled",
                               "JAX jit, lax.scan", "PyTorch eager"}
    result = w7.run("staticgrad sg.scan", 3, str(ROOT / ".staticgrad_cache"))
    reference = w7.run("staticgrad unrolled", 3, str(ROOT / ".staticgrad_cache"))
    assert "error" not in result and abs(result["loss"] - reference["loss"]) < 1e-5


def test_examples_bench_times_the_same_model_in_every_system():
    """``python -m bench.examples``: each example's PyTorch twin starts from the same weights
    and its first loss equals staticgrad's (``measure`` raises otherwise)."""
    torch = pytest.importorskip("torch")
    from bench import examples
    for make in (examples.regression, examples.char_rnn):
        case = make(torch, total_steps=10)
        times = examples.measure(case, steps=2, rounds=1)
        assert set(times) == set(case) - {"name"} and "staticgrad" in times
        assert all(median > 0 and best > 0 for median, best in times.values())


def test_staticgrad_rows_say_whether_the_timed_calls_ran_on_threads():
    # a function with work enough for threads reports the way its calls took (measured)
    from bench import report
    from bench.systems import staticgrad_graph
    from staticgrad.backends.numba import pool
    x = sg.placeholder((None,), name="x")
    f = sg.function([x], sg.sum(sg.tanh(x) * 2.0))
    small = staticgrad_graph.threads_used(f)
    for _ in range(3):
        f(np.ones(1 << 19))
    info = staticgrad_graph.threads_used(f)
    if pool.size() > 1:
        assert small == {} and info["threads"] in (f"{pool.size()} threads", "one thread")
        row = {"status": "ok", "label": "staticgrad", "compile_s": 1.0, "info": info,
               "timing": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 2e-3}}
        assert report.row_cells(row)[-1] == f"calls on {info['threads']}"
    else:
        assert info == {}
