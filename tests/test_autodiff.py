"""``sg.grad``: its call forms, grad_outputs, scalar rules, disconnected inputs, stop_gradient,
gradients w.r.t. any node, higher order, broadcasting, dtypes and errors."""

import numpy as np
import pytest
from conftest import FD_TOL, caller_line, numerical_grad, run, tol

import staticgrad as sg


def f64(*values):
    return np.array(values, dtype=np.float64)


# -- call forms --------------------------------------------------------------------------------
def test_single_input_gives_a_tensor(backend):
    x = sg.placeholder((3,), name="x")
    g = sg.grad(sg.sum(x * x), x)
    assert isinstance(g, sg.Tensor) and g.shape == (3,)
    np.testing.assert_array_equal(run([x], g, f64(1, 2, 3), backend=backend), f64(2, 4, 6))


@pytest.mark.parametrize("container", [list, tuple])
def test_list_or_tuple_input_gives_tuple_in_order(container, backend):
    x = sg.placeholder((), name="x")
    w = sg.parameter(3.0, name="w")
    b = sg.parameter(np.array([1.0, 2.0]), name="b")
    y = sg.sum(x * w * w + b * x)  # x*w*w is broadcast to b's 2 elements
    grads = sg.grad(y, container([b, x, w]))
    assert isinstance(grads, tuple) and len(grads) == 3
    assert [g.shape for g in grads] == [(2,), (), ()]
    gb, gx, gw = run([x], list(grads), 2.0, backend=backend)
    np.testing.assert_array_equal(gb, f64(2, 2))
    assert float(gx) == 2 * 9.0 + 3.0 and float(gw) == 2 * 2 * 2.0 * 3.0
    one = sg.grad(y, container([w]))
    assert isinstance(one, tuple) and len(one) == 1


def test_repeated_input_gives_the_same_gradient_twice(backend):
    x = sg.placeholder((), name="x")
    g1, g2 = sg.grad(x * x, [x, x])
    a, b = run([x], [g1, g2], 3.0, backend=backend)
    assert float(a) == float(b) == 6.0


# -- grad_outputs ------------------------------------------------------------------------------
def test_grad_outputs_as_ndarray(backend):
    x = sg.placeholder((3,), name="x")
    v = f64(1, 2, 3)
    g = sg.grad(x * x, x, grad_outputs=v)
    np.testing.assert_array_equal(run([x], g, f64(1, 1, 2), backend=backend), 2 * f64(1, 1, 2) * v)


def test_grad_outputs_as_tensor(backend):
    x = sg.placeholder((None, 2), name="x")
    v = sg.placeholder((None, 2), name="v")
    g = sg.grad(sg.sin(x), x, grad_outputs=v)
    assert g.shape == (None, 2)
    xv, vv = np.arange(6.0).reshape(3, 2), np.linspace(-1, 1, 6).reshape(3, 2)
    np.testing.assert_allclose(run([x, v], g, xv, vv, backend=backend), np.cos(xv) * vv,
                               **tol(np.float64))


def test_grad_outputs_broadcasts_a_scalar_cotangent(backend):
    x = sg.placeholder((3,), name="x")
    g = sg.grad(x * x, x, grad_outputs=sg.constant(2.0))
    np.testing.assert_array_equal(run([x], g, f64(1, 2, 3), backend=backend), f64(4, 8, 12))


def test_grad_outputs_of_the_wrong_shape_is_refused():
    x = sg.placeholder((3,), name="x")
    with pytest.raises(ValueError, match="grad_outputs"):
        sg.grad(x * x, x, grad_outputs=np.ones(4))


def test_grad_outputs_one_per_output(backend):
    x = sg.placeholder((2,), name="x")
    g = sg.grad([x * x, 3.0 * x], x, grad_outputs=[f64(1, 0), f64(0, 1)])
    np.testing.assert_array_equal(run([x], g, f64(5, 7), backend=backend), f64(10, 3))
    with pytest.raises(ValueError):
        sg.grad([x * x, 3.0 * x], x, grad_outputs=[f64(1, 0)])


