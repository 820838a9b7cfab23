"""``sg.function``: results, argument checks and casting, compile-time checks, updates (in place,
simultaneous, atomic), aliasing, NaNs, the PyTorch-tutorial MLP and a gradient through a step."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import FD_TOL, caller_line, tol

import staticgrad as sg


@pytest.fixture
def basic(backend, compile_once):
    """x: f64[?,3], y: f32[3], n: i64[?] -> [sum(x), x * 2, sum(y), x * y, n * 2] (one per
    backend and module; its functions have no updates, so tests may share them)."""
    def build():
        x = sg.placeholder((None, 3), name="x")
        y = sg.placeholder((3,), np.float32, name="y")
        n = sg.placeholder((None,), np.int64, name="n")
        outs = [sg.sum(x), x * 2.0, sg.sum(y), x * y, n * 2]
        return SimpleNamespace(
            x=x, y=y, n=n, outs=outs,
            f=sg.function([x, y, n], outs, backend=backend),
            f_tuple=sg.function((x, y, n), tuple(outs), backend=backend),
            f_single=sg.function([x, y, n], outs[3], backend=backend),
            f_scalar=sg.function([x, y, n], outs[0], backend=backend))
    return compile_once(("basic", backend), build)


def args(batch=2, length=4):
    return (np.arange(batch * 3.0).reshape(batch, 3), np.array([1.0, 2.0, 3.0], np.float32),
            np.arange(length))


def expected(x, y, n):
    return [np.sum(x), x * 2.0, np.sum(y), x * y, n * 2]


# -- results -----------------------------------------------------------------------------------
def test_list_outputs_give_a_list_of_arrays(basic):
    out = basic.f(*args())
    assert isinstance(out, list) and len(out) == 5
    for v, e in zip(out, expected(*args())):
        assert type(v) is np.ndarray
        assert v.shape == np.shape(e) and v.dtype == np.asarray(e).dtype
        np.testing.assert_allclose(v, e, rtol=1e-6)


def test_tuple_outputs_give_a_list(basic):
    out = basic.f_tuple(*args())
    assert isinstance(out, list) and len(out) == 5
    for v, e in zip(out, basic.f(*args())):
        np.testing.assert_array_equal(v, e)


def test_single_output_gives_one_array(basic):
    out = basic.f_single(*args())
    assert type(out) is np.ndarray and out.shape == (2, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected(*args())[3])


def test_scalar_outputs_are_0d_arrays(basic):
    out = basic.f_scalar(*args())
    assert type(out) is np.ndarray and out.shape == () and out.dtype == np.float64
    assert not isinstance(out, (float, np.generic))
    assert float(out) == 15.0
    listed = basic.f(*args())
    assert type(listed[0]) is np.ndarray and listed[0].shape == ()
    assert type(listed[2]) is np.ndarray and listed[2].shape == () and listed[2].dtype == np.float32


def test_empty_outputs_and_one_element_list(backend):
    x = sg.placeholder((), name="x")
    assert sg.function([x], [], backend=backend)(1.0) == []
    out = sg.function([x], [x * 3.0], backend=backend)(2.0)
    assert isinstance(out, list) and len(out) == 1 and float(out[0]) == 6.0


def test_function_of_no_inputs(backend):
    w = sg.parameter(np.array([1.0, 2.0]), name="w")
    f = sg.function([], sg.sum(w * w), backend=backend)
    assert float(f()) == 5.0


def test_constant_and_input_as_outputs(backend):
    x = sg.placeholder((2,), name="x")
    c = sg.constant(np.array([4.0, 5.0]))
    out_x, out_c = sg.function([x], [x, c], backend=backend)(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(out_x, [1.0, 2.0])
    np.testing.assert_array_equal(out_c, [4.0, 5.0])


# -- argument checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 2, 4])
def test_wrong_argument_count(basic, count):
    with pytest.raises(TypeError) as err:
        basic.f(*(list(args()) + [np.ones(3)])[:count])
    message = str(err.value)
    assert "takes 3" in message and f"got {count}" in message, message
    for name in ("'x'", "'y'", "'n'"):
        assert name in message, message


@pytest.mark.parametrize("which, bad, name", [
    (0, np.ones(3), "'x'"),              # rank 1 for rank 2
    (0, np.ones((2, 3, 1)), "'x'"),      # rank 3 for rank 2
    (0, np.ones((2, 4)), "'x'"),         # fixed size 3
    (1, np.ones(4, np.float32), "'y'"),  # fixed size 3
    (1, np.ones((1, 3), np.float32), "'y'"),
    (2, np.ones((2, 2), np.int64), "'n'"),
    (2, np.int64(3), "'n'"),
])
def test_wrong_shape_names_the_placeholder(basic, which, bad, name):
    call = list(args())
    call[which] = bad
    with pytest.raises(ValueError) as err:
        basic.f(*call)
    assert name in str(err.value), str(err.value)


def test_none_sizes_take_any_size(basic):
    for batch, length in [(1, 1), (2, 4), (7, 0), (0, 3), (2, 4)]:
        out = basic.f(*args(batch, length))
        for v, e in zip(out, expected(*args(batch, length))):
            assert v.shape == np.shape(e)
            np.testing.assert_allclose(v, e, rtol=1e-6)


def test_float64_into_float32_placeholder_is_cast(basic):
    x, y, n = args()
    out = basic.f(x, y.astype(np.float64) + 1e-12, n)
    assert out[2].dtype == np.float32
    np.testing.assert_allclose(out[2], 6.0)


def test_smaller_types_are_accepted(basic):
    x, y, n = args()
    out = basic.f(x.astype(np.float32), y.astype(np.float16), n.astype(np.int8))
    for v, e in zip(out, expected(x, y, n)):
        np.testing.assert_allclose(v, e, rtol=1e-6)
    out = basic.f(x.astype(np.int32), y, n.astype(np.uint8))  # int into float is same_kind
    np.testing.assert_allclose(out[0], 15.0)


@pytest.mark.parametrize("which, bad, name", [
    (2, np.array([0.5, 1.5]), "'n'"),                # float into int
    (2, [0.5, 1.5], "'n'"),
    (0, np.ones((2, 3), np.complex128), "'x'"),      # complex into float
    (1, np.ones(3, np.complex64), "'y'"),
])
def test_incompatible_dtype_is_refused(basic, which, bad, name):
    call = list(args())
    call[which] = bad
    with pytest.raises(TypeError) as err:
        basic.f(*call)
    assert name in str(err.value), str(err.value)


def test_python_scalars_and_lists_are_accepted(basic, backend):
    out = basic.f([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], [1, 2, 3], [0, 1, 2, 3])
    for v, e in zip(out, expected(*args())):
        np.testing.assert_allclose(v, e, rtol=1e-6)
    s = sg.placeholder((), name="s")
    i = sg.placeholder((), np.int64, name="i")
    f = sg.function([s, i], [s * 2.0, i + 1], backend=backend)
    for sv, iv in [(3.0, 4), (3, 4), (np.float32(3.0), np.int32(4)), (True, False)]:
        a, b = f(sv, iv)
        assert a.dtype == np.float64 and b.dtype == np.int64
        assert float(a) == 2.0 * float(sv) and int(b) == int(iv) + 1
    with pytest.raises(TypeError, match="'i'"):
        f(1.0, 2.5)


def test_read_only_and_strided_arguments(basic):
    x, y, n = args(4, 6)
    x.flags.writeable = False
    wide = np.zeros((4, 6))
    wide[:, ::2] = x  # a non-contiguous view below
    out = basic.f(wide[:, ::2], y[::-1].copy()[::-1], n[::2])
    for v, e in zip(out, expected(x, y, n[::2])):
        np.testing.assert_allclose(v, e, rtol=1e-6)
    out = basic.f(np.asfortranarray(x), y, n)
    np.testing.assert_allclose(out[3], x * y)


def test_later_calls_give_the_first_calls_results(basic):
    """After a plan's first call the backend runs a faster path: same values, fresh arrays."""
    first = [np.array(v) for v in basic.f(*args(3, 5))]
    held = basic.f(*args(3, 5))
    for _ in range(3):
        again = basic.f(*args(3, 5))
        for v, e in zip(again, first):
            np.testing.assert_array_equal(v, e)
    for v, e in zip(held, first):      # a held result is never overwritten
        np.testing.assert_array_equal(v, e)
    x, y, n = args(3, 5)
    x.flags.writeable = False          # read-only after the fast path exists
    for v, e in zip(basic.f(x, y, n), expected(x, y, n)):
        np.testing.assert_allclose(v, e, rtol=1e-6)


