"""A cold first call compiles its new kernels on every core: a share here, the rest in worker
processes that leave the machine code in the disk cache, which the call then loads. Each case
runs in a fresh process with an empty cache (a process that compiled a kernel once never
compiles it again)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from staticgrad.backends.numba import workers

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, subprocess, sys
import numpy as np
import staticgrad as sg
from staticgrad.backends.numba import workers
workers.STARTUP = 0                  # a share for a worker, however little there is
if sys.argv[1] == "refuse":          # no process can be started
    def refuse(*args, **kwargs):
        raise OSError("no processes here")
    subprocess.Popen = refuse
    workers.os.fork = refuse
if sys.argv[1] == "spawn":           # fresh interpreters, as where there is no fork
    workers.can_fork = lambda: False
x = sg.placeholder((None, 6), name="x")
w = sg.parameter(np.linspace(-1, 1, 24).reshape(6, 4), name="w")
v = sg.parameter(np.linspace(1, 2, 8).reshape(4, 2), name="v")
loss = sg.sum(sg.exp(-(sg.tanh(x @ w) @ v) ** 2))
outputs = [loss, *sg.grad(loss, [w, v])]
f = sg.function([x], outputs, tiered=sys.argv[1] == "tiered")
a = np.random.default_rng(0).standard_normal((5, 6))
f(a)
assert f.wait_compiled(300)          # a tiered function compiles on its background thread
ok = all(np.allclose(g, r, rtol=1e-12, atol=0) for g, r in
         zip(f(a), sg.function([x], outputs, backend="numpy")(a)))
print(json.dumps({"ok": ok, **{k: f.stats.get(k) for k in ("workers", "compiled", "loaded")}}))
"""


def cold_run(tmp_path: Path, how: str, count: str) -> dict:
    env = dict(os.environ, STATICGRAD_CACHE_DIR=str(tmp_path), STATICGRAD_COMPILE_WORKERS=count,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), how], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("how", ["normal", "spawn", "tiered"])
def test_workers_compile_a_share_that_the_call_loads(tmp_path, how):
    # normal: forks of this process on Linux, fresh interpreters elsewhere; tiered: forked
    # from the background thread, whose job the child must not run again
    stats = cold_run(tmp_path, how, "2")
    assert stats["ok"] and stats["workers"] == 2
    assert stats["loaded"] >= 1 and stats["compiled"] >= 1   # the worker's, and this process's


def test_no_workers_when_switched_off(tmp_path):
    stats = cold_run(tmp_path, "normal", "0")
    assert stats["ok"] and stats["workers"] == 0 and stats["loaded"] == 0


def test_a_worker_that_cannot_start_changes_nothing(tmp_path):
    stats = cold_run(tmp_path, "refuse", "2")
    assert stats["ok"] and stats["loaded"] == 0 and stats["compiled"] >= workers.MIN_JOBS


def test_how_many_workers(monkeypatch):
    monkeypatch.setenv("STATICGRAD_COMPILE_WORKERS", "4")
    assert workers.worker_count(workers.MIN_JOBS - 1) == 0 and workers.worker_count(9) == 4
    monkeypatch.setenv("STATICGRAD_COMPILE_WORKERS", "1")
    assert workers.worker_count(9) == 0
    monkeypatch.delenv("STATICGRAD_COMPILE_WORKERS")
    assert workers.worker_count(9) == min(9, os.cpu_count() or 1) or (os.cpu_count() or 1) < 2


KERNEL = """
import numba, numpy as np
from staticgrad.backends.numba import mathlib

@numba.njit
def kernel(x0, x1, part0, n0):
    for i in range(n0):
        x0[i] = mathlib.{name}(x1[i])
        part0[0] += x0[i]
"""


def kernel_job(tmp_path: Path, name: str, dtype) -> tuple:
    """A generated-looking kernel calling ``mathlib.<name>`` and its argument types (the
    graph's arrays of ``dtype``, float64 partials)."""
    from numba import typeof
    path = tmp_path / f"kernel_{name}_{np.dtype(dtype).name}.py"
    path.write_text(KERNEL.format(name=name))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = np.zeros(3, dtype)
    return module.kernel, tuple(typeof(v) for v in (a, a, np.zeros(1), 3))


def test_each_math_kernel_two_shares_call_is_compiled_first_by_one_of_them(tmp_path):
    from numba import types

    from staticgrad.backends.numba import mathlib
    exp32, log32 = (kernel_job(tmp_path, name, np.float32) for name in ("exp", "log"))
    exp64 = kernel_job(tmp_path, "exp", np.float64)
    # the values' type, not the float64 partials'
    assert workers.math_calls(exp32) == {(mathlib.exp32, (types.float32,))}
    assert workers.math_calls(exp64) == {(mathlib.exp64, (types.float64,))}
    shares = [[exp32], [exp32, log32], [exp64]]
    firsts = workers.math_first(shares)
    assert firsts == [[(mathlib.exp32, (types.float32,))], [(mathlib.log32, (types.float32,))],
                      [(mathlib.exp64, (types.float64,))]]