# -- which outputs need grad_outputs -----------------------------------------------------------
@pytest.mark.parametrize("shape", [(3,), (2, 2), (None,), (None, 1)])
def test_non_scalar_output_needs_grad_outputs(shape):
    x = sg.placeholder(shape, name="x")
    y = sg.exp(x)
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        sg.grad(y, x)
    message = str(err.value)
    assert "grad_outputs" in message and "exp" in message, message
    assert f"test_autodiff.py:{line}" in message, message


@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (1, 1, 1)])
def test_one_element_output_needs_no_grad_outputs(shape, backend):
    x = sg.placeholder(shape, name="x")
    g = sg.grad(x * x * x, x)
    assert g.shape == shape
    xv = np.full(shape, 2.0)
    np.testing.assert_array_equal(run([x], g, xv, backend=backend), np.full(shape, 12.0))


# -- disconnected inputs -----------------------------------------------------------------------
def test_disconnected_inputs_give_zeros(backend):
    x = sg.placeholder((2, 3), name="x")
    w = sg.parameter(np.ones((4,)), name="w")
    c = sg.constant(np.ones(5))
    u = sg.placeholder((2,), name="u")
    gw, gc, gu, gx = sg.grad(sg.sum(x * x), [w, c, u, x])
    assert gw.shape == (4,) and gc.shape == (5,) and gu.shape == (2,)
    vals = run([x, u], [gw, gc, gu, gx], np.ones((2, 3)), np.ones(2), backend=backend)
    for v, shape in zip(vals, [(4,), (5,), (2,)]):
        assert v.shape == shape and v.dtype == np.float64
        np.testing.assert_array_equal(v, np.zeros(shape))
    np.testing.assert_array_equal(vals[3], np.full((2, 3), 2.0))


def test_disconnected_input_with_call_time_size(backend):
    x = sg.placeholder((None, 3), name="x")
    d = sg.placeholder((None, 4), np.float32, name="d")
    gd = sg.grad(sg.sum(x), d)
    assert gd.shape == (None, 4) and gd.dtype == np.float32
    f = sg.function([x, d], gd, backend=backend)
    for n in (1, 5):
        out = f(np.ones((2, 3)), np.ones((n, 4), np.float32))
        assert out.shape == (n, 4) and out.dtype == np.float32
        np.testing.assert_array_equal(out, 0.0)


def test_gradient_through_a_comparison_only_is_zero(backend):
    x = sg.placeholder((3,), name="x")
    y = sg.sum(sg.cast(x > 0.0, np.float64))
    np.testing.assert_array_equal(run([x], sg.grad(y, x), f64(-1, 1, 2), backend=backend), 0.0)


def test_stop_gradient_blocks(backend):
    x = sg.placeholder((), name="x")
    y = sg.stop_gradient(x * x) * x  # d/dx = x*x (the stopped factor is a constant)
    g_all = sg.grad(y, x)
    g_blocked = sg.grad(sg.stop_gradient(x * x), x)
    a, b = run([x], [g_all, g_blocked], 3.0, backend=backend)
    assert float(a) == 9.0 and float(b) == 0.0


# -- with respect to any node ------------------------------------------------------------------
def test_gradient_wrt_intermediate_nodes(backend):
    # PyTorch's retain_grad: dL/dh for h = x @ w, L = sum(tanh(h) ** 2)
    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.linspace(-1, 1, 6).reshape(3, 2), name="w")
    h = x @ w
    t = sg.tanh(h)
    loss = sg.sum(t ** 2)
    gh, gt, gw = sg.grad(loss, [h, t, w])
    assert gh.shape == (None, 2) and gt.shape == (None, 2)
    xv = np.arange(12.0).reshape(4, 3) / 10
    gh_v, gt_v, gw_v, h_v = run([x], [gh, gt, gw, h], xv, backend=backend)
    tv = np.tanh(h_v)
    np.testing.assert_allclose(gt_v, 2 * tv, **tol(np.float64))
    np.testing.assert_allclose(gh_v, 2 * tv * (1 - tv ** 2), **tol(np.float64))
    np.testing.assert_allclose(gw_v, xv.T @ gh_v, **tol(np.float64))


