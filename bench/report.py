"""Output of a run: a Markdown table per workload, a JSON file with everything, a PNG chart.

Every number comes from the result dictionary ``run.py`` builds, so the three outputs cannot
disagree. A row that is not timed (missing, failed, wrong, skipped) says why instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def cell(text: str, limit: int = 160) -> str:
    """Text safe inside a Markdown table cell."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def startup_text(startup: dict | None) -> str:
    if not startup:
        return ""
    def shown(kind: str) -> str:
        got = startup[kind]
        if "error" in got:
            return f"{kind} failed ({got['error']})"
        compiled = f" (compiled {fmt_time(got['compiled_s'])})" if "compiled_s" in got else ""
        return f"{kind.split()[-1]} {fmt_time(got['load_s'])}{compiled}"

    text = "; fresh process: " + ", ".join(shown(k) for k in ("cold", "warm"))
    if "tiered cold" in startup:
        text += "; tiered, first result: " + ", ".join(shown(k) for k in ("tiered cold",
                                                                          "tiered warm"))
    return text


def row_cells(row: dict) -> list[str]:
    if row["status"] != "ok":
        return [cell(row["label"]), "—", row["status"], "—", "—", "—",
                cell(row.get("reason", ""))]
    t = row["timing"]
    info = row.get("info", {})
    notes = ", ".join([f"{v} {k}" for k, v in info.items() if k in ("nodes", "kernels") and v]
                      + ([f"calls on {info['threads']}"] if info.get("threads") else []))
    return [cell(row["label"]), fmt_time(row["compile_s"]) + startup_text(row.get("startup")),
            fmt_time(t["median_s"]), f"{fmt_time(t['min_s'])} – {fmt_time(t['max_s'])}",
            fmt_ratio(row.get("ratio_numpy")), fmt_ratio(row.get("ratio_floor")), notes]


HEADER = ["system", "compile / first call", "median", "min – max", "× NumPy", "× floor", "notes"]


def workload_markdown(w: dict, level: int = 3) -> str:
    fl = w["floor"]
    gemm = (f", {fl['flops'] / 1e6:.3g} MFLOP of GEMM take {fmt_time(fl['compute_s'])}"
            if fl["flops"] else "")
    lines = [f"{'#' * level} {w['name']}: {w['description']}", "",
             f"Floor {fmt_time(fl['seconds'])} ({fl['bound']}-bound: {fl['bytes'] / 1e6:.3g} MB "
             f"moved take {fmt_time(fl['memory_s'])}{gemm}). Times are per "
             f"{'training step' if w['name'] == 'W1' else 'call'}.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in w["rows"]]
    return "\n".join(lines)


def markdown(result: dict, level: int = 2) -> str:
    """The whole run as Markdown; ``level`` is the heading level of its title."""
    hw, m = result["hardware"], result["machine"]
    bw = hw["bandwidth"]
    bw_parts = [f"{k} triad {bw[k] / 1e9:.3g} GB/s" for k in ("numba", "numpy") if k in bw]
    lines = [f"{'#' * level} staticgrad benchmarks, {result['date']} ({result['mode']} run)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']:.3g} GiB, "
             f"{m['platform']}, Python {m['python']}; load average {m['load_start']:.2f} at "
             f"the start, {m.get('load_end', float('nan')):.2f} at the end (the machine is "
             f"shared: a load above 0 means other work competed for the cores).", "",
             f"Hardware floor, measured in this run (best of before and after the workloads): "
             f"memory bandwidth "
             f"{bw['best'] / 1e9:.3g} GB/s (best of {', '.join(bw_parts)}); float32 GEMM "
             f"{hw['gemm']['flops'] / 1e9:.3g} GFLOP/s (np.dot, n={hw['gemm']['n']})."
             + cores_sentence(hw.get("cores", [])), "",
             "Threads and versions: " + "; ".join(
                 f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items() if v not in ("", []))
                 for name, info in result["systems"].items() if isinstance(info, dict)), "",
             "Median of many samples after warm-up, min – max across samples; × NumPy and "
             "× floor are ratios of medians measured in this run. staticgrad's cold/warm "
             "figures are graph build + first call in a fresh process with an empty / filled "
             "disk cache; tiered (`tiered=True`): build + first result, which the NumPy "
             "reference gives while the kernels compile in the background, and in brackets "
             "build + first compiled result.", ""]
    for w in result["workloads"]:
        lines += [workload_markdown(w, level + 1), ""]
    if result.get("chart_note"):
        lines += [f"Note: {result['chart_note']}", ""]
    return "\n".join(lines)


def cores_sentence(cores: list) -> str:
    """How much the threads gained in this run, before and after the workloads."""
    speedups = [c["speedup"] for c in cores if "speedup" in c]
    if not speedups:
        return ""
    gains = " and ".join(f"{x:.2f}x" for x in speedups)
    return (f" Threads: {cores[0]['threads']} threads did arithmetic {gains} as fast as one "
            f"(before{' and after' if len(speedups) > 1 else ''} the workloads; "
            f"{cores[0]['threads']}x when each has a core to itself).")


def chart(result: dict, path: Path) -> str | None:
    """Bar chart of medians per workload (log scale, floor dashed). ``None``, or why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        return f"matplotlib is not installed ({err}), so no chart was written"
    workloads = result["workloads"]
    ncols = 2 if len(workloads) > 1 else 1
    nrows = -(-len(workloads) // ncols)
    height = max(len(w["rows"]) for w in workloads) * 0.35 + 1.2
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(7 * ncols, height * nrows))
    for ax in axes.flat[len(workloads):]:
        ax.set_visible(False)
    for ax, w in zip(axes.flat, workloads):
        rows = [r for r in w["rows"] if r["status"] == "ok"]
        medians = [r["timing"]["median_s"] for r in rows]
        spread = [[m - r["timing"]["min_s"] for m, r in zip(medians, rows)],
                  [r["timing"]["max_s"] - m for m, r in zip(medians, rows)]]
        colors = ["tab:orange" if r["system"].startswith("staticgrad") else "tab:blue"
                  for r in rows]
        ax.barh([r["label"] for r in rows], medians, xerr=spread, color=colors)
        ax.axvline(w["floor"]["seconds"], color="k", linestyle="--", label="hardware floor")
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(f"{w['name']}: {w['title']}", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="best")
        ax.set_xlabel("seconds per call (median, min–max), log scale", fontsize=8)
    fig.suptitle(f"staticgrad vs peers, {result['date']} ({result['mode']} run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(result: dict, out: Path, stem: str) -> dict:
    """Write ``stem``.md/.json(/.png) into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{stem}.png"}
    note = chart(result, paths["png"])
    if note:
        result["chart_note"] = note
        del paths["png"]
    paths["md"], paths["json"] = out / f"{stem}.md", out / f"{stem}.json"
    paths["md"].write_text(markdown(result), encoding="utf-8")
    paths["json"].write_text(json.dumps(result, indent=1, default=to_json), encoding="utf-8")
    return paths


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(result: dict, readme: Path, chart_path: Path | None) -> None:
    """Put this run's tables (and chart) between the README's bench markers, or append them."""
    text = readme.read_text(encoding="utf-8")
    chart_line = ""
    if chart_path is not None:
        relative = chart_path.resolve().relative_to(readme.parent.resolve())
        chart_line = f"![benchmark chart]({relative.as_posix()})\n\n"
    block = (f"{README_START}\n{chart_line}{markdown(result, level=3)}\n"
             f"Reproduce with `python -m bench` (peers: `pip install -e \".[bench]\"`).\n"
             f"{README_END}")
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        text = head + block + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")


def to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
