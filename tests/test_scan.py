"""sg.scan's VJP is built for speed: only the gradients asked for, the forward's values read
back from its history, constant inputs folded into the body, and no copies around the loops.
(Values and gradients of scans, first and second order, are checked in test_ops.)"""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg
from staticgrad.backends.numba import blas, pool
from staticgrad.rewrite import simplify
from staticgrad.tensor import toposort

T, B, D, H = 12, 4, 3, 5


def rnn(length: int = T):
    rng = np.random.default_rng(0)
    x = sg.placeholder((length, B, D), np.float64, name="x")
    wx = sg.parameter(0.4 * rng.standard_normal((D, H)), name="Wx")
    wh = sg.parameter(0.4 * rng.standard_normal((H, H)), name="Wh")
    h0 = sg.constant(np.zeros((B, H)))
    h, _ = sg.scan(lambda h, xt: (sg.tanh(xt @ wx + h @ wh), None), h0, x)
    return x, wx, wh, sg.mean(h ** 2)


def backward_scan(outputs):
    outs, _ = simplify(list(outputs))
    scans = [n for n in toposort(outs) if n.op == "scan"]
    assert len(scans) == 2     # forward, and the reverse one of the VJP
    return dict(scans[1].attrs)["body"], scans[1]


def test_only_the_gradients_asked_for_are_computed():
    x, wx, wh, loss = rnn()
    weights_only, _ = backward_scan(sg.grad(loss, [wx, wh]))
    with_inputs, _ = backward_scan(sg.grad(loss, [wx, wh, x]))
    assert weights_only.n_ys == 0 and with_inputs.n_ys == 1   # dx stacked only when asked
    a = np.random.default_rng(1).standard_normal((T, B, D))
    for backend in ("numpy", "numba"):
        some = sg.function([x], list(sg.grad(loss, [wx, wh])), backend=backend)(a)
        every = sg.function([x], list(sg.grad(loss, [wx, wh, x])), backend=backend)(a)
        for s, e in zip(some, every):
            np.testing.assert_allclose(s, e, rtol=1e-12)


def test_the_backward_step_reads_the_forward_values_back():
    # tanh's VJP reads tanh: the stored next carry, not a tanh (and its two products) again
    _, wx, wh, loss = rnn()
    body, _ = backward_scan(sg.grad(loss, [wx, wh]))
    ops = [n.op for n in toposort(list(body.outputs))]
    assert "tanh" not in ops and ops.count("matmul") == 3


def test_a_constant_per_step_input_is_folded_into_the_body():
    # the cotangent of the carries' history is zero but at the last step: not an array of T
    _, wx, wh, loss = rnn()
    _, node = backward_scan(sg.grad(loss, [wx, wh]))
    assert not [i for i in node.inputs if i.op == "broadcast_to" and i.dims[:1] == (T,)]


@pytest.mark.parametrize("reverse", [False, True])
def test_the_rnn_program_copies_nothing_around_its_loops(reverse):
    x, wx, wh, _ = rnn()
    h0 = sg.constant(np.zeros((B, H)))
    h, _ = sg.scan(lambda h, xt: (sg.tanh(xt @ wx + h @ wh), None), h0, x, reverse=reverse)
    loss = sg.mean(h ** 2)
    f = sg.function([x], [loss, *sg.grad(loss, [wx, wh])])
    copies = [k for k in f.kernels if {n.op for n in k.nodes} <= {"slice", "reshape",
                                                                   "transpose", "broadcast_to"}]
    assert len(copies) <= 2         # the two gradients, out of the backward scan's value
    assert [k.kind for k in f.kernels].count("scan") == 2
    a = np.random.default_rng(2).standard_normal((T, B, D))
    ref = sg.function([x], [loss, *sg.grad(loss, [wx, wh])], backend="numpy")(a)
    for got, want in zip(f(a), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_the_gradient_sums_keep_two_steps_whatever_the_length():
    # a weight's gradient summed over the steps: a running pair, not T + 1 copies of it
    sizes = []
    for length in (10, 40):
        _, wx, wh, loss = rnn(length)
        outs, stats = simplify([loss, *sg.grad(loss, [wx, wh])])
        (forward, backward) = [n for n in toposort(outs) if n.op == "scan"]
        assert dict(backward.attrs)["keep"] == (False, False, False)
        assert ("histories", len(toposort(outs))) in stats["nodes"]
        sizes.append((forward.dims[0], backward.dims[0]))
    assert sizes[0][1] == sizes[1][1] == 2 * B * H + 2 * D * H + 2 * H * H
    assert sizes[1][0] > 3 * sizes[0][0]         # the forward keeps its history: the VJP reads it


def test_a_scan_runs_its_small_products_on_one_blas_thread():
    # BLAS threads are chosen by the largest single product, not by the T products of a call
    x, wx, wh, loss = rnn(200)
    f = sg.function([x], [loss, *sg.grad(loss, [wx, wh])])
    f(np.zeros((200, B, D)))
    (plan,) = f._plans.values()
    # before: no thread count was set, so OpenBLAS ran the small products on every core
    assert set(plan.blas.values()) == {1}
    costs = [k.cost(plan.env) for k in f.kernels if k.kind == "scan"]
    assert all(c["gemm"] >= 200 * c["largest"] > 0 for c in costs)


def test_each_blas_kernel_gets_the_threads_its_own_products_want():
    # a big product beside a scan of small ones: two threads for it, one for the scan's steps
    rng = np.random.default_rng(0)
    x = sg.placeholder((None, 300), np.float32, name="x")
    w = sg.parameter(rng.standard_normal((300, 300)).astype(np.float32), name="w")
    xs = sg.placeholder((20, 4, 16), np.float32, name="xs")
    wh = sg.parameter((0.1 * rng.standard_normal((16, 16))).astype(np.float32), name="wh")
    h, _ = sg.scan(lambda h, xt: (sg.tanh(xt + h @ wh), None),
                   sg.constant(np.zeros((4, 16), np.float32)), xs)
    loss = sg.sum((x @ w) ** 2) + sg.sum(h)
    f = sg.function([x, xs], [loss, *sg.grad(loss, [w, wh])])
    a, b = rng.standard_normal((200, 300)), rng.standard_normal((20, 4, 16))
    before = blas.set_threads(1)
    f(a, b)
    (plan,) = f._plans.values()
    kinds = {f.kernels[r].kind: n for r, n in plan.blas.items()}
    assert kinds == {"matmul": pool.size(), "scan": 1}
    assert blas.set_threads(before) == 1          # the caller's count is restored
    ref = sg.function([x, xs], [loss, *sg.grad(loss, [w, wh])], backend="numpy")
    for got, want in zip(f(a, b), ref(a, b)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-3)