def test_unchecked_equals_a_checked_call(basic):
    x, y, n = args(2, 4)
    checked = basic.f(x, y, n)
    for v, e in zip(basic.f.unchecked(x, y, n), checked):
        np.testing.assert_array_equal(v, e)
    np.testing.assert_array_equal(basic.f_single.unchecked(x, y, n), basic.f_single(x, y, n))


def test_unchecked_checks_a_shape_it_has_not_seen(basic):
    x, y, n = args(7, 2)
    for v, e in zip(basic.f.unchecked(x, y, n), expected(x, y, n)):
        np.testing.assert_allclose(v, e, rtol=1e-6)
    with pytest.raises(ValueError, match="placeholder 'y'"):
        basic.f.unchecked(x, np.ones(4, np.float32), n)


def test_unchecked_applies_updates(backend):
    w = sg.parameter(np.float64(1.0), name="w")
    x = sg.placeholder((), name="x")
    step = sg.function([x], w * x, updates=[(w, w + x)], backend=backend)
    step(np.array(2.0))
    assert float(step.unchecked(np.array(2.0))) == 6.0
    assert float(w.value) == 5.0


# -- compile-time checks -----------------------------------------------------------------------
def test_unlisted_placeholder_is_an_error_at_compile_time(backend):
    x = sg.placeholder((None, 3), name="x")
    hidden = sg.placeholder((3,), name="hidden")
    with pytest.raises(ValueError, match="hidden"):
        sg.function([x], sg.sum(x * hidden), backend=backend)
    w = sg.parameter(np.ones(3), name="w")
    with pytest.raises(ValueError, match="hidden"):
        sg.function([x], sg.sum(x), updates=[(w, w + hidden)], backend=backend)


