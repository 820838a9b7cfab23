"""``python -m bench`` / ``python bench/run.py``: staticgrad against its peers and the floor.

Each system runs in a process of its own (``--isolate``, the default for full runs), as in a
user's program: its thread pools start with its own settings, and no other library's idle or
spinning threads share the cores (in one process, PyTorch's OpenMP pool, started first, made
staticgrad's W9 step 2.6 -> 3.9 ms). There, for each workload, it is built, checked against the
float64 reference, then timed. Quick runs keep every system in this process (``--no-isolate``).
The hardware floor is measured in the same run, before and after the workloads (the best of
the two counts, so a burst of other work on a shared machine does not lower the floor).
Writes Markdown, JSON and a PNG chart to ``--out`` and prints the Markdown.

    python -m bench --quick                      # smoke run, well under a minute
    python -m bench --workload W2,W3 --systems numpy,torch,staticgrad
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `bench` from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from bench import floor, report, startup, timing  # noqa: E402
from bench.systems import SYSTEMS, Skipped, System, select  # noqa: E402
from bench.workloads import WORKLOADS, Workload, compare  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny sizes, few repeats (numbers not meaningful)")
    parser.add_argument("--workload", "--workloads", default="",
                        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    parser.add_argument("--systems", default="",
                        help=f"comma-separated subset of {','.join(s.name for s in SYSTEMS)}; "
                             "'pytensor' or 'staticgrad' select all their variants; numpy is "
                             "always included (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="directory for bench[-quick].md/.json/.png (default: bench/results)")
    parser.add_argument("--readme", action="store_true",
                        help="also put the tables and chart into README.md (full runs only)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each system in a process of its own (default: on for full runs, "
                             "off for --quick)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one system's rows
    args = parser.parse_args(argv)
    if args.readme and args.quick:
        parser.error("--readme publishes numbers: not with --quick")
    names = [w.strip().upper() for w in args.workload.split(",") if w.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(WORKLOADS)}")
    args.workloads = [WORKLOADS[n] for n in names] if names else list(WORKLOADS.values())
    try:
        args.selected = select([s.strip() for s in args.systems.split(",") if s.strip()])
    except ValueError as err:
        parser.error(str(err))
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".strip()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        models = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
        kib = next(int(line.split()[1]) for line in open("/proc/meminfo")
                   if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        kib = 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "NUMBA_NUM_THREADS", "XLA_FLAGS") if k in os.environ}
    return {"cpu": cpu, "cores": cores, "memory_gb": kib / 2 ** 20, "load_start": load_average(),
            "platform": platform.platform(), "python": platform.python_version(), "env": env}


def load_average() -> float:
    """The 1-minute load average: how much else was running (``nan`` where unknown)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def setup(system: System) -> tuple[str, object]:
    """``("ok", info)`` or ``(status, reason)``: import and configure one system, once."""
    try:
        module = system.load()
        return "ok", module.setup(**system.options)
    except Skipped as err:
        return "skipped", str(err)
    except ImportError as err:
        return "missing", reason(err)
    except Exception as err:  # a peer that breaks on import is reported, not fatal
        return "failed", reason(err)


def bench_one(system: System, workload: Workload, data: dict, reference: list,
              settings: timing.Settings, quick: bool) -> dict:
    """Build, check and time one system on one workload: one row of the table."""
    row = {"system": system.name, "label": system.label}
    builder = system.load().BUILDERS.get(workload.name)
    if builder is None:
        return dict(row, status="not written", reason=f"no {workload.name} builder")
    try:
        runner, row["build_s"] = timing.timed(lambda: builder(data, **system.options))
        outputs, row["first_call_s"] = timing.timed(runner.check)
    except Exception as err:
        return dict(row, status="failed", reason=reason(err))
    row["compile_s"] = row["build_s"] + row["first_call_s"]
    row["info"] = runner.info
    ok, row["check"] = compare(workload, outputs, reference)
    if not ok:
        bad = [c for c in row["check"] if not c["ok"]]
        return dict(row, status="wrong", reason="; ".join(
            f"{c['name']}: " + (c["error"] if isinstance(c["error"], str)
                                else f"error {c['error']:.2g} > {c['tol']:.0e}") for c in bad))
    try:
        number = settings.steps if workload.fixed_calls else None
        row["timing"] = timing.measure(runner.call, settings, number).to_dict()
    except Exception as err:
        return dict(row, status="failed", reason="while timing: " + reason(err))
    if runner.after is not None:
        row["info"] = dict(row["info"], **runner.after())
    if system.module == "staticgrad_graph" and (settings.startup_all or workload.name == "W3"):
        row["startup"] = startup.cold_and_warm(workload.name, system.options["backend"], quick)
    return dict(row, status="ok")