def test_gradient_wrt_a_constant(backend):
    c = sg.constant(f64(1, 2, 3))
    x = sg.placeholder((3,), name="x")
    g = sg.grad(sg.sum(c * c * x), c)
    np.testing.assert_array_equal(run([x], g, f64(1, 1, 2), backend=backend), f64(2, 4, 12))


def test_gradient_wrt_a_placeholder_without_requires_grad(backend):
    x = sg.placeholder((), name="x")
    assert not x.requires_grad
    assert float(run([x], sg.grad(x * x, x), 4.0, backend=backend)) == 8.0


# -- higher order -----------------------------------------------------------------------------
def test_grad_of_grad(backend):
    x = sg.placeholder((), name="x")
    y = sg.sin(x) * x
    g1 = sg.grad(y, x)
    g2 = sg.grad(g1, x)
    g3 = sg.grad(g2, x)
    xv = 0.7
    vals = run([x], [g1, g2, g3], xv, backend=backend)
    expected = [np.cos(xv) * xv + np.sin(xv),
                -np.sin(xv) * xv + 2 * np.cos(xv),
                -np.cos(xv) * xv - 3 * np.sin(xv)]
    np.testing.assert_allclose(np.array(vals, dtype=np.float64), expected, **tol(np.float64))


def test_mixed_second_derivatives(backend):
    x = sg.placeholder((), name="x")
    y = sg.placeholder((), name="y")
    f = x * x * y + sg.exp(x * y)
    gx = sg.grad(f, x)
    gxy = sg.grad(gx, y)
    gyx = sg.grad(sg.grad(f, y), x)
    a, b = run([x, y], [gxy, gyx], 0.5, 1.5, backend=backend)
    expected = 2 * 0.5 + np.exp(0.75) * (1 + 0.75)
    np.testing.assert_allclose([float(a), float(b)], [expected, expected], **tol(np.float64))


def loss_fn(x):
    """A scalar with a dense Hessian: tanh(W x) squared plus a softplus-ish term."""
    w = sg.constant(np.linspace(-1.0, 1.0, 12).reshape(4, 3))
    return sg.sum(sg.tanh(w @ x) ** 2) + sg.sum(sg.log1p(sg.exp(x)) * x)


def loss_np(xv):
    w = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    return np.sum(np.tanh(w @ xv) ** 2) + np.sum(np.log1p(np.exp(xv)) * xv)


def test_gradient_matches_finite_differences(backend):
    x = sg.placeholder((3,), name="x")
    f = sg.function([x], sg.grad(loss_fn(x), x), backend=backend)
    xv = f64(0.3, -0.2, 0.8)
    np.testing.assert_allclose(f(xv), numerical_grad(loss_np, xv), **FD_TOL)


def test_hessian_vector_product_vs_finite_differences(backend):
    x = sg.placeholder((3,), name="x")
    v = sg.placeholder((3,), name="v")
    g = sg.grad(loss_fn(x), x)
    hvp = sg.grad(sg.sum(g * v), x)  # (d/dx)(g . v) = H v
    hvp_fo = sg.grad(g, x, grad_outputs=v)  # the same, as a VJP with a tensor cotangent
    f_hvp = sg.function([x, v], [hvp, hvp_fo], backend=backend)
    f_g = sg.function([x], g, backend=backend)
    xv = f64(0.3, -0.2, 0.8)
    eps = 1e-5
    for vv in (f64(1, 0, 0), f64(0.5, -1, 2)):
        expected = (f_g(xv + eps * vv) - f_g(xv - eps * vv)) / (2 * eps)
        a, b = f_hvp(xv, vv)
        np.testing.assert_allclose(a, expected, **FD_TOL)
        np.testing.assert_allclose(b, a, **tol(np.float64))


