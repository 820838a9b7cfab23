"""staticgrad's start-up in a fresh process: cold (empty disk cache) and warm (cache filled).

The parent runs ``python -m bench.startup W2 numba [--quick]`` twice with the same fresh
``STATICGRAD_CACHE_DIR`` (and ``NUMBA_CACHE_DIR``): the first process compiles and fills the
cache, the second should only load. Each prints one JSON line: import, build (graph +
``sg.function``) and first-call seconds. With ``STATICGRAD_TIERED=1`` set, the first
result comes from the NumPy reference while the kernels compile in the background;
``compiled_s`` is then the time from the build to the first compiled result.

Python's bytecode cache is on for both, whatever ``PYTHONDONTWRITEBYTECODE`` says here: an
installed package has its ``.pyc`` files, and without them every process compiled
staticgrad's own modules again (0.17 s of W1's warm start on the machine that set it). "Cold"
means an empty kernel cache, not a fresh install.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(workload: str, backend: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    import staticgrad  # noqa: F401  (timed: the import is part of a fresh start)
    t1 = time.perf_counter()
    from bench.systems import staticgrad_graph
    from bench.workloads import WORKLOADS
    data = WORKLOADS[workload].make_data(quick)
    t2 = time.perf_counter()
    runner = staticgrad_graph.BUILDERS[workload](data, backend=backend)
    t3 = time.perf_counter()
    runner.call()
    t4 = time.perf_counter()
    times = {"import_s": t1 - t0, "build_s": t3 - t2, "first_call_s": t4 - t3, "load_s": t4 - t2}
    if os.environ.get("STATICGRAD_TIERED") == "1":
        from staticgrad.backends.tiered import BACKGROUND
        BACKGROUND.drain()     # every kernel compiled (or loaded)
        runner.call()
        times["compiled_s"] = time.perf_counter() - t2
    return times


def run_fresh(workload: str, backend: str, quick: bool, env: dict) -> dict:
    """One fresh process; its timings, or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "bench.startup", workload, backend] + (["--quick"] if quick
                                                                          else [])
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        return {"error": f"exit {done.returncode}: {lines[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_and_warm(workload: str, backend: str, quick: bool) -> dict:
    """Cold then warm start of one workload's staticgrad function, in fresh processes; for
    the numba backend, also tiered (``"tiered cold"``, ``"tiered warm"``)."""
    starts = {}
    for tiered in (False, True) if backend == "numba" else (False,):
        with tempfile.TemporaryDirectory(prefix="staticgrad-bench-cache-") as cache:
            path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p)
            env = dict(os.environ, STATICGRAD_CACHE_DIR=cache, PYTHONPATH=path,
                       NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
                       STATICGRAD_TIERED="1" if tiered else "0")
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            prefix = "tiered " if tiered else ""
            cold = run_fresh(workload, backend, quick, env)
            warm = run_fresh(workload, backend, quick, env) if "error" not in cold else cold
            starts.update({prefix + "cold": cold, prefix + "warm": warm})
    return starts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("backend", choices=["numba", "numpy"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.workload, args.backend, args.quick)))


if __name__ == "__main__":
    main()
