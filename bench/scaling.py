"""How each stage's cost grows with the graph: ``python -m bench.scaling``.

Builds the unrolled tanh RNN of W7 (batch 16, 8 inputs, hidden 32) for T steps, so the graph
grows linearly in T, and times each stage on its own: build, ``sg.grad``, the rewrites, the
schedule, rendering every kernel, and the distinct kernel count (what a cold compile pays for).
Nothing is compiled, so this isolates the passes; ``W7`` in ``bench.workloads``-style runs
compile and time steps. Prints a Markdown table; ratios between rows are what matter.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402

import staticgrad as sg  # noqa: E402
from staticgrad import rewrite  # noqa: E402
from staticgrad.backends.numba.render import distinct, render_kernel  # noqa: E402
from staticgrad.graph import Graph  # noqa: E402
from staticgrad.schedule import schedule  # noqa: E402


def rnn(T: int, batch: int = 16, inputs: int = 8, hidden: int = 32):
    """``h = tanh(x[:, t, :] @ Wx + h @ Wh)`` for T steps; loss = mean of the last h**2."""
    rng = np.random.default_rng(0)
    x = sg.placeholder((batch, T, inputs), np.float32, name="x")
    wx = sg.parameter(rng.standard_normal((inputs, hidden)).astype(np.float32) * 0.3, name="Wx")
    wh = sg.parameter(rng.standard_normal((hidden, hidden)).astype(np.float32) * 0.3, name="Wh")
    h = sg.constant(np.zeros((batch, hidden), np.float32))
    for t in range(T):
        h = sg.tanh(x[:, t, :] @ wx + h @ wh)
    loss = sg.mean(h ** 2)
    return x, (wx, wh), loss


def stages(T: int) -> dict:
    row: dict = {"T": T}
    clock = time.perf_counter()
    x, params, loss = rnn(T)
    row["build"] = time.perf_counter() - clock
    clock = time.perf_counter()
    grads = sg.grad(loss, list(params))
    row["grad"] = time.perf_counter() - clock
    targets = [loss, *grads]
    row["nodes"] = len(Graph(targets).nodes)
    clock = time.perf_counter()
    simplified, _ = rewrite.simplify(targets)
    row["rewrite"] = time.perf_counter() - clock
    clock = time.perf_counter()
    sched = schedule(simplified)
    row["schedule"] = time.perf_counter() - clock
    clock = time.perf_counter()
    codes = [render_kernel(k, sched.roots, sched.locals) for k in sched.kernels]
    row["render"] = time.perf_counter() - clock
    clock = time.perf_counter()
    str(Graph(simplified))
    row["listing"] = time.perf_counter() - clock
    row["kernels"] = len(codes)
    row["distinct"] = distinct(codes)
    return row


def main(argv: list[str] | None = None) -> None:
    steps = [int(a) for a in (argv or sys.argv[1:])] or [10, 100, 1000]
    rows = [stages(T) for T in steps]
    cols = ["T", "nodes", "build", "grad", "rewrite", "schedule", "render", "listing",
            "kernels", "distinct"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f} s" if isinstance(r[c], float) else str(r[c])
                                for c in cols) + " |")


if __name__ == "__main__":
    main()