def test_inputs_must_be_placeholders(backend):
    x = sg.placeholder((3,), name="x")
    w = sg.parameter(np.ones(3), name="w")
    with pytest.raises(TypeError):
        sg.function([x, w], x * w, backend=backend)
    with pytest.raises(TypeError):
        sg.function([x * 2.0], x, backend=backend)


def test_update_of_a_non_parameter_is_a_typeerror(backend):
    x = sg.placeholder((3,), name="x")
    w = sg.parameter(np.ones(3), name="w")
    for target in (x, sg.constant(np.ones(3)), w * 1.0):
        with pytest.raises(TypeError):
            sg.function([x], sg.sum(x), updates=[(target, w + x)], backend=backend)


def test_update_of_the_wrong_shape_or_dtype_is_refused(backend):
    x = sg.placeholder((3,), name="x")
    w = sg.parameter(np.ones(3), name="w")
    with pytest.raises(ValueError, match="w"):
        sg.function([x], sg.sum(x), updates=[(w, sg.constant(np.ones(4)))], backend=backend)
    n = sg.parameter(np.arange(3), name="n")
    with pytest.raises(TypeError, match="n"):
        sg.function([x], sg.sum(x), updates=[(n, x)], backend=backend)


# -- updates -----------------------------------------------------------------------------------
def test_updates_are_simultaneous_a_swap_works(backend):
    a = sg.parameter(np.array([1.0, 2.0]), name="a")
    b = sg.parameter(np.array([3.0, 4.0]), name="b")
    swap = sg.function([], [a, b], updates=[(a, b), (b, a)], backend=backend)
    before_a, before_b = swap()
    np.testing.assert_array_equal(before_a, [1.0, 2.0])  # outputs see the values before
    np.testing.assert_array_equal(before_b, [3.0, 4.0])
    np.testing.assert_array_equal(a.value, [3.0, 4.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])
    swap()
    np.testing.assert_array_equal(a.value, [1.0, 2.0])
    np.testing.assert_array_equal(b.value, [3.0, 4.0])


def test_updates_use_values_before_the_call(backend):
    # a <- a + b and b <- a * b, both from the old a and b (a Fibonacci-like recurrence)
    a = sg.parameter(np.array(2.0), name="a")
    b = sg.parameter(np.array(3.0), name="b")
    step = sg.function([], a + b, updates=[(a, a + b), (b, a * b)], backend=backend)
    assert float(step()) == 5.0
    assert float(a.value) == 5.0 and float(b.value) == 6.0
    assert float(step()) == 11.0
    assert float(a.value) == 11.0 and float(b.value) == 30.0