def test_full_hessian_is_symmetric(backend):
    x = sg.placeholder((3,), name="x")
    g = sg.grad(loss_fn(x), x)
    rows = [sg.grad(g[k], x) for k in range(3)]
    hessian = np.stack(run([x], rows, f64(0.3, -0.2, 0.8), backend=backend))
    np.testing.assert_allclose(hessian, hessian.T, **tol(np.float64))


# -- broadcasting is undone --------------------------------------------------------------------
def test_broadcasting_is_undone(backend):
    a = sg.placeholder((3, 1), name="a")
    b = sg.placeholder((1, 4), name="b")
    c = sg.placeholder((4,), name="c")
    s = sg.placeholder((), name="s")
    y = sg.sum((a + b) * c * s)
    ga, gb, gc, gs = sg.grad(y, [a, b, c, s])
    assert (ga.shape, gb.shape, gc.shape, gs.shape) == ((3, 1), (1, 4), (4,), ())
    av, bv, cv = np.arange(3.0).reshape(3, 1), np.arange(4.0).reshape(1, 4), f64(1, 2, 3, 4)
    vals = run([a, b, c, s], [ga, gb, gc, gs], av, bv, cv, 2.0, backend=backend)
    full = (av + bv) * cv
    expected = [np.sum(cv * 2.0 * np.ones((3, 4)), axis=1, keepdims=True),
                np.sum(cv * 2.0 * np.ones((3, 4)), axis=0, keepdims=True),
                np.sum((av + bv) * 2.0, axis=0), np.sum(full)]
    for v, e in zip(vals, expected):
        assert v.shape == e.shape
        np.testing.assert_allclose(v, e, **tol(np.float64))


def test_broadcasting_with_call_time_sizes_is_undone(backend):
    x = sg.placeholder((None, 3), name="x")
    b = sg.parameter(f64(1, 2, 3), name="b")
    gb = sg.grad(sg.sum((x + b) ** 2), b)
    assert gb.shape == (3,)
    xv = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(run([x], gb, xv, backend=backend),
                               np.sum(2 * (xv + f64(1, 2, 3)), axis=0), **tol(np.float64))


def test_call_time_size_meeting_a_fixed_size_gets_a_gradient(backend):
    # x's size is assumed equal to w's (checked at the call): the gradient has x's shape
    x = sg.placeholder((None,), name="x")
    w = sg.parameter(f64(1, 2, 3), name="w")
    gx, gw = sg.grad(sg.sum((x + w) * (w + 1)), [x, w])
    assert gx.shape == (None,) and gw.shape == (3,)
    xv = f64(0.5, -1, 2)
    got = run([x], [gx, gw], xv, backend=backend)
    np.testing.assert_allclose(got[0], f64(2, 3, 4), **tol(np.float64))
    np.testing.assert_allclose(got[1], xv + 2 * f64(1, 2, 3) + 1, **tol(np.float64))


# -- dtypes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_int_inputs_refused(dtype):
    i = sg.placeholder((3,), dtype, name="i")
    with pytest.raises(TypeError, match="placeholder i .*floating-point"):
        sg.grad(sg.sum(i * 2.0), i)


def test_int_output_refused():
    x = sg.placeholder((3,), name="x")
    with pytest.raises(TypeError):
        sg.grad(sg.sum(sg.cast(x, np.int64)), x)


def test_gradient_through_a_cast_to_int_is_zero(backend):
    x = sg.placeholder((3,), name="x")
    y = sg.sum(sg.cast(sg.cast(x, np.int64), np.float64) + x)
    np.testing.assert_array_equal(run([x], sg.grad(y, x), f64(1.5, 2, 3), backend=backend),
                                  f64(1, 1, 1))


