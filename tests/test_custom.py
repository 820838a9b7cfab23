"""Custom functions (``sg.custom_vjp``): the static counterpart of ``torch.autograd.Function``.

The forward is a function of Tensors, the VJP the user's own rule; both backends run the
forward's ops, autodiff calls the rule, and gradients of the rule's nodes give second order."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import grad_tol, numerical_grad, tol

import staticgrad as sg


@sg.custom_vjp
def softplus(x):
    return sg.log1p(sg.exp(x))


@softplus.defvjp
def softplus_vjp(g, y, x):
    return [g * sg.sigmoid(x)]


def clip_gradient_forward(x):
    return x


# the identity on the way forward, gradients clipped to [-1, 1] on the way back
clip_gradient = sg.custom_vjp(clip_gradient_forward, lambda g, y, x: [sg.clip(g, -1.0, 1.0)],
                              name="clip_gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_gradients_match_numpy_and_finite_differences(backend, dtype, rng):
    x = sg.placeholder((None, 3), dtype, name="x")
    loss = sg.sum(softplus(x) * x)
    g = sg.grad(loss, x)
    h = sg.grad(sg.sum(g * g), x)   # second order: the rule's nodes differentiate as usual
    xv = rng.uniform(-2, 2, (4, 3)).astype(dtype)
    value, gv, hv = sg.function([x], [loss, g, h], backend=backend)(xv)
    assert value.dtype == dtype and gv.dtype == dtype and hv.dtype == dtype
    x64 = xv.astype(np.float64)
    sp = lambda v: np.log1p(np.exp(v))
    np.testing.assert_allclose(value, np.sum(sp(x64) * x64), **tol(dtype))
    fd = numerical_grad(lambda v: np.sum(sp(v) * v), x64)
    np.testing.assert_allclose(gv, fd, **grad_tol(dtype))
    exact_g = lambda v: 1 / (1 + np.exp(-v)) * v + sp(v)
    fd2 = numerical_grad(lambda v: np.sum(exact_g(v) ** 2), x64)
    np.testing.assert_allclose(hv, fd2, rtol=max(grad_tol(dtype)["rtol"], 1e-4), atol=1e-4)


def test_the_rule_replaces_the_derivative_of_the_forward(backend):
    x = sg.placeholder((3,), name="x")
    y = sg.sum(clip_gradient(x) * np.array([0.5, 5.0, -7.0]))
    f = sg.function([x], [y, sg.grad(y, x)], backend=backend)
    value, g = f(np.array([1.0, 2.0, 3.0]))
    assert float(value) == 0.5 + 10.0 - 21.0
    assert g.tolist() == [0.5, 1.0, -1.0]


def test_tensor_facts_follow_pytorch_vocabulary():
    x = sg.placeholder((2,), name="x", requires_grad=True)
    y = softplus(x)
    assert y.op == "softplus" and not y.is_leaf and y.requires_grad
    assert y.grad_fn.name == "SoftplusBackward" and y.shape == (2,) and y.inputs == (x,)
    assert softplus(x) is y            # interned like any node
    assert "softplus x" in str(sg.graph(y))


def test_compiled_graphs_inline_the_forward():
    x = sg.placeholder((None,), name="x")
    f = sg.function([x], sg.sum(softplus(x)))
    ops = [n.op for n in f.graph.nodes]
    assert "softplus" not in ops and "log1p" in ops and "exp" in ops
    assert len(f.kernels) == 1         # fused with the sum like any other ops


def test_several_inputs_and_a_none_gradient(backend):
    scale = sg.custom_vjp(lambda x, s: x * s, lambda g, y, x, s: [g * s, None], name="scale")
    x = sg.placeholder((2,), name="x")
    s = sg.placeholder((), name="s")
    y = sg.sum(scale(x, s))
    gx, gs = sg.grad(y, [x, s])
    values = sg.function([x, s], [y, gx, gs], backend=backend)(np.array([1.0, 2.0]), 3.0)
    assert [v.tolist() for v in values] == [9.0, [3.0, 3.0], 0.0]


def test_the_forward_may_read_parameters_and_constants(backend):
    w = sg.parameter(np.array([2.0, 3.0]), name="w")
    weighted = sg.custom_vjp(lambda x: x * w + 1.0, lambda g, y, x: [g * w], name="weighted")
    x = sg.placeholder((2,), name="x")
    f = sg.function([x], [weighted(x), sg.grad(sg.sum(weighted(x)), x)], backend=backend)
    assert [v.tolist() for v in f(np.array([1.0, 1.0]))] == [[3.0, 4.0], [2.0, 3.0]]


def test_a_forward_that_reads_another_placeholder_is_refused():
    other = sg.placeholder((2,), name="other")
    leaky = sg.custom_vjp(lambda x: x + other, lambda g, y, x: [g], name="leaky")
    with pytest.raises(ValueError, match="'leaky': the forward reads placeholder other"):
        leaky(sg.placeholder((2,), name="x"))


def test_a_missing_or_wrong_rule_is_a_clear_error():
    no_rule = sg.custom_vjp(lambda x: x * 2.0, name="no_rule")
    x = sg.placeholder((2,), name="x")
    with pytest.raises(TypeError, match="'no_rule' has no VJP rule.*@no_rule.defvjp"):
        sg.grad(sg.sum(no_rule(x)), x)
    two = sg.custom_vjp(lambda x: x * 2.0, lambda g, y, x: [g, g], name="two")
    with pytest.raises(ValueError, match="returned 2 gradient\\(s\\) for 1 input"):
        sg.grad(sg.sum(two(x)), x)


def test_names_never_collide_with_ops():
    a = sg.custom_vjp(lambda x: x, lambda g, y, x: [g], name="exp")
    x = sg.placeholder((), name="x")
    assert a(x).op != "exp" and a(x).op.startswith("exp_")
    assert sg.exp(x).op == "exp"


def test_anomalies_inside_the_forward_name_its_op(backend):
    x = sg.placeholder((2,), name="x")
    f = sg.function([x], softplus(sg.log(x)), backend=backend, check_finite=True)
    with pytest.raises(sg.AnomalyError, match="NaN in log\\(x\\)"):
        f(np.array([1.0, -1.0]))
