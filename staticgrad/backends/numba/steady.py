"""Steady calls: the Python a plan runs after its first call, compiled once per plan.

A plan's first call goes through ``Program.run`` (it may compile kernels and records what it
did). After it, ``make`` writes one straight-line function for the plan: take an idle
workspace, reuse or make the outputs, call each kernel's compiled entry point with its
arguments, return the results: no loop over a table, no per-call lookups.
"""

from __future__ import annotations

import sys

import numpy as np

from . import blas, pool
from .render import CHUNKS


def source(program, plan) -> str:
    """The Python that runs a plan's calls after its first: the kernels' compiled entry
    points (``K0, K1, ...``) called in order on the call's arguments (``a0, ...``), the
    parameters (``P0._value, ...``), the outputs (``o0, ...``, reused when the caller
    dropped them), views of those (``v0, ...``) and the workspace's buffers (``s[k]``)."""
    n_params, n_outs = len(program.params), len(program.outputs)
    n_args = program.per_call - n_outs - n_params - len(plan.call_views)

    def name(k: int) -> str:
        if k < n_args:
            return f"a{k}"
        if k < n_args + n_params:
            return f"P{k - n_args}._value"
        if k < n_args + n_params + n_outs:
            return f"o{k - n_args - n_params}"
        if k < program.per_call:
            return f"v{k - n_args - n_params - n_outs}"
        return f"s[{k}]"

    args = ", ".join(f"a{k}" for k in range(n_args))
    lines = [f"def steady({args}):",
             "    try:",
             "        space = pool.pop()",
             "    except IndexError:",
             "        space = new_space(plan)",
             "    try:",
             "        s, last = space.slots, space.last"]
    for j in range(len(program.outputs)):
        # three references when the caller dropped it: the workspace's, o{j} and
        # getrefcount's argument
        lines += [f"        o{j} = last[{j}]",
                  f"        if o{j} is None or getrefcount(o{j}) > 3:",
                  f"            o{j} = last[{j}] = empty(*OUT[{j}])"]
    for j, (base, start, stop, shape) in enumerate(plan.call_views):
        lines.append(f"        v{j} = {name(base)}.reshape(-1)[{start}:{stop}]"
                     f".reshape({shape})")
    if plan.choice is not None:   # threads, or all on this one (see pool.Choice)
        lines.append("        threads, start = choice.pick()")
    if plan.blas:   # the BLAS thread count is restored however the call ends
        lines += ["        before = None", "        try:"]
    pad = "    " if plan.blas else ""
    first = True
    for r, (step, (_, _, ints, bounds)) in enumerate(zip(program.steps, plan.rows)):
        if r in plan.blas:
            count = plan.blas[r]
            lines.append(f"        {pad}{'before = ' if first else ''}"
                         f"set_threads({f'{count} if threads else 1' if count > 1 else 1})")
            first = False
        for j, (slot, size, _) in enumerate(bounds):
            # the index array by its name here: arguments are not in the workspace's slots
            lines.append(f"        {pad}check_index({name(slot)}, {size}, "
                         f"BOUNDS[{r}][{j}][2])")
        call = [name(k) for k in step.args] + [str(i) for i in ints]
        if r in plan.spread:   # its chunks on threads: without the CHUNKS arguments
            own = len(CHUNKS)
            lines.append(f"        {pad}spread(K{r}, ({', '.join(call[:-own])},), "
                         f"{ints[-own]}, {plan.spread[r]}, threads)")
        else:
            lines.append(f"        {pad}K{r}({', '.join(call)})")
    if plan.blas:
        lines += ["        finally:", "            if before is not None:",
                  "                set_threads(before)"]
    if plan.choice is not None:
        lines.append("        choice.took(threads, start)")
    results = []
    for kind, k, again in program.pick:
        results.append((f"o{k}.copy()" if again else f"o{k}") if kind == "out" else
                       f"array(a{k})" if kind == "arg" else f"array(L{len(results)}.value)")
    lines += [f"        return [{', '.join(results)}]", "    finally:",
              "        pool.append(space)"]
    return "\n".join(lines) + "\n"


def make(program, plan) -> None:
    """Compile ``source`` for a plan whose kernels have all run once: ``plan.steady``."""
    namespace = {"pool": plan.pool, "new_space": program.workspace, "plan": plan,
                 "getrefcount": sys.getrefcount, "empty": np.empty, "array": np.array,
                 "OUT": plan.outputs, "BOUNDS": [b for _, _, _, b in plan.rows],
                 "check_index": check_index, "set_threads": blas.set_threads,
                 "spread": pool.spread, "choice": plan.choice}
    namespace.update({f"P{j}": p for j, p in enumerate(program.params)})
    namespace.update({f"L{j}": node for j, (kind, node, _) in enumerate(program.pick)
                      if kind == "leaf"})
    namespace.update({f"K{r}": entry_point(fn, types)
                      for r, ((fn, _, _, _), types) in enumerate(zip(plan.rows, plan.types))})
    # one file name for all: CPython interns a code object's file name for good, so a
    # name per plan would grow memory with every function ever built
    exec(compile(source(program, plan), "<staticgrad steady>", "exec"), namespace)
    plan.steady = namespace["steady"]


def entry_point(fn, types: tuple):
    """The compiled function behind a Numba dispatcher for the argument types ``types``:
    calling it skips Numba's type dispatch (0.66 -> 0.30 us for five arrays). A plan passes
    arrays of the same types on every call (arguments are checked and coerced to aligned,
    writeable, C-contiguous arrays of the placeholder's dtype; every other array is the
    runtime's own), so the overload its first call ran is the one each call needs, also for
    a function that has others (a package function, or a kernel text shared by a float32
    and a float64 graph). The dispatcher itself if there is no such overload."""
    found = fn.overloads.get(types)
    return found.entry_point if found is not None else fn


def check_index(idx: np.ndarray, size: int, message: str) -> None:
    """Indices in ``[-size, size)`` or an ``IndexError`` naming the op and the user's line."""
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise IndexError(message)
