"""Scheduling: which nodes fuse into which loop kernels for canonical graphs."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg
from staticgrad.rewrite import simplify
from staticgrad.schedule import schedule


def kernels_of(*outputs):
    outs, _ = simplify(list(outputs))
    return schedule(outs)


def test_elementwise_forward_and_backward_share_one_loop():
    # the W2 benchmark graph: loss and both gradients in one pass over memory
    x = sg.placeholder((None,), np.float32, name="x")
    w = sg.placeholder((None,), np.float32, name="w")
    loss = sg.sum(sg.tanh(x * w + 1) ** 2 * sg.exp(-x * x))
    sched = kernels_of(loss, *sg.grad(loss, [x, w]))
    assert [k.kind for k in sched.kernels] == ["loop"]
    (kernel,) = sched.kernels
    assert len(kernel.passes) == 1 and len(kernel.roots) == 3
    ops = [n.op for n in kernel.nodes]
    assert {"tanh", "exp", "sum"} <= set(ops)


def test_layer_norm_backward_passes_each_row_four_times():
    # mean, variance, the two row sums of the backward, then dx: the sum the mean's adjoint
    # needs moves to the first pass once its row factors are taken out of it
    x = sg.placeholder((None, 64), np.float32, name="x")
    r = sg.placeholder((None, 64), np.float32, name="r")
    xc = x - sg.mean(x, axis=-1, keepdims=True)
    y = xc / sg.sqrt(sg.mean(xc * xc, axis=-1, keepdims=True) + 1e-5)
    loss = sg.sum(y * r)
    (kernel,) = [k for k in kernels_of(loss, sg.grad(loss, x)).kernels if k.kind == "loop"]
    assert len(kernel.passes) == 4


def test_softmax_is_one_kernel_with_passes_over_each_row():
    x = sg.placeholder((None, 10), name="x")
    v = sg.placeholder((None, 10), name="v")
    out = sg.sum(sg.softmax(x, axis=1) * v)
    gx = sg.grad(out, x)
    sched = kernels_of(gx)
    loops = [k for k in sched.kernels if k.kind == "loop"]
    assert len(loops) == 1
    (kernel,) = loops
    assert kernel.split == 1 and len(kernel.passes) >= 3
    # the row max and row sums never touch memory
    reductions = [r for r in kernel.roots if r.op in ("max", "sum")]
    assert reductions and all(id(r) in sched.locals for r in reductions)


def test_layer_norm_fuses_rows_and_keeps_column_sums_in_the_same_kernel():
    x = sg.placeholder((None, 64), np.float32, name="x")
    gamma = sg.parameter(np.ones(64, np.float32), name="gamma")
    beta = sg.parameter(np.zeros(64, np.float32), name="beta")
    mu = sg.mean(x, axis=1, keepdims=True)
    var = sg.mean((x - mu) ** 2, axis=1, keepdims=True)
    y = (x - mu) / sg.sqrt(var + 1e-5) * gamma + beta
    loss = sg.sum(y * y)
    grads = sg.grad(loss, [x, gamma, beta])
    sched = kernels_of(loss, *grads)
    loops = [k for k in sched.kernels if k.kind == "loop"]
    assert len(loops) <= 2
    assert all(k.kind == "loop" for k in sched.kernels)


def test_mlp_step_calls_blas_for_every_product():
    x = sg.placeholder((None, 1000), np.float32, name="x")
    y = sg.placeholder((None, 10), np.float32, name="y")
    w1 = sg.parameter(np.zeros((1000, 100), np.float32), name="w1")
    w2 = sg.parameter(np.zeros((100, 10), np.float32), name="w2")
    h = sg.clip(x @ w1, min=0.0)
    loss = sg.sum((h @ w2 - y) ** 2)
    g1, g2 = sg.grad(loss, [w1, w2])
    sched = kernels_of(loss, w1 - 1e-6 * g1, w2 - 1e-6 * g2)
    kinds = [k.kind for k in sched.kernels]
    assert kinds.count("matmul") == 5
    # transposed operands are read in place: no transpose copies
    assert all("transpose" not in [n.op for n in k.nodes] or k.kind == "matmul"
               for k in sched.kernels)
    # the loss and its gradient w.r.t. the prediction share one loop
    k3 = next(k for k in sched.kernels if any(r.op == "sum" for r in k.roots))
    assert len(k3.roots) == 2


def test_a_value_needed_by_loops_of_two_shapes_is_stored_once():
    x = sg.placeholder((None, 8), name="x")
    e = sg.exp(x)
    out1 = e * 2.0                 # loop over (N, 8)
    out2 = sg.sum(e, axis=0)       # reduction over (N, 8): same space
    out3 = e[:, :4] + 1.0          # loop over (N, 4): another space
    sched = kernels_of(out1, out2, out3)
    assert id(e) in sched.roots


def test_a_transposed_read_of_a_fresh_value_waits_for_its_kernel():
    x = sg.placeholder((6, 6), name="x")
    e = sg.exp(x) * 3.0
    out = e + e.T
    sched = kernels_of(e, out)
    assert len(sched.kernels) == 2


@pytest.mark.parametrize("axis", [0, 1, (0, 1), None])
def test_reductions_over_any_axes_fuse_with_their_producers(axis):
    x = sg.placeholder((None, 16), name="x")
    out = sg.sum(sg.exp(x) * x, axis=axis)
    sched = kernels_of(out)
    assert len(sched.kernels) == 1
    assert [n.op for n in sched.kernels[0].nodes] == ["exp", "mul", "sum"]


def unrolled_rnn(T: int):
    """The tanh RNN of bench W7, unrolled: h = tanh(x[:, t] @ Wx + h @ Wh), T times."""
    rng = np.random.default_rng(0)
    x = sg.placeholder((16, T, 8), np.float32, name="x")
    wx = sg.parameter(rng.standard_normal((8, 32)).astype(np.float32), name="Wx")
    wh = sg.parameter(rng.standard_normal((32, 32)).astype(np.float32), name="Wh")
    h = sg.constant(np.zeros((16, 32), np.float32))
    for t in range(T):
        h = sg.tanh(x[:, t, :] @ wx + h @ wh)
    loss = sg.mean(h ** 2)
    return [loss, *sg.grad(loss, [wx, wh])]


def distinct_kernels(targets) -> tuple:
    from staticgrad.backends.numba.render import render_kernel
    sched = kernels_of(*targets)
    codes = [render_kernel(k, sched.roots, sched.locals) for k in sched.kernels]
    return len(codes), len({c.digest for c in codes}), max(len(k.reads) for k in sched.kernels)


def test_an_unrolled_loop_compiles_the_same_kernels_whatever_its_length():
    # the T gradient terms of Wx and Wh are summed 16 at a time, so every kernel repeats
    short, long = distinct_kernels(unrolled_rnn(40)), distinct_kernels(unrolled_rnn(160))
    assert long[0] > 3 * short[0]            # four times the steps, about four times the calls
    assert long[1] == short[1] <= 16         # ... and not one more kernel to compile
    assert long[2] <= 16 + 1                 # no loop reads more than MAX_READS arrays (+ out)


def test_twenty_thousand_nodes_pass_every_stage():
    # recursion-free passes: autodiff, rewrites, schedule and render on a 20k-node graph
    targets = unrolled_rnn(1250)
    assert len(sg.graph(targets).nodes) > 20_000
    count, distinct, _ = distinct_kernels(targets)
    assert count > 8000 and distinct <= 16


def test_the_slices_of_an_unrolled_loop_are_kernels_of_one_text():
    # x[:, t, :] for every t: stored (BLAS operands) by kernels of at most MAX_ROOTS values,
    # whose offsets are arguments, so T slices cost one compile, not a kernel growing with T
    from staticgrad.backends.numba.render import render_kernel
    from staticgrad.schedule import MAX_ROOTS
    sched = kernels_of(*unrolled_rnn(64))
    assert max(len(k.roots) for k in sched.kernels if k.kind == "loop") <= MAX_ROOTS
    slicing = [render_kernel(k, sched.roots, sched.locals) for k in sched.kernels
               if {n.op for n in k.nodes} <= {"slice", "reshape"}]
    assert len(slicing) >= 64 // MAX_ROOTS and len({c.digest for c in slicing}) <= 2


def test_a_stored_slice_of_a_stored_value_is_a_view_not_a_kernel():
    # h[2:5] is a BLAS operand, so it is stored: as a view of h's buffer, copied by nobody
    x = sg.placeholder((6, 4), np.float32, name="x")
    w = sg.placeholder((4, 3), np.float32, name="w")
    v = sg.placeholder((3, 2), np.float32, name="v")
    h = x @ w
    sched = kernels_of(h[2:5] @ v)
    assert [k.kind for k in sched.kernels] == ["matmul", "matmul"]
    (base, offset), = sched.aliases.values()
    assert base.op == "matmul" and offset == 6


def test_strided_slices_and_outputs_are_never_views():
    x = sg.placeholder((6, 4), np.float32, name="x")
    w = sg.placeholder((4, 3), np.float32, name="w")
    h = x @ w
    every_other = kernels_of(h[::2] @ sg.placeholder((3, 2), np.float32))
    assert not every_other.aliases and len(every_other.kernels) == 3   # a copy, then BLAS
    as_output = kernels_of(h[2:5])          # a result: a buffer of its own, not a view
    assert not as_output.aliases and len(as_output.kernels) == 2