def test_float32_gradients_stay_float32(backend, rng):
    x = sg.placeholder((None, 4), np.float32, name="x")
    w = sg.parameter(rng.standard_normal((4, 3)).astype(np.float32), name="w")
    b = sg.parameter(np.zeros(3, np.float32), name="b")
    h = sg.tanh(x @ w + b) * 0.5
    loss = sg.mean(sg.log_softmax(h, axis=1) ** 2) + 1.0
    gw, gb, gx = sg.grad(loss, [w, b, x])
    g2 = sg.grad(sg.sum(gx), x)
    assert all(g.dtype == np.float32 for g in (gw, gb, gx, g2))
    for node in sg.graph([gw, gb, gx, g2]).nodes:
        assert node.dtype != np.float64 or (node.is_leaf and node.weak), node
    xv = rng.standard_normal((5, 4)).astype(np.float32)
    vals = run([x], [gw, gb, gx, g2], xv, backend=backend)
    assert all(v.dtype == np.float32 for v in vals)
    # agree with the same graph in float64
    x64 = sg.placeholder((None, 4), name="x64")
    w64 = sg.parameter(w.value.astype(np.float64))
    b64 = sg.parameter(b.value.astype(np.float64))
    loss64 = sg.mean(sg.log_softmax(sg.tanh(x64 @ w64 + b64) * 0.5, axis=1) ** 2) + 1.0
    vals64 = run([x64], list(sg.grad(loss64, [w64, b64, x64])), xv.astype(np.float64),
                 backend=backend)
    for v, e in zip(vals, vals64):
        np.testing.assert_allclose(v, e, rtol=1e-4, atol=1e-5)


def test_mixed_precision_gradient_has_the_input_dtype(backend):
    x32 = sg.placeholder((3,), np.float32, name="x32")
    y64 = sg.placeholder((3,), np.float64, name="y64")
    loss = sg.sum(x32 * y64)  # computed in float64
    g32, g64 = sg.grad(loss, [x32, y64])
    assert g32.dtype == np.float32 and g64.dtype == np.float64
    a, b = run([x32, y64], [g32, g64], np.ones(3, np.float32), f64(1, 2, 3), backend=backend)
    assert a.dtype == np.float32 and b.dtype == np.float64
    np.testing.assert_array_equal(a, [1, 2, 3])


# -- several outputs ---------------------------------------------------------------------------
def test_multiple_outputs_are_summed(backend):
    x = sg.placeholder((), name="x")
    w = sg.parameter(np.array([1.0, 2.0]), name="w")
    outs = [x * x, 3.0 * x, sg.sum(w * x)]
    g = sg.grad(outs, x)
    gw = sg.grad(outs, w)
    a, b = run([x], [g, gw], 2.0, backend=backend)
    assert float(a) == 4.0 + 3.0 + 3.0
    np.testing.assert_array_equal(b, [2.0, 2.0])
    # the same as differentiating the sum
    assert float(run([x], sg.grad(outs[0] + outs[1] + outs[2], x), 2.0, backend=backend)) == 10


def test_output_is_an_input(backend):
    x = sg.placeholder((), name="x")
    assert float(run([x], sg.grad(x, x), 5.0, backend=backend)) == 1.0


def test_shared_subexpression_accumulates(backend):
    x = sg.placeholder((), name="x")
    h = x * x
    y = h * h + h  # h is used three times
    np.testing.assert_allclose(float(run([x], sg.grad(y, x), 1.5, backend=backend)),
                               4 * 1.5 ** 3 + 2 * 1.5, **tol(np.float64))


def test_gradient_nodes_are_graph_nodes():
    x = sg.placeholder((3,), name="x", requires_grad=True)
    g = sg.grad(sg.sum(sg.exp(x)), x)
    assert isinstance(g, sg.Tensor) and not g.is_leaf and g.requires_grad
    assert sg.grad(sg.sum(sg.exp(x)), x) is g  # interned: building it again finds the same node
