"""The numba runtime's steady path: generated Python that calls the kernels' entry points."""

from __future__ import annotations

import numpy as np

import staticgrad as sg


def tiny():
    x = sg.placeholder((), name="x")
    w = sg.placeholder((), name="w")
    y = (x + w) * (w + 1)
    return sg.function([x, w], [y, y, x, *sg.grad(y, [x, w])])


def test_steady_source_calls_each_kernel_once_in_order():
    f = tiny()
    arrays, plan = f.prepare_call((np.array(2.0), np.array(1.0)))
    assert plan.steady is None
    f(np.array(2.0), np.array(1.0))
    text = f.program.steady_source(plan)
    assert text.startswith("def steady(a0, a1):")
    assert [line.strip().split("(")[0] for line in text.splitlines()
            if line.strip().startswith("K")] == [f"K{r}" for r in range(len(f.kernels))]
    # a repeated result is a copy, an argument result is a copy of the argument
    assert ".copy()" in text and "array(a0)" in text


def test_steady_results_never_alias():
    f = tiny()
    for _ in range(3):
        y1, y2, x, gx, gw = f(np.array(2.0), np.array(1.0))
        assert float(y1) == float(y2) == 6.0 and float(x) == 2.0
        assert (float(gx), float(gw)) == (2.0, 5.0)
        assert len({id(a) for a in (y1, y2, x, gx, gw)}) == 5
        y1 += 1.0
        assert float(y2) == 6.0


def test_steady_path_uses_entry_points_not_dispatchers():
    f = tiny()
    f(np.array(2.0), np.array(1.0))
    (plan,) = f._plans.values()
    names = plan.steady.__globals__
    kernels = [names[f"K{r}"] for r in range(len(f.kernels))]
    assert all(type(k).__name__ == "builtin_function_or_method" for k in kernels)
