"""Building graphs: Tensor attributes, requires_grad/grad_fn, interning, immutability, weak
scalars, operators, call-time sizes and build-time errors that name op, shapes and line."""

import numpy as np
import pytest
from conftest import caller_line, run, tol

import staticgrad as sg

THIS_FILE = "test_tensor.py"


# -- building and the public attributes ----------------------------------------------------
def test_placeholder_attributes():
    x = sg.placeholder((None, 1000), dtype=np.float32, name="x")
    assert isinstance(x, sg.Tensor)
    assert x.shape == (None, 1000)
    assert x.dtype == np.dtype(np.float32) and isinstance(x.dtype, np.dtype)
    assert x.name == "x"
    assert x.op is None and x.inputs == () and x.is_leaf
    assert x.grad_fn is None
    assert x.requires_grad is False


def test_placeholder_defaults_to_float64_and_fixed_shape():
    x = sg.placeholder((2, 3))
    assert x.shape == (2, 3) and x.dtype == np.float64
    assert sg.placeholder(()).shape == ()


def test_parameter_attributes_and_value_copy():
    init = np.arange(6.0).reshape(2, 3)
    w = sg.parameter(init, name="w")
    assert isinstance(w, sg.Parameter) and isinstance(w, sg.Tensor)
    assert w.shape == (2, 3) and w.dtype == np.float64 and w.name == "w"
    assert w.is_leaf and w.op is None and w.inputs == () and w.grad_fn is None
    assert w.requires_grad is True
    np.testing.assert_array_equal(w.value, init)
    init[0, 0] = 100.0  # the parameter holds a copy
    assert w.value[0, 0] == 0.0


def test_parameter_keeps_float32():
    w = sg.parameter(np.ones((3, 2), np.float32))
    assert w.dtype == np.float32 and w.value.dtype == np.float32


def test_constant_attributes():
    c = sg.constant(np.array([1.0, 2.0, 3.0], np.float32), name="c")
    assert isinstance(c, sg.Constant)
    assert c.shape == (3,) and c.dtype == np.float32 and c.name == "c"
    assert c.is_leaf and c.op is None and c.inputs == () and c.grad_fn is None
    assert c.requires_grad is False
    np.testing.assert_array_equal(c.value, [1.0, 2.0, 3.0])


def test_op_node_attributes():
    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.ones((3, 2)), name="w")
    y = x @ w
    assert y.op == "matmul" and y.inputs == (x, w)
    assert not y.is_leaf and y.shape == (None, 2) and y.dtype == np.float64
    z = y * 2.0
    assert z.op == "mul" and z.inputs[0] is y and z.inputs[1].is_leaf
    assert isinstance(z.inputs, tuple)


# -- requires_grad ---------------------------------------------------------------------------
def test_requires_grad_leaves():
    assert sg.parameter(np.ones(3)).requires_grad
    assert sg.placeholder((3,), requires_grad=True).requires_grad
    assert not sg.placeholder((3,)).requires_grad
    assert not sg.constant(1.0).requires_grad
    assert not sg.constant(np.ones(3)).requires_grad


def test_requires_grad_propagates_from_any_input():
    w = sg.parameter(np.ones(3), name="w")
    x = sg.placeholder((3,), name="x")
    c = sg.constant(np.ones(3))
    assert (w * x).requires_grad and (x * w).requires_grad
    assert (w + c).requires_grad and sg.exp(w).requires_grad and sg.sum(w).requires_grad
    assert sg.sign(w).requires_grad  # no useful gradient, but derived from w as in PyTorch
    assert not (x * c).requires_grad and not sg.exp(x).requires_grad
    assert not (c + 1.0).requires_grad


