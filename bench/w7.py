"""W7, an unrolled tanh RNN: compile cost against sequence length, and time per training step.

``python -m bench.w7 [T ...]`` (default 10 50 200 1000). The model: batch 16, 8 inputs, hidden
32, ``h = tanh(x[:, t, :] @ Wx + h @ Wh)`` for T steps, loss = mean of the last ``h**2``,
gradients with respect to Wx and Wh (float32). For each system and T, in fresh processes:

- ``cold``: build + compile + first step with an empty cache (staticgrad: its own cache folder);
- ``warm``: the same in a second process (staticgrad loads its kernels from the disk cache;
  JAX and PyTorch have no persistent cache here, so warm = cold for them);
- ``step``: the median time of one training step (loss and both gradients) after warm-up.

Systems: staticgrad unrolled and with ``sg.scan`` (numba backend), JAX jit of the unrolled
Python loop, JAX ``lax.scan``, PyTorch eager. Prints a Markdown table (one run, this machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH, INPUTS, HIDDEN = 16, 8, 32

COMMON = """
import time, statistics, json, sys
import numpy as np
T = int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((16, T, 8)).astype(np.float32)
WX = (0.3 * rng.standard_normal((8, 32))).astype(np.float32)
WH = (0.3 * rng.standard_normal((32, 32))).astype(np.float32)
def report(start, step, check):
    first = time.perf_counter() - start
    times = []
    for _ in range(max(5, min(200, int(0.5 / max(first / 50, 1e-5))))):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    print(json.dumps({"first": first, "step": statistics.median(times),
                      "loss": float(check())}))
"""

SYSTEMS = {
    "staticgrad unrolled": """
start = time.perf_counter()
import staticgrad as sg
x = sg.placeholder((16, T, 8), np.float32, name="x")
wx, wh = sg.parameter(WX, name="Wx"), sg.parameter(WH, name="Wh")
h = sg.constant(np.zeros((16, 32), np.float32))
for t in range(T):
    h = sg.tanh(x[:, t, :] @ wx + h @ wh)
loss = sg.mean(h ** 2)
f = sg.function([x], [loss, *sg.grad(loss, [wx, wh])])
f(X)
report(start, lambda: f(X), lambda: f(X)[0])
""",
    "staticgrad sg.scan": """
start = time.perf_counter()
import staticgrad as sg
x = sg.placeholder((16, T, 8), np.float32, name="x")
wx, wh = sg.parameter(WX, name="Wx"), sg.parameter(WH, name="Wh")
h0 = sg.constant(np.zeros((16, 32), np.float32))
h, _ = sg.scan(lambda h, xt: (sg.tanh(xt @ wx + h @ wh), None), h0, sg.transpose(x, (1, 0, 2)))
loss = sg.mean(h ** 2)
f = sg.function([x], [loss, *sg.grad(loss, [wx, wh])])
f(X)
report(start, lambda: f(X), lambda: f(X)[0])
""",
    "JAX jit, unrolled": """
start = time.perf_counter()
import jax, jax.numpy as jnp
def loss(wx, wh, x):
    h = jnp.zeros((16, 32), jnp.float32)
    for t in range(T):
        h = jnp.tanh(x[:, t, :] @ wx + h @ wh)
    return jnp.mean(h ** 2)
g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
args = [jnp.asarray(a) for a in (WX, WH, X)]
jax.block_until_ready(g(*args))
report(start, lambda: jax.block_until_ready(g(*args)), lambda: g(*args)[0])
""",
    "JAX jit, lax.scan": """
start = time.perf_counter()
import jax, jax.numpy as jnp
def loss(wx, wh, x):
    def body(h, xt):
        return jnp.tanh(xt @ wx + h @ wh), None
    h, _ = jax.lax.scan(body, jnp.zeros((16, 32), jnp.float32), jnp.swapaxes(x, 0, 1))
    return jnp.mean(h ** 2)
g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
args = [jnp.asarray(a) for a in (WX, WH, X)]
jax.block_until_ready(g(*args))
report(start, lambda: jax.block_until_ready(g(*args)), lambda: g(*args)[0])
""",
    "PyTorch eager": """
start = time.perf_counter()
import torch
torch.set_num_threads(2)
wx = torch.tensor(WX, requires_grad=True); wh = torch.tensor(WH, requires_grad=True)
x = torch.tensor(X)
def step():
    wx.grad = wh.grad = None
    h = torch.zeros(16, 32)
    for t in range(T):
        h = torch.tanh(x[:, t, :] @ wx + h @ wh)
    loss = (h ** 2).mean()
    loss.backward()
    return loss
step()
report(start, step, lambda: step().detach())
""",
}


def run(system: str, T: int, cache: str) -> dict:
    env = dict(os.environ, STATICGRAD_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    code = textwrap.dedent(COMMON) + textwrap.dedent(SYSTEMS[system])
    clock = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(T)], env=env, capture_output=True,
                          text=True, timeout=3600)
    wall = time.perf_counter() - clock
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["wall"] = wall   # the whole process: interpreter and imports too
    return out


def fmt(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.w7 [T ...] [--out FOLDER]``: the table, and with ``--out`` its rows as
    ``w7.json`` and a log-log plot of cold and warm start against T as ``w7.png``."""
    args = list(argv if argv is not None else sys.argv[1:])
    out = None
    if "--out" in args:
        at = args.index("--out")
        out = Path(args[at + 1])
        del args[at:at + 2]
    lengths = [int(a) for a in args] or [10, 50, 200, 1000]
    print("| system | T | cold (process) | warm (process) | step | loss |")
    print("|---|---|---|---|---|---|")
    rows = []
    for system in SYSTEMS:
        for T in lengths:
            with tempfile.TemporaryDirectory() as cache:
                cold = run(system, T, cache)
                warm = run(system, T, cache)
            if "error" in cold or "error" in warm:
                print(f"| {system} | {T} | {cold.get('error') or warm.get('error')} | | | |")
                continue
            rows.append({"system": system, "T": T, "cold": cold["wall"], "warm": warm["wall"],
                         "step": warm["step"], "loss": warm["loss"]})
            print(f"| {system} | {T} | {fmt(cold['wall'])} | {fmt(warm['wall'])} | "
                  f"{fmt(warm['step'])} | {warm['loss']:.6g} |", flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "w7.json").write_text(json.dumps(rows, indent=1))
        plot(rows, out / "w7.png")


def plot(rows: list, path: Path) -> None:
    """Cold and warm start (whole process) against T, log-log, one colour per system."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in zip(axes, ("cold", "warm"), ("cold start (empty cache)",
                                                       "warm start (second process)")):
        for system in SYSTEMS:
            mine = [r for r in rows if r["system"] == system]
            if mine:
                ax.loglog([r["T"] for r in mine], [r[key] for r in mine], "o-", label=system)
        ax.set_xlabel("sequence length T (unrolled steps)")
        ax.set_title(f"W7 {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds to the first result (fresh process)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
