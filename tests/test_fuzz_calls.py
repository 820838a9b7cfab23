"""Bad calls, fuzzed: wrong ranks, sizes and dtypes, non-contiguous and Fortran-ordered arrays,
empty batches, Python scalars and lists, ragged lists and objects, NaN and inf. Each call of a
compiled training step either works, giving what the NumPy reference gives, or raises one clear
error (a TypeError or ValueError naming a placeholder, or the op and the call-time sizes that
disagree; an AnomalyError under ``check_finite``), and writes nothing to the parameters."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import staticgrad as sg

CLASSES, FEATURES = 4, 3
NAMES = ("x", "labels")


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    x = sg.placeholder((None, FEATURES), np.float32, name="x")
    labels = sg.placeholder((None,), np.int64, name="labels")
    w = sg.parameter(rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), name="w")
    b = sg.parameter(np.zeros(CLASSES, np.float32), name="b")
    log_p = sg.log_softmax(x @ w + b, axis=-1)
    loss = -sg.mean(sg.sum(sg.one_hot(labels, CLASSES, np.float32) * log_p, axis=-1))
    updates = sg.optim.sgd(loss, [w, b], lr=0.05)
    steps = {check: sg.function([x, labels], loss, updates=updates, check_finite=check)
             for check in (False, True)}
    # the oracle: the same step on the reference, its new values as outputs (no update)
    oracle = sg.function([x, labels], [loss, *[v for _, v in updates]], backend="numpy")
    steps[False](np.zeros((2, FEATURES), np.float32), np.zeros(2, np.int64))
    steps[True](np.zeros((2, FEATURES), np.float32), np.zeros(2, np.int64))
    # every parameter the step writes (the optimizer's state too), in the updates' order
    return [p for p, _ in updates], steps, oracle


def good(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "x":
        return rng.standard_normal((n, FEATURES)).astype(np.float32)
    return rng.integers(0, CLASSES, n)


@st.composite
def argument(draw, kind: str, n: int):
    """One argument for placeholder ``kind`` of a call whose batch is ``n``, and its label."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = good(n, kind, rng)
    how = draw(st.sampled_from([
        "good", "good", "float64", "int32", "bool", "float16", "complex", "float-for-int",
        "strided", "fortran", "reversed", "read-only", "rank+1", "rank-1", "wrong-size",
        "scalar", "list", "ragged", "none", "string", "object", "nan", "inf"]))
    event(f"{kind}: {how}")
    if how == "float64":
        a = a.astype(np.float64)
    elif how == "int32":
        a = a.astype(np.int32)
    elif how == "bool":
        a = a.astype(bool)
    elif how == "float16":
        a = a.astype(np.float16)
    elif how == "complex":
        a = a.astype(np.complex64)
    elif how == "float-for-int":
        a = a.astype(np.float32) + 0.5
    elif how == "strided":
        a = np.repeat(a, 2, axis=0)[::2]
    elif how == "fortran":
        a = np.asfortranarray(a) if a.ndim == 2 else np.asfortranarray(a[:, None])[:, 0]
    elif how == "reversed":
        a = a[::-1]
    elif how == "read-only":
        a = a.copy()
        a.flags.writeable = False
    elif how == "rank+1":
        a = a[None]
    elif how == "rank-1":
        a = a[0] if len(a) else np.zeros(a.shape[1:], a.dtype)
    elif how == "wrong-size":
        a = good(n, kind, rng)[:, :2] if kind == "x" else good(n + 1, kind, rng)
    elif how == "scalar":
        a = 1.5 if kind == "x" else 2
    elif how == "list":
        a = a.tolist()
    elif how == "ragged":
        a = [[1.0, 2.0, 3.0], [1.0]] if kind == "x" else [[1], [2, 3]]
    elif how == "none":
        a = None
    elif how == "string":
        a = np.array(["a"] * n)
    elif how == "object":
        a = object()
    elif how in ("nan", "inf") and kind == "x" and n:
        a = a.copy()
        a.flat[draw(st.integers(0, a.size - 1))] = np.nan if how == "nan" else np.inf
    return a, how


LAYOUTS = {"good", "strided", "fortran", "reversed", "read-only", "list"}
# what must work for each placeholder (x is float32, labels int64): any layout, and a dtype
# NumPy casts with same_kind; NaN and inf are data (for labels they leave the array alone)
MUST_WORK_FOR = {"x": LAYOUTS | {"float64", "int32", "bool", "float16", "nan", "inf"},
                 "labels": LAYOUTS | {"int32", "bool", "nan", "inf"}}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), check=st.booleans(), n=st.integers(0, 6))
def test_a_bad_call_works_or_raises_one_clear_error_and_writes_nothing(model, data, check, n):
    params, steps, oracle = model
    (xa, xhow), (la, lhow) = data.draw(argument("x", n)), data.draw(argument("labels", n))
    before = [p.value.copy() for p in params]
    try:
        want = oracle(xa, la)
    except (TypeError, ValueError) as err:
        want = err
    try:
        got = steps[check](xa, la)
    except (TypeError, ValueError, FloatingPointError) as err:
        got = err
    if isinstance(got, Exception):
        for p, v in zip(params, before):         # nothing written
            np.testing.assert_array_equal(p.value, v)
        message = str(got)
        if isinstance(got, sg.AnomalyError):
            event("raised AnomalyError")
            assert check and not isinstance(want, Exception)
            assert not all(np.isfinite(np.asarray(v)).all() for v in want)
            return
        event(f"raised {type(got).__name__}")
        assert isinstance(want, Exception) and type(got) is type(want), (got, want)
        named = [f"'{name}'" in message or re.search(rf"\b{name}\.0=", message)
                 for name in NAMES]
        assert any(named), message                   # names a placeholder...
        assert message.count("\n") == 0, message     # ...in one line
        # an empty list is a float64 array of shape (0,) to NumPy
        must_work = xhow in MUST_WORK_FOR["x"] and lhow in MUST_WORK_FOR["labels"] and \
            not ("list" in (xhow, lhow) and n == 0)
        assert not must_work, (xhow, lhow, message)
        return
    event("worked")
    assert not isinstance(want, Exception), want
    loss, *new = want
    np.testing.assert_allclose(got, loss, rtol=2e-4, atol=2e-5, equal_nan=True)
    for p, v in zip(params, new):                    # the update, applied as the oracle says
        np.testing.assert_allclose(p.value, v, rtol=2e-4, atol=2e-5, equal_nan=True)
    for p in params:                                 # start each example from finite weights
        if not np.isfinite(p.value).all():
            p.value = np.zeros_like(p.value)
