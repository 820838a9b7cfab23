"""``Function.explain``: measured time per kernel next to the floor (bytes at the measured
bandwidth, GEMM flops at the measured BLAS peak). Only structure and estimates are asserted,
never a speed: times on a shared machine are noise."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg
from staticgrad.inspect import explain, hardware


@pytest.fixture(scope="module", autouse=True)
def quick_floor(monkeypatch_module):
    # the full measurement takes about a second; the quick one is enough for the structure
    floor = hardware.measure(quick=True)
    monkeypatch_module.setattr(hardware, "machine", lambda: floor)
    return floor


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_report_has_one_row_per_kernel_with_its_work(capsys):
    x = sg.placeholder((None, 100), np.float32, name="x")
    w = sg.parameter(np.ones((100, 10), np.float32), name="w")
    y = sg.tanh(x @ w)
    f = sg.function([x], [sg.sum(y * y), sg.grad(sg.sum(y * y), w)])
    report = f.explain(np.ones((64, 100), np.float32), repeat=4)
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert [k.name for k in report.kernels] == [k.name for k in f.kernels]
    matmuls = [k for k in report.kernels if k.kind == "matmul"]
    assert [k.gemm for k in matmuls] == [2 * 64 * 100 * 10, 2 * 100 * 64 * 10]
    forward = matmuls[0]
    assert forward.space == (64, 10)
    assert forward.read == 64 * 100 * 4 + 100 * 10 * 4 and forward.written == 64 * 10 * 4
    for k in report.kernels:
        assert k.seconds > 0 and k.floor > 0 and k.ratio > 0
        assert k.name in printed
    assert report.gemm == sum(k.gemm for k in matmuls)
    assert report.seconds > 0 and report.calls == 4 and report.floor > 0
    # the ideal floor moves the argument, the parameter and the results once
    assert report.ideal_bytes == 64 * 100 * 4 + 100 * 10 * 4 + 4 + 100 * 10 * 4
    assert "x floor" in printed and "GFLOP/s" in printed


def test_each_row_says_how_many_threads_its_kernel_ran_on():
    # a loop of PARALLEL_MIN elements or more runs in pool.size() chunks, a small one on one
    # thread; a product runs on the BLAS threads its size asks for; all on one while the
    # calls measure one thread faster (pool.Choice: a loaded machine)
    from staticgrad.backends.numba import blas, pool, render
    x = sg.placeholder((None, 512), np.float32, name="x")
    w = sg.parameter(np.ones((512, 512), np.float32) / 512, name="w")
    f = sg.function([x], [sg.sum(sg.tanh(x @ w), axis=0)])
    for rows in (4, 1024):
        report = f.explain(np.ones((rows, 512), np.float32), repeat=2, show=False)
        cores = pool.size() if report.choice is None or report.choice[0] else 1
        (product,) = [k for k in report.kernels if k.kind == "matmul"]
        assert product.threads == blas.threads_for(product.gemm, cores)
        (loop,) = [k for k in report.kernels if k.kind == "loop"]
        assert loop.threads == (cores if rows * 512 >= render.PARALLEL_MIN else 1)
        printed = str(report)
        assert "threads" in printed.splitlines()[1]
        # only a plan with something to run on threads chooses, and says which way it took
        big = pool.size() > 1 and rows * 512 >= render.PARALLEL_MIN
        assert (report.choice is not None) == big
        assert ("calls run on" in printed.splitlines()[-1]) == big
    # the function's stats say it too, by the call sizes that have threads to choose
    if pool.size() > 1:
        assert f.stats["threads"].keys() == {"x.0=1024"}
        assert f.stats["threads"]["x.0=1024"] in ("threads", "one thread")


def test_elementwise_kernels_count_one_flop_per_node_element():
    x = sg.placeholder((1000,), np.float32, name="x")
    f = sg.function([x], sg.sum(sg.exp(x) * 2.0 + 1.0))
    (row,) = f.explain(np.zeros(1000, np.float32), repeat=3, show=False).kernels
    assert row.kind == "loop" and row.space == (1000,)
    assert row.read == 4000 and row.written == 4
    assert row.flops == 4 * 1000      # exp, mul, add, and the sum's additions
    assert row.gemm == 0


def test_the_numpy_backend_reports_the_call_only():
    x = sg.placeholder((3,), name="x")
    report = sg.function([x], sg.exp(x), backend="numpy").explain(np.zeros(3), repeat=2,
                                                                   show=False)
    assert report.kernels == [] and report.backend == "numpy"
    assert "no kernels to time" in str(report)


def test_updates_run_during_explain_like_any_call():
    w = sg.parameter(np.zeros(2), name="w")
    x = sg.placeholder((2,), name="x")
    step = sg.function([x], sg.sum(w), updates=[(w, w + x)])
    step.explain(np.ones(2), repeat=3, show=False)
    assert w.value[0] >= 3 and w.value[0] == w.value[1]   # once per call, every call


def test_formatting_helpers():
    assert explain.fmt_time(0.0123) == "12.3 ms" and explain.fmt_time(2.5e-7) == "250 ns"
    assert explain.fmt_bytes(1_500_000) == "1.5 MB" and explain.fmt_bytes(12) == "12 B"
    assert explain.fmt_count(0) == "-" and explain.fmt_count(2_000_000) == "2M"