def test_requires_grad_false_for_comparisons_and_stop_gradient():
    w = sg.parameter(np.ones(3), name="w")
    for cmp in (w < 1.0, w <= 1.0, w > 1.0, w >= 1.0, w == 1.0, w != 1.0):
        assert cmp.dtype == np.bool_ and not cmp.requires_grad
    stopped = sg.stop_gradient(w)
    assert not stopped.requires_grad
    assert not (stopped * 2.0).requires_grad
    assert (stopped * w).requires_grad  # w itself still flows


# -- grad_fn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("build, name", [
    (lambda a, b: a * b, "MulBackward"),
    (lambda a, b: a + b, "AddBackward"),
    (lambda a, b: a - b, "SubBackward"),
    (lambda a, b: a / b, "DivBackward"),
    (lambda a, b: a ** b, "PowBackward"),
    (lambda a, b: a @ b, "MatmulBackward"),
    (lambda a, b: -a, "NegBackward"),
    (lambda a, b: sg.exp(a), "ExpBackward"),
    (lambda a, b: sg.sum(a), "SumBackward"),
])
def test_grad_fn_names(build, name):
    a = sg.placeholder((3, 3), name="a", requires_grad=True)
    b = sg.placeholder((3, 3), name="b")
    y = build(a, b)
    assert y.grad_fn is not None
    assert y.grad_fn.name == name
    assert repr(y.grad_fn) == f"<{name}>"


def test_grad_fn_none_on_leaves():
    assert sg.placeholder((2,)).grad_fn is None
    assert sg.parameter(np.ones(2)).grad_fn is None
    assert sg.constant(2.0).grad_fn is None


# -- hash-consing ----------------------------------------------------------------------------
def test_equal_expressions_are_one_node():
    x = sg.placeholder((None, 3), name="x")
    y = sg.placeholder((None, 3), name="y")
    assert x * y is x * y
    assert (x + 1.0) * y is (x + 1.0) * y
    assert sg.exp(x).sum(axis=0) is sg.exp(x).sum(axis=0)
    assert x * y is not y * x
    assert x.sum(axis=0) is not x.sum(axis=1)
    assert x.sum(axis=0, keepdims=True) is not x.sum(axis=0)


def test_leaves_are_never_merged():
    assert sg.placeholder((3,), name="x") is not sg.placeholder((3,), name="x")
    assert sg.parameter(np.ones(3)) is not sg.parameter(np.ones(3))


def test_constants_intern_by_value():
    assert sg.constant(2.0) is sg.constant(2.0)
    assert sg.constant(np.array([1.0, 2.0])) is sg.constant(np.array([1.0, 2.0]))
    assert sg.constant(np.array([1.0, 2.0])) is not sg.constant(np.array([1.0, 3.0]))
    assert sg.constant(np.array([1.0, 2.0])) is not sg.constant(np.array([1.0, 2.0], np.float32))
    assert sg.constant(np.ones((2, 1))) is not sg.constant(np.ones((1, 2)))
    x = sg.placeholder((3,), name="x")
    assert x * 2.0 is x * 2.0


def test_constant_copies_and_freezes_its_value():
    data = np.array([1.0, 2.0])
    c = sg.constant(data)
    data[0] = 5.0
    assert c.value[0] == 1.0
    with pytest.raises(ValueError):
        c.value[0] = 3.0


# -- immutability ----------------------------------------------------------------------------
@pytest.mark.parametrize("attr, value", [
    ("name", "other"), ("dtype", np.dtype(np.float32)), ("op", "add"), ("inputs", ()),
    ("shape", (1,)), ("requires_grad", True), ("new_attribute", 1),
])
def test_tensors_are_immutable(attr, value):
    x = sg.placeholder((3,), name="x")
    y = x * 2.0
    for t in (x, y, sg.parameter(np.ones(3), name="w"), sg.constant(1.0)):
        with pytest.raises(AttributeError):
            setattr(t, attr, value)
    with pytest.raises(AttributeError):
        del y.name
    assert x.name == "x" and y.op == "mul"


def test_tensor_has_no_truth_value():
    x = sg.placeholder((3,), name="x")
    with pytest.raises(TypeError):
        bool(x > 0)