def test_updates_overwrite_in_place(backend):
    w = sg.parameter(np.zeros((2, 3), np.float32), name="w")
    x = sg.placeholder((2, 3), np.float32, name="x")
    held = w.value
    step = sg.function([x], sg.sum(w), updates=[(w, w + x)], backend=backend)
    for k in range(1, 4):
        step(np.ones((2, 3), np.float32))
        assert w.value is held
        assert held.dtype == np.float32
        np.testing.assert_array_equal(held, np.full((2, 3), float(k)))


def test_update_after_value_assignment(backend):
    w = sg.parameter(np.zeros(3), name="w")
    step = sg.function([], sg.sum(w), updates=[(w, w + 1.0)], backend=backend)
    step()
    w.value = np.full(3, 10.0)
    new = w.value
    assert float(step()) == 30.0
    assert w.value is new
    np.testing.assert_array_equal(new, np.full(3, 11.0))


def test_update_with_a_broadcast_value(backend):
    w = sg.parameter(np.ones((2, 3)), name="w")
    s = sg.placeholder((), name="s")
    step = sg.function([s], [], updates=[(w, s)], backend=backend)
    step(7.0)
    np.testing.assert_array_equal(w.value, np.full((2, 3), 7.0))


@pytest.mark.parametrize("bad_call", [
    lambda x, y: (x,),                                        # wrong count
    lambda x, y: (x, y, y),
    lambda x, y: (x[:, :2], y),                               # wrong fixed size
    lambda x, y: (x[0], y),                                   # wrong rank
    lambda x, y: (x, y[:1]),                                  # named size 'batch' disagrees
    lambda x, y: (x.astype(np.complex128), y),                # incompatible dtype
    lambda x, y: (x, [str(v) for v in y]),
])
def test_a_call_that_raises_writes_nothing(backend, compile_once, bad_call):
    def build():
        x = sg.placeholder(("batch", 3), name="x")
        y = sg.placeholder(("batch",), name="y")
        w = sg.parameter(np.ones(3), name="w")
        b = sg.parameter(np.array(0.5), name="b")
        loss = sg.sum((x @ w + b - y) ** 2)
        gw, gb = sg.grad(loss, [w, b])
        step = sg.function([x, y], loss, updates=[(w, w - 0.01 * gw), (b, b - 0.01 * gb)],
                           backend=backend)
        return SimpleNamespace(w=w, b=b, step=step)

    m = compile_once(("atomic", backend), build)
    xv, yv = np.arange(12.0).reshape(4, 3) / 10, np.arange(4.0)
    m.step(xv, yv)  # a good call first: the plan for these shapes exists
    w_before, b_before = m.w.value.copy(), m.b.value.copy()
    held_w, held_b = m.w.value, m.b.value
    with pytest.raises((TypeError, ValueError)):
        m.step(*bad_call(xv, yv))
    np.testing.assert_array_equal(m.w.value, w_before)
    np.testing.assert_array_equal(m.b.value, b_before)
    assert m.w.value is held_w and m.b.value is held_b
    m.step(xv, yv)  # and the function still works afterwards
    assert not np.array_equal(m.w.value, w_before)


