"""Memory over a long run: W1's training step called many times, and ``sg.function`` built
on fresh graphs many times, in one process. ``python -m bench.memory`` runs the issue's load
(100,000 calls, 2,000 builds) and prints the resident memory at the start and the end of
each; ``tests/test_memory.py`` runs fewer with a bound on the growth per call.

A fresh graph here has the same structure each time (new placeholders, parameters and
values), which is what a script building a model per run or per hyper-parameter does: the
kernels are compiled once and found again by their text. A structurally new kernel is
machine code Numba keeps for the life of the process (about 1.5 MB each, measured): that
is Numba's, and is not what this measures.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "memory.md"


def rss_mib() -> float:
    """Resident memory of this process, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


def w1_step(quick: bool = False):
    """W1 (the PyTorch tutorial's MLP, one SGD step per call) as bench/ builds it, on its
    inputs (``quick``: its small sizes)."""
    from bench.systems.staticgrad_graph import w1
    from bench.workloads import WORKLOADS
    data = WORKLOADS["W1"].make_data(quick)
    runner = w1(data, backend="numba")
    return runner.call


def fresh_function(k: int):
    """A new graph (new leaves, new values) of one structure, compiled and called once."""
    import staticgrad as sg
    rng = np.random.default_rng(k)
    x = sg.placeholder((None, 16), np.float32, name="x")
    y = sg.placeholder((None, 4), np.float32, name="y")
    w = sg.parameter(rng.standard_normal((16, 4)).astype(np.float32), name="w")
    loss = sg.mean((sg.tanh(x @ w) - y) ** 2)
    f = sg.function([x, y], loss, updates=sg.optim.sgd(loss, [w], lr=0.1))
    f(rng.standard_normal((8, 16)).astype(np.float32), np.zeros((8, 4), np.float32))
    return f


def calls(count: int, warmup: int = 500, quick: bool = False) -> dict:
    """RSS before and after ``count`` calls of W1's step (after ``warmup`` calls)."""
    step = w1_step(quick)
    for _ in range(warmup):
        step()
    gc.collect()
    start, t0 = rss_mib(), time.perf_counter()
    for _ in range(count):
        step()
    gc.collect()
    return {"calls": count, "rss_start_mib": start, "rss_end_mib": rss_mib(),
            "seconds": time.perf_counter() - t0}


def builds(count: int, warmup: int = 20) -> dict:
    """RSS and live interned nodes before and after ``count`` builds of fresh graphs."""
    from staticgrad import tensor
    for k in range(warmup):
        fresh_function(k)
    gc.collect()
    start, nodes, t0 = rss_mib(), len(tensor._interned), time.perf_counter()
    for k in range(count):
        fresh_function(warmup + k)
    gc.collect()
    return {"builds": count, "rss_start_mib": start, "rss_end_mib": rss_mib(),
            "interned_start": nodes, "interned_end": len(tensor._interned),
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--builds", type=int, default=2_000)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    ran = [calls(args.calls), builds(args.builds)]
    rows = [f"| {r.get('calls', r.get('builds')):,} {'calls of W1' if 'calls' in r else 'builds'}"
            f" | {r['rss_start_mib']:.1f} MiB | {r['rss_end_mib']:.1f} MiB | "
            f"{r['rss_end_mib'] - r['rss_start_mib']:+.1f} MiB | {r['seconds']:.0f} s |"
            for r in ran]
    text = "\n".join([
        "# Memory over a long run (`python -m bench.memory`)", "",
        "| load | RSS at the start | RSS at the end | growth | time |", "|---|---|---|---|---|",
        *rows, "",
        f"Interned nodes alive before and after the builds: {ran[1]['interned_start']} and "
        f"{ran[1]['interned_end']}. Load average {os.getloadavg()[0]:.2f} at the end.", ""])
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