# -- parameter values --------------------------------------------------------------------------
def test_parameter_value_assignment_same_shape(backend):
    w = sg.parameter(np.ones((2, 3)), name="w")
    w.value = np.full((2, 3), 4.0)
    np.testing.assert_array_equal(w.value, np.full((2, 3), 4.0))
    f = sg.function([], sg.sum(w), backend=backend)
    assert float(f()) == 24.0
    w.value = np.zeros((2, 3))
    assert float(f()) == 0.0  # the function reads the value at call time


@pytest.mark.parametrize("bad", [np.ones((3, 2)), np.ones(6), np.ones((2, 3, 1)), 1.0])
def test_parameter_value_other_shape_refused(bad):
    w = sg.parameter(np.ones((2, 3)), name="w")
    with pytest.raises(ValueError, match="w"):
        w.value = bad
    np.testing.assert_array_equal(w.value, np.ones((2, 3)))


def test_parameter_value_keeps_dtype():
    w = sg.parameter(np.ones(3, np.float32), name="w")
    w.value = np.array([1.0, 2.0, 3.0])  # float64 in, cast to the parameter's float32
    assert w.value.dtype == np.float32
    np.testing.assert_array_equal(w.value, [1.0, 2.0, 3.0])
    n = sg.parameter(np.arange(3), name="n")
    with pytest.raises(TypeError):
        n.value = np.array([0.5, 1.5, 2.5])


# -- weak scalars and dtype promotion ----------------------------------------------------------
@pytest.mark.parametrize("other", [2.0, 2, True, sg.constant(2.0), sg.constant(2)])
def test_float32_with_weak_scalar_stays_float32(other):
    x = sg.placeholder((3,), np.float32, name="x")
    for y in (x * other, other * x, x + other, x - other, other - x, x / other, x ** other,
              other / x, sg.maximum(x, other), sg.where(x > 0, x, other)):
        assert y.dtype == np.float32


def test_weak_constant_flag_and_strong_scalars():
    x = sg.placeholder((3,), np.float32, name="x")
    assert sg.constant(2.0).dtype == np.float64  # weak: only its own dtype says float64
    assert (x * sg.constant(2.0)).dtype == np.float32
    assert (x * (sg.constant(2.0) * 3.0)).dtype == np.float32  # weak op weak stays weak
    assert (x * np.float64(2.0)).dtype == np.float64  # NumPy scalars are strong in NumPy 2
    assert (x * sg.constant(2.0, dtype=np.float64)).dtype == np.float64
    assert (x * np.ones(3)).dtype == np.float64
    assert (x + sg.placeholder((3,))).dtype == np.float64


@pytest.mark.parametrize("dtype, scalar, expected", [
    (np.int32, 2, np.int32), (np.int32, 2.0, np.float64), (np.int64, 2.5, np.float64),
    (np.float32, 2, np.float32), (np.float64, 2.0, np.float64), (np.bool_, 1, np.int64),
])
def test_promotion_matches_numpy(dtype, scalar, expected):
    x = sg.placeholder((3,), dtype, name="x")
    assert (x * scalar).dtype == np.dtype(expected)
    assert (x * scalar).dtype == (np.ones(3, dtype) * scalar).dtype


def test_ndarray_op_tensor_gives_tensor(backend):
    x = sg.placeholder((2, 3), name="x")
    a = np.arange(6.0).reshape(2, 3)
    built = [a + x, a - x, a * x, a / (x + 10.0), a ** x, np.ones((4, 2)) @ x, a < x, a == x]
    assert all(isinstance(t, sg.Tensor) for t in built)
    assert built[5].shape == (4, 3)
    xv = np.linspace(0.5, 1.5, 6).reshape(2, 3)
    vals = run([x], built, xv, backend=backend)
    expected = [a + xv, a - xv, a * xv, a / (xv + 10.0), a ** xv, np.ones((4, 2)) @ xv,
                a < xv, a == xv]
    for v, e in zip(vals, expected):
        np.testing.assert_allclose(v, e, **tol(np.float64))