# -- aliasing ----------------------------------------------------------------------------------
def test_results_never_alias_parameters_arguments_or_each_other(backend):
    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.arange(3.0), name="w")
    c = sg.constant(np.array([1.0, 2.0, 3.0]))
    outs = [x, x, w, w, c, x.reshape(-1), w.T, x[0], w * 1.0, x + 0.0]
    f = sg.function([x], outs, backend=backend)
    xv = np.arange(6.0).reshape(2, 3)
    vals = f(xv)
    for k, v in enumerate(vals):
        assert not np.shares_memory(v, xv), k
        assert not np.shares_memory(v, w.value), k
        assert not np.shares_memory(v, c.value), k
        for j in range(k):
            assert not np.shares_memory(v, vals[j]), (j, k)
    snapshot = [v.copy() for v in vals]
    for v in vals:
        v += 100.0  # writing to results changes nothing in the graph's state
    np.testing.assert_array_equal(xv, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(w.value, np.arange(3.0))
    again = f(xv)
    for v, e in zip(again, snapshot):
        np.testing.assert_array_equal(v, e)


def test_results_are_not_overwritten_by_a_later_call(backend):
    x = sg.placeholder((None,), name="x")
    w = sg.parameter(np.zeros(2), name="w")
    f = sg.function([x], [x * 2.0, sg.sum(x), w], updates=[(w, w + 1.0)], backend=backend)
    first = f(np.array([1.0, 2.0]))
    second = f(np.array([5.0, 6.0]))
    third = f(np.array([7.0, 8.0, 9.0]))
    np.testing.assert_array_equal(first[0], [2.0, 4.0])
    assert float(first[1]) == 3.0
    np.testing.assert_array_equal(first[2], [0.0, 0.0])  # the value before the first update
    np.testing.assert_array_equal(second[0], [10.0, 12.0])
    np.testing.assert_array_equal(second[2], [1.0, 1.0])
    np.testing.assert_array_equal(third[2], [2.0, 2.0])
    np.testing.assert_array_equal(w.value, [3.0, 3.0])
    assert not np.shares_memory(third[2], w.value)


def test_arguments_are_not_modified(backend):
    x = sg.placeholder((3,), name="x")
    w = sg.parameter(np.zeros(3), name="w")
    f = sg.function([x], sg.exp(x), updates=[(w, x * 2.0)], backend=backend)
    xv = np.array([1.0, 2.0, 3.0])
    f(xv)
    np.testing.assert_array_equal(xv, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(w.value, [2.0, 4.0, 6.0])
    assert not np.shares_memory(w.value, xv)


# -- NaNs ------------------------------------------------------------------------------------
def test_nans_propagate_as_in_numpy(backend):
    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.array([[1.0], [2.0], [3.0]]), name="w")
    outs = [x * 2.0 + 1.0, sg.exp(x), sg.sum(x, axis=1), sg.max(x, axis=1), sg.min(x, axis=0),
            sg.maximum(x, 0.0), sg.maximum(0.0, x), sg.minimum(x, 0.0), sg.relu(x), x @ w,
            sg.mean(x), sg.clip(x, min=0.0), sg.sqrt(x), sg.log(x),
            sg.grad(sg.sum(x * x), x), 1.0 / x, x / 0.0]
    f = sg.function([x], outs, backend=backend)
    xv = np.array([[np.nan, 1.0, -2.0], [0.5, np.inf, -np.inf], [-1.0, 4.0, 0.0]])
    with np.errstate(all="ignore"):
        expected = [xv * 2.0 + 1.0, np.exp(xv), np.sum(xv, axis=1), np.max(xv, axis=1),
                    np.min(xv, axis=0), np.maximum(xv, 0.0), np.maximum(0.0, xv),
                    np.minimum(xv, 0.0), np.maximum(xv, 0.0), xv @ w.value, np.mean(xv),
                    np.where(xv < 0.0, 0.0, xv), np.sqrt(xv), np.log(xv), 2 * xv, 1.0 / xv,
                    xv / 0.0]
    for k, (v, e) in enumerate(zip(f(xv), expected)):
        np.testing.assert_allclose(v, e, err_msg=f"output {k}", **tol(np.float64))


def test_nan_parameter_update_propagates(backend):
    w = sg.parameter(np.array([1.0, 2.0]), name="w")
    x = sg.placeholder((2,), name="x")
    step = sg.function([x], sg.sum(w), updates=[(w, w * x)], backend=backend)
    step(np.array([np.nan, 1.0]))
    assert np.isnan(w.value[0]) and w.value[1] == 2.0
    assert np.isnan(step(np.array([1.0, 1.0])))


# -- the two-layer MLP of PyTorch's "Learning PyTorch with Examples" ---------------------------
N, D_IN, H, D_OUT = 64, 1000, 100, 10
LEARNING_RATE = 1e-6
STEPS = 500


def mlp_data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, D_IN)), rng.standard_normal((N, D_OUT)),
            rng.standard_normal((D_IN, H)), rng.standard_normal((H, D_OUT)))