def bench_row(system: System, workload: Workload, data: dict, reference: list, setup_: tuple,
              settings: timing.Settings, quick: bool) -> dict:
    """One system's row of one workload, logged as it is made."""
    status, info = setup_
    if status != "ok":
        row = {"system": system.name, "label": system.label, "status": status, "reason": info}
    else:
        row = bench_one(system, workload, data, reference, settings, quick)
        time.sleep(settings.pause_s)
    log(f"  {workload.name} {system.name:17s} {row['status']:8s} "
        + (report.fmt_time(row["timing"]["median_s"]) if row["status"] == "ok"
           else row.get("reason", "")))
    return row


def workload_result(workload: Workload, data: dict) -> dict:
    return {"name": workload.name, "title": workload.title,
            "description": workload.describe(data), "traffic": workload.traffic(data),
            "rows": []}


def bench_workload(workload: Workload, systems: list[System], setups: dict,
                   settings: timing.Settings, quick: bool) -> dict:
    """Every system on one workload, in this process."""
    data = workload.make_data(quick)
    reference = workload.reference(data)
    result = workload_result(workload, data)
    for system in systems:
        result["rows"].append(bench_row(system, workload, data, reference,
                                        setups[system.name], settings, quick))
    return result


def child(args: argparse.Namespace, settings: timing.Settings) -> int:
    """``--child SYSTEM``: set up one system, run every workload, print one JSON line."""
    system = next(s for s in SYSTEMS if s.name == args.child)
    setup_ = setup(system)
    rows = {}
    for workload in args.workloads:
        data = workload.make_data(args.quick)
        rows[workload.name] = bench_row(system, workload, data, workload.reference(data),
                                        setup_, settings, args.quick)
    print(json.dumps({"setup": setup_, "rows": rows}, default=str))
    return 0


def isolated(system: System, args: argparse.Namespace) -> dict:
    """``child`` in a fresh process: ``{"setup": (status, info), "rows": {workload: row}}``;
    a child that dies gives failed rows saying how."""
    cmd = [sys.executable, "-m", "bench", "--child", system.name, "--no-isolate",
           "--workload", ",".join(w.name for w in args.workloads)] + \
        (["--quick"] if args.quick else [])
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [root, os.environ.get("PYTHONPATH")] if p))
    try:
        done = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=3600)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
        why = f"its process exited with {done.returncode}"
    except subprocess.TimeoutExpired:
        why = "its process took more than an hour"
    failed = {"system": system.name, "label": system.label, "status": "failed", "reason": why}
    return {"setup": ("failed", why), "rows": {w.name: failed for w in args.workloads}}


def add_ratios(result: dict, hardware: dict) -> None:
    """Each timed row as a multiple of NumPy's median and of the workload's floor."""
    result["floor"] = floor.workload_floor(*result.pop("traffic"), hardware)
    base = next((r for r in result["rows"] if r["system"] == "numpy" and r["status"] == "ok"),
                None)
    for row in result["rows"]:
        if row["status"] == "ok":
            median = row["timing"]["median_s"]
            row["ratio_numpy"] = median / base["timing"]["median_s"] if base else None
            row["ratio_floor"] = median / result["floor"]["seconds"]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = timing.QUICK if args.quick else timing.FULL
    if args.child:
        return child(args, settings)
    isolate = not args.quick if args.isolate is None else args.isolate
    if not isolate:
        # the systems first: each library starts its thread pools with the settings it would
        # have in a user's process (staticgrad's Numba workers sleep between loops, set on its
        # import; the floor's Numba triad, run first, would start them spinning)
        setups = {s.name: setup(s) for s in args.selected}
    log(f"bench ({'quick' if args.quick else 'full'}): measuring the hardware floor")
    before = floor.measure(settings.floor_scale)
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "mode": "quick" if args.quick else "full", "machine": machine(),
              "settings": dict(settings.to_dict(), isolated=isolate), "workloads": []}
    if isolate:
        runs = {}
        for system in args.selected:
            log(f"{system.name}, in a process of its own")
            runs[system.name] = isolated(system, args)
        setups = {name: tuple(run["setup"]) for name, run in runs.items()}
        for workload in args.workloads:
            entry = workload_result(workload, workload.make_data(args.quick))
            entry["rows"] = [runs[s.name]["rows"][workload.name] for s in args.selected]
            result["workloads"].append(entry)
    else:
        for workload in args.workloads:
            log(f"{workload.name}: {workload.title}")
            result["workloads"].append(
                bench_workload(workload, args.selected, setups, settings, args.quick))
    result["systems"] = {name: info if status == "ok" else f"{status}: {info}"
                         for name, (status, info) in setups.items()}
    log("measuring the hardware floor again")
    result["hardware"] = floor.best(before, floor.measure(settings.floor_scale))
    for entry in result["workloads"]:
        add_ratios(entry, result["hardware"])
    result["machine"]["load_end"] = load_average()
    paths = report.write(result, args.out, "bench-quick" if args.quick else "bench")
    if args.readme:
        report.update_readme(result, README, paths.get("png"))
        paths["readme"] = README
    print(report.markdown(result))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