# -- operators ---------------------------------------------------------------------------------
# Each table below is compiled into one function per backend (and dtype) that computes every
# case at once; each parametrized test checks its own output (a compiled function costs ~1 s).
BINARY = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b),
    ("lt", lambda a, b: a < b), ("le", lambda a, b: a <= b), ("gt", lambda a, b: a > b),
    ("ge", lambda a, b: a >= b), ("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b),
]
A_VALUE = [[0.5, 1.0, 2.0], [1.5, 1.0, 0.25]]
B_VALUE = [1.0, 1.0, 0.5]


@pytest.fixture
def binary_results(backend, compile_once):
    def build(dtype):
        a = sg.placeholder((2, 3), dtype, name="a")
        b = sg.placeholder((3,), dtype, name="b")
        outs = [fn(a, b) for _, fn in BINARY] + [fn(2.0, a) for _, fn in BINARY]
        f = sg.function([a, b], outs, backend=backend)
        values = f(np.array(A_VALUE, dtype), np.array(B_VALUE, dtype))
        return {"nodes": outs, "values": values}
    return lambda dtype: compile_once(("binary", np.dtype(dtype).name, backend),
                                      lambda: build(dtype))


@pytest.mark.parametrize("k", range(len(BINARY)), ids=[op for op, _ in BINARY])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_operators(k, dtype, binary_results):
    op, fn = BINARY[k]
    results = binary_results(dtype)
    av, bv = np.array(A_VALUE, dtype), np.array(B_VALUE, dtype)
    out, value = results["nodes"][k], results["values"][k]
    assert out.op == op
    expected = fn(av, bv)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert value.dtype == expected.dtype
    np.testing.assert_allclose(value, expected, **tol(dtype))
    # the reflected form, with a weak Python scalar on the left
    rev, rev_value = results["nodes"][len(BINARY) + k], results["values"][len(BINARY) + k]
    assert rev.dtype == fn(dtype(2.0), av).dtype
    np.testing.assert_allclose(rev_value, fn(dtype(2.0), av), **tol(dtype))


def test_unary_and_matmul_operators(backend):
    a = sg.placeholder((2, 3), name="a")
    m = sg.placeholder((3, 4), name="m")
    av = np.arange(6.0).reshape(2, 3) - 2.0
    mv = np.arange(12.0).reshape(3, 4) / 7.0
    outs = [-a, a @ m, +a, abs(a), a.T]
    assert outs[0].op == "neg" and outs[1].op == "matmul" and outs[4].op == "transpose"
    assert outs[2] is a
    vals = run([a, m], outs, av, mv, backend=backend)
    for v, e in zip(vals, [-av, av @ mv, av, np.abs(av), av.T]):
        np.testing.assert_allclose(v, e, **tol(np.float64))


MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (6, 3, 4)), ((4,), (2, 4, 3)),
]


@pytest.fixture
def matmul_results(backend, compile_once):
    def build():
        rng = np.random.default_rng(5)
        inputs, arrays, outs = [], [], []
        for a_shape, b_shape in MATMUL_SHAPES:
            a, b = sg.placeholder(a_shape), sg.placeholder(b_shape)
            inputs += [a, b]
            arrays += [rng.standard_normal(a_shape), rng.standard_normal(b_shape)]
            outs.append(a @ b)
        values = sg.function(inputs, outs, backend=backend)(*arrays)
        return outs, values, arrays
    return compile_once(("matmul", backend), build)


@pytest.mark.parametrize("k", range(len(MATMUL_SHAPES)), ids=str)
def test_matmul_follows_numpy(k, matmul_results):
    outs, values, arrays = matmul_results
    expected = arrays[2 * k] @ arrays[2 * k + 1]
    assert outs[k].shape == expected.shape
    np.testing.assert_allclose(values[k], expected, **tol(np.float64))