def handwritten_step(x, y, w1, w2):
    """The tutorial's NumPy backprop: returns the loss and gradients, updates nothing."""
    h = x.dot(w1)
    h_relu = np.maximum(h, 0)
    y_pred = h_relu.dot(w2)
    loss = np.square(y_pred - y).sum()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T.dot(grad_y_pred)
    grad_h_relu = grad_y_pred.dot(w2.T)
    grad_h = grad_h_relu.copy()
    grad_h[h < 0] = 0
    grad_w1 = x.T.dot(grad_h)
    return loss, grad_w1, grad_w2


@pytest.fixture
def mlp_reference(compile_once):
    def build():
        x, y, w1, w2 = mlp_data()
        first = handwritten_step(x, y, w1, w2)
        losses = []
        for _ in range(STEPS):
            loss, grad_w1, grad_w2 = handwritten_step(x, y, w1, w2)
            losses.append(loss)
            w1 -= LEARNING_RATE * grad_w1
            w2 -= LEARNING_RATE * grad_w2
        return SimpleNamespace(first=first, losses=np.array(losses), w1=w1, w2=w2)
    return compile_once("mlp reference", build)


@pytest.fixture
def mlp_trained(backend, compile_once):
    """Build the MLP, then train it STEPS steps with one compiled step (per backend)."""
    def build():
        x_data, y_data, w1_init, w2_init = mlp_data()
        x = sg.placeholder((None, D_IN), name="x")
        y = sg.placeholder((None, D_OUT), name="y")
        w1 = sg.parameter(w1_init, name="w1")
        w2 = sg.parameter(w2_init, name="w2")
        h_relu = sg.clip(x @ w1, min=0)
        y_pred = h_relu @ w2
        loss = sg.sum((y_pred - y) ** 2)
        grad_w1, grad_w2 = sg.grad(loss, [w1, w2])
        step = sg.function([x, y], [loss, grad_w1, grad_w2],
                           updates=[(w1, w1 - LEARNING_RATE * grad_w1),
                                    (w2, w2 - LEARNING_RATE * grad_w2)], backend=backend)
        first = step(x_data, y_data)  # outputs come from the weights before the update
        losses = [float(first[0])]
        for _ in range(STEPS - 1):
            losses.append(float(step(x_data, y_data)[0]))
        return SimpleNamespace(first=first, losses=np.array(losses), w1=w1.value.copy(),
                               w2=w2.value.copy())
    return compile_once(("mlp", backend), build)


def test_mlp_gradients_equal_handwritten_backprop(mlp_trained, mlp_reference):
    for got, want in zip(mlp_trained.first, mlp_reference.first):
        assert got.dtype == np.float64 and got.shape == np.shape(want)
        scale = np.max(np.abs(want))
        assert np.max(np.abs(got - want)) <= 1e-10 * scale


def test_mlp_training_equals_handwritten_loop(mlp_trained, mlp_reference):
    losses, want = mlp_trained.losses, mlp_reference.losses
    assert losses.shape == (STEPS,)
    assert want[-1] < 1e-3 * want[0]  # the tutorial's loss does fall
    np.testing.assert_allclose(losses, want, rtol=1e-7, atol=1e-12 * want[0])
    for got, ref in [(mlp_trained.w1, mlp_reference.w1), (mlp_trained.w2, mlp_reference.w2)]:
        assert np.max(np.abs(got - ref)) <= 1e-10 * np.max(np.abs(ref))


