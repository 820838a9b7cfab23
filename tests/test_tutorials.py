"""The PyTorch autograd tutorial examples, define-then-run, with their published answers."""

import numpy as np

import staticgrad as sg


def test_x_plus_w_times_w_plus_1(backend):
    # PyTorch: x = tensor(2., requires_grad=True); w = tensor(1., requires_grad=True)
    x = sg.placeholder((), name="x", requires_grad=True)
    w = sg.parameter(1.0, name="w")
    a = x + w
    b = w + 1
    y = a * b
    dy_dw, dy_dx = sg.grad(y, [w, x])
    f = sg.function([x], [y, dy_dw, dy_dx], backend=backend)
    y_val, dw, dx = f(2.0)
    assert float(y_val) == 6.0 and float(dw) == 5.0 and float(dx) == 2.0
    assert x.is_leaf and w.is_leaf and not a.is_leaf and not y.is_leaf
    assert x.grad_fn is None and w.grad_fn is None
    assert y.grad_fn.name == "MulBackward" and a.grad_fn.name == "AddBackward"
    assert repr(y.grad_fn) == "<MulBackward>"
    assert y.requires_grad and a.requires_grad and b.requires_grad


def test_concatenate_with_grad_outputs(backend):
    # w = 1, x = 2; y0 = (x+w)*(w+1), y1 = (x+w)+(w+1); loss = cat([y0, y1])
    # loss.backward(gradient=[1, 1]) -> w.grad = 5 + 2 = 7; gradient=[1, 2] -> 5 + 2*2 = 9
    w = sg.placeholder((1,), name="w", requires_grad=True)
    x = sg.placeholder((1,), name="x", requires_grad=True)
    a = sg.add(w, x)
    b = sg.add(w, 1)
    y0 = sg.multiply(a, b)
    y1 = sg.add(a, b)
    loss = sg.concatenate([y0, y1], axis=0)
    assert loss.shape == (2,)
    g_ones = sg.grad(loss, w, grad_outputs=np.array([1.0, 1.0]))
    g_12 = sg.grad(loss, w, grad_outputs=sg.constant(np.array([1.0, 2.0])))
    f = sg.function([w, x], [g_ones, g_12], backend=backend)
    ones, one_two = f(np.array([1.0]), np.array([2.0]))
    np.testing.assert_array_equal(ones, [7.0])
    np.testing.assert_array_equal(one_two, [9.0])


def test_power_first_and_second_derivative(backend):
    x = sg.placeholder((), name="x")
    y = x ** 2
    g = sg.grad(y, x)
    g2 = sg.grad(g, x)
    first, second = sg.function([x], [g, g2], backend=backend)(3.0)
    assert float(first) == 6.0 and float(second) == 2.0


def test_ones_plus_two_times_three_mean(backend):
    x = sg.placeholder((2, 2), name="x", requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    f = sg.function([x], [out, sg.grad(out, x)], backend=backend)
    out_val, gx = f(np.ones((2, 2)))
    assert float(out_val) == 27.0
    np.testing.assert_array_equal(gx, np.full((2, 2), 4.5))
    assert out.grad_fn is not None and y.grad_fn.name == "AddBackward"


def test_polynomial_derivative(backend):
    x = sg.placeholder((), name="x")
    y = 3 * x ** 2 + 4 * x + 2
    assert float(sg.function([x], sg.grad(y, x), backend=backend)(3.0)) == 22.0