INDICES = [
    1, -1, slice(1, 3), slice(None, None, 2), slice(None, None, -1), (slice(None), 2),
    (None, 1), (1, None, slice(None, None, 2)), (Ellipsis, 0), (0, Ellipsis),
    (None, Ellipsis, None), (slice(-3, None), slice(4, 1, -1)), (slice(10, 20),), (2, -3),
    (slice(1, None), None, slice(None, -1)), (slice(None, None, -2), slice(None, None, -3)),
]
X_VALUE = np.arange(20.0).reshape(4, 5)


@pytest.fixture
def indexing_results(backend, compile_once):
    def build():
        x = sg.placeholder((4, 5), name="x")
        outs = [x[index] for index in INDICES]
        return outs, sg.function([x], outs, backend=backend)(X_VALUE)
    return compile_once(("indexing", backend), build)


@pytest.mark.parametrize("k", range(len(INDICES)), ids=[repr(i) for i in INDICES])
def test_indexing_matches_numpy(k, indexing_results):
    outs, values = indexing_results
    expected = X_VALUE[INDICES[k]]
    assert outs[k].shape == expected.shape
    np.testing.assert_array_equal(values[k], expected)


def test_indexing_with_call_time_size(backend):
    x = sg.placeholder((None, 5), name="x")
    outs = [x[1:], x[-1], x[::-1], x[1:-1], x[:, 1:], x[None], x[..., 2]]
    assert [o.shape for o in outs] == [(None, 5), (5,), (None, 5), (None, 5), (None, 4),
                                       (1, None, 5), (None,)]
    f = sg.function([x], outs, backend=backend)
    for n in (3, 6):
        xv = np.arange(n * 5.0).reshape(n, 5)
        expected = [xv[1:], xv[-1], xv[::-1], xv[1:-1], xv[:, 1:], xv[None], xv[..., 2]]
        for v, e in zip(f(xv), expected):
            np.testing.assert_array_equal(v, e)


RESHAPES = [(20,), (2, 10), (2, -1), (-1, 5), (5, 2, 2), (1, 20, 1)]


@pytest.fixture
def reshape_results(backend, compile_once):
    def build():
        x = sg.placeholder((4, 5), name="x")
        outs = []
        for shape in RESHAPES:
            outs += [x.reshape(shape), x.reshape(*shape), x.reshape(shape).T]
        return outs, sg.function([x], outs + [x.T], backend=backend)(X_VALUE)
    return compile_once(("reshape", backend), build)


@pytest.mark.parametrize("k", range(len(RESHAPES)), ids=str)
def test_reshape_and_transpose(k, reshape_results):
    outs, values = reshape_results
    shape = RESHAPES[k]
    expected = [X_VALUE.reshape(shape), X_VALUE.reshape(*shape), X_VALUE.reshape(shape).T]
    for j, e in enumerate(expected):
        assert outs[3 * k + j].shape == e.shape
        np.testing.assert_array_equal(values[3 * k + j], e)
    np.testing.assert_array_equal(values[-1], X_VALUE.T)


REDUCTIONS = [(method, axis, keepdims) for method in ("sum", "mean", "max")
              for axis in (None, 0, 1, -1, (0, 1), (-2,)) for keepdims in (False, True)]
R_VALUE = np.random.default_rng(3).standard_normal((4, 5))


@pytest.fixture
def reduction_results(backend, compile_once):
    def build():
        x = sg.placeholder((4, 5), name="x")
        outs = [getattr(x, m)(axis=axis, keepdims=kd) for m, axis, kd in REDUCTIONS]
        return x, outs, sg.function([x], outs, backend=backend)(R_VALUE)
    return compile_once(("reductions", backend), build)