# -- the gradient of one parameter as a function of another ------------------------------------
@pytest.mark.parametrize("lr_kind", ["parameter", "placeholder"])
def test_gradient_through_an_sgd_step_wrt_learning_rate(lr_kind, backend):
    rng = np.random.default_rng(7)
    x_train, y_train = rng.standard_normal((8, 3)), rng.standard_normal(8)
    x_val, y_val = rng.standard_normal((5, 3)), rng.standard_normal(5)
    w = sg.parameter(rng.standard_normal(3), name="w")
    if lr_kind == "parameter":
        lr = sg.parameter(np.array(0.05), name="lr")
        inputs = []
    else:
        lr = sg.placeholder((), name="lr")
        inputs = [lr]

    def loss(weights, x, y):
        return sg.mean(sg.tanh(sg.constant(x) @ weights) * 2.0 - sg.constant(y)) ** 2 \
            + sg.mean((sg.constant(x) @ weights - sg.constant(y)) ** 2)

    inner = loss(w, x_train, y_train)
    w_next = w - lr * sg.grad(inner, w)
    outer = loss(w_next, x_val, y_val)
    d_lr, d_w = sg.grad(outer, [lr, w])
    assert d_lr.shape == () and d_w.shape == (3,)
    f = sg.function(inputs, [outer, d_lr, d_w], backend=backend)

    def at(lr_value, w_value=None):
        if w_value is not None:
            w.value = w_value
        if lr_kind == "parameter":
            lr.value = np.array(lr_value)
            return f()
        return f(lr_value)

    w0 = w.value.copy()
    _, d_lr_v, d_w_v = at(0.05)
    eps = 1e-6
    fd_lr = (float(at(0.05 + eps)[0]) - float(at(0.05 - eps)[0])) / (2 * eps)
    np.testing.assert_allclose(float(d_lr_v), fd_lr, **FD_TOL)
    fd_w = np.zeros(3)
    for k in range(3):
        step = np.zeros(3)
        step[k] = eps
        fd_w[k] = (float(at(0.05, w0 + step)[0]) - float(at(0.05, w0 - step)[0])) / (2 * eps)
    np.testing.assert_allclose(d_w_v, fd_w, **FD_TOL)
    # the chain rule by hand: d outer/d lr = -grad_outer(w_next) . grad_inner(w)
    w.value = w0
    g_in = sg.function(inputs, [sg.grad(inner, w), w_next], backend=backend)
    g_inner, w_next_v = g_in() if lr_kind == "parameter" else g_in(0.05)
    g_out = sg.function([], sg.grad(loss(sg.constant(w_next_v), x_val, y_val),
                                    sg.constant(w_next_v)), backend=backend)()
    np.testing.assert_allclose(float(d_lr_v), -float(g_out @ g_inner), **tol(np.float64))


def test_out_of_bounds_indices_raise_naming_the_op_and_line(backend):
    x = sg.placeholder((4, 5), name="x")
    i = sg.placeholder((4,), np.int64, name="i")
    pairs = x[np.arange(4), i]; line = caller_line()  # noqa: E702
    columns = x[:, i]
    f = sg.function([x, i], [pairs, columns], backend=backend)
    xv = np.arange(20.0).reshape(4, 5)
    got = f(xv, np.array([0, -1, 4, -5]))
    assert got[0].tolist() == xv[np.arange(4), [0, -1, 4, -5]].tolist()
    for bad in ([0, 1, 7, 2], [0, -6, 1, 1]):     # in range once the axes are merged, not before
        with pytest.raises(IndexError, match=f"take at test_function.py:{line}: .*out of bounds"):
            f(xv, np.array(bad))


@pytest.mark.parametrize("unchecked", [False, True])
def test_the_fast_call_path_gives_way_whenever_its_case_does_not_hold(backend, unchecked):
    # a call goes straight to its plan's steady code only for right arrays of a known shape,
    # parameters nobody updates and anomaly mode off; every other call takes the general path
    x = sg.placeholder((None,), np.float32, name="x")
    w = sg.parameter(np.ones(3, np.float32), name="w")
    f = sg.function([x], sg.sum(x) * w, backend=backend)
    call = f.unchecked if unchecked else f
    a = np.arange(3, dtype=np.float32)
    for _ in range(3):                           # the first call plans; the later ones are fast
        np.testing.assert_allclose(call(a), np.full(3, 3.0))
    np.testing.assert_allclose(call(np.arange(5, dtype=np.float32)), np.full(3, 10.0))
    np.testing.assert_allclose(f(a.astype(np.float64)), np.full(3, 3.0))   # converted
    np.testing.assert_allclose(f(np.arange(6, dtype=np.float32)[::2]), np.full(3, 6.0))
    with pytest.raises(TypeError, match="'x'"):
        call()
    with pytest.raises(TypeError, match="'x'"):
        call(a, a)
    with sg.detect_anomaly():
        bad = np.array([np.inf, -np.inf, 0], np.float32)
        with pytest.raises(sg.AnomalyError):
            call(bad)
    double = sg.function([], [], updates=[(w, w * 2.0)], backend=backend)
    double()                                     # from now on f's calls take w's lock
    np.testing.assert_allclose(call(a), np.full(3, 6.0))