@pytest.mark.parametrize("k", range(len(REDUCTIONS)), ids=[str(r) for r in REDUCTIONS])
def test_reduction_methods(k, reduction_results):
    x, outs, values = reduction_results
    method, axis, keepdims = REDUCTIONS[k]
    expected = getattr(R_VALUE, method)(axis=axis, keepdims=keepdims)
    assert outs[k].shape == expected.shape and outs[k].dtype == np.float64
    assert getattr(x, method)(axis, keepdims) is outs[k]  # positional form: the same node
    np.testing.assert_allclose(values[k], expected, **tol(np.float64))


def test_reductions_keep_float32(backend, rng):
    x = sg.placeholder((None, 5), np.float32, name="x")
    outs = [x.sum(), x.mean(axis=0), x.max(axis=1, keepdims=True)]
    assert all(o.dtype == np.float32 for o in outs)
    xv = rng.standard_normal((3, 5)).astype(np.float32)
    vals = run([x], outs, xv, backend=backend)
    assert all(v.dtype == np.float32 for v in vals)
    for v, e in zip(vals, [xv.sum(), xv.mean(axis=0), xv.max(axis=1, keepdims=True)]):
        np.testing.assert_allclose(v, e, **tol(np.float32))


# -- call-time sizes -------------------------------------------------------------------------
def test_none_sizes_show_as_none():
    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.ones((3, 4)))
    assert (x @ w).shape == (None, 4)
    assert sg.concatenate([x, x]).shape == (None, 3)
    assert x.reshape(-1).shape == (None,)
    assert x.sum(axis=1).shape == (None,) and x.sum(axis=0).shape == (3,)


def test_named_sizes_are_shared(backend):
    a = sg.placeholder(("batch", 3), name="a")
    b = sg.placeholder(("batch", 3), name="b")
    assert a.shape == (None, 3) and b.shape == (None, 3)
    f = sg.function([a, b], a * b, backend=backend)
    np.testing.assert_array_equal(f(np.ones((2, 3)), np.full((2, 3), 2.0)), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(f(np.ones((5, 3)), np.ones((5, 3))), np.ones((5, 3)))
    with pytest.raises(ValueError, match="'b'"):
        f(np.ones((2, 3)), np.ones((3, 3)))


def test_named_size_links_placeholders_in_reshape(backend):
    a = sg.placeholder(("n", 2), name="a")
    b = sg.placeholder(("n",), name="b")
    out = a.reshape(-1) * sg.concatenate([b, b])  # 2*n elements on both sides
    assert out.shape == (None,)
    av, bv = np.arange(6.0).reshape(3, 2), np.arange(3.0)
    np.testing.assert_array_equal(run([a, b], out, av, bv, backend=backend),
                                  av.reshape(-1) * np.concatenate([bv, bv]))


# -- build-time errors: op, shapes and the user's line -----------------------------------------
def check_message(err, op: str, shapes: list, line: int) -> None:
    message = str(err.value)
    assert op in message, message
    for s in shapes:
        assert s in message, message
    assert f"{THIS_FILE}:{line}" in message, message


def test_error_shapes_do_not_broadcast():
    a = sg.placeholder((2, 3), name="a")
    b = sg.placeholder((4,), name="b")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        a + b
    check_message(err, "add", ["[2,3]", "[4]"], line)


def test_error_in_elementwise_from_reflected_operator():
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        np.ones((5,)) * a
    check_message(err, "mul", ["[5]", "[2,3]"], line)


def test_error_matmul_inner_mismatch():
    a = sg.placeholder((None, 3), name="a")
    b = sg.placeholder((4, 5), name="b")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        a @ b
    check_message(err, "matmul", ["[4,5]", "inner sizes 3 and 4"], line)


def test_error_bad_reshape():
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        a.reshape(4, 2)
    check_message(err, "reshape", ["[2,3]", "[4,2]"], line)
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        a.reshape(-1, 4)
    check_message(err, "reshape", ["[2,3]"], line)


@pytest.mark.parametrize("method", ["sum", "mean", "max"])
def test_error_bad_axis_in_reduction(method):
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        getattr(a, method)(axis=2)
    check_message(err, method, ["[2,3]", "axis 2"], line)


@pytest.mark.parametrize("build, op", [
    (lambda a: sg.softmax(a, axis=3), "softmax"),
    (lambda a: sg.logsumexp(a, axis=-3), "logsumexp"),
    (lambda a: sg.transpose(a, (0, 2)), "transpose"),
    (lambda a: sg.concatenate([a, a], axis=2), "concatenate"),
])
def test_error_bad_axis_in_functions(build, op):
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(ValueError) as err:
        build(a)
    check_message(err, op, ["[2,3]"], build.__code__.co_firstlineno)


@pytest.mark.parametrize("index, kind", [
    (5, IndexError), (-3, IndexError), ((0, 0, 0), IndexError), ((slice(None), 3), IndexError),
    (1.5, TypeError), ("a", TypeError),
])
def test_error_bad_index(index, kind):
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(kind) as err:
        line = caller_line() + 1
        a[index]
    check_message(err, "getitem", ["[2,3]"], line)


def test_error_boolean_mask_points_to_where():
    a = sg.placeholder((2, 3), name="a")
    with pytest.raises(IndexError, match=r"sg\.where\(mask, x, 0\)") as err:
        line = caller_line() + 1
        a[np.array([True, False])]
    check_message(err, "getitem", ["[2,3]"], line)


@pytest.mark.parametrize("build, op", [
    (lambda x: sg.conv2d(x, sg.placeholder((4, 3, 3, 3))), "conv2d"),     # 2 channels, not 3
    (lambda x: sg.conv2d(x, sg.placeholder((4, 2, 5, 5))), "conv2d"),     # kernel > input
    (lambda x: sg.conv2d(x, sg.placeholder((4, 2, 3, 3)), stride=2, padding="same"), "conv2d"),
    (lambda x: sg.max_pool2d(x, 2, padding=2), "max_pool2d"),
    (lambda x: sg.dropout(x, 1.5, 0), "dropout"),
    (lambda x: sg.layer_norm(x, (3,)), "layer_norm"),
])
def test_error_conv_and_friends(build, op):
    x = sg.placeholder((1, 2, 4, 4), name="x")
    with pytest.raises(ValueError) as err:
        build(x)
    assert op in str(err.value) and "test_tensor.py:" in str(err.value), str(err.value)


def test_error_names_the_line_inside_a_helper():
    # the line reported is the user's, not staticgrad's: here, the line inside this helper
    def layer(x, w):
        return x @ w  # the line the error must name

    x = sg.placeholder((None, 3), name="x")
    w = sg.parameter(np.ones((2, 2)), name="w")
    with pytest.raises(ValueError) as err:
        layer(x, w)
    check_message(err, "matmul", ["[2,2]"], layer.__code__.co_firstlineno + 1)
    assert "staticgrad/" not in str(err.value).split(" at ")[-1]


def test_error_in_composite_names_composite():
    a = sg.placeholder((2, 3), name="a")
    b = sg.placeholder((4,), name="b")
    with pytest.raises(ValueError) as err:
        line = caller_line() + 1
        sg.clip(a, min=b)
    check_message(err, "clip", ["[2,3]", "[4]"], line)


def test_error_types_are_typeerror_for_dtypes():
    a = sg.placeholder((3,), np.float64, name="a")
    idx = sg.placeholder((3,), np.float64, name="idx")
    with pytest.raises(TypeError) as err:
        line = caller_line() + 1
        sg.take(a, idx)
    check_message(err, "take", ["[3]"], line)


def test_list_of_tensors_is_not_a_tensor():
    a = sg.placeholder((3,), name="a")
    with pytest.raises(TypeError, match="stack"):
        a + [a, a]
