"""Debugging: anomaly mode (``check_finite``, ``detect_anomaly``), ``gradcheck`` and
``gradgradcheck``, and the ``STATICGRAD_DEBUG`` printouts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import caller_line

import staticgrad as sg

ROOT = Path(__file__).resolve().parent.parent
HERE = os.path.basename(__file__)


# -- anomaly mode --------------------------------------------------------------------------------
def test_a_nan_output_names_the_forward_node_and_its_line(backend):
    x = sg.placeholder((3,), name="x")
    y = sg.log(x) * 2.0; line = caller_line()  # noqa: E702
    f = sg.function([x], y, backend=backend, check_finite=True)
    with pytest.raises(sg.AnomalyError) as err:
        f(np.array([1.0, -1.0, 2.0]))
    message = str(err.value)
    assert message.startswith(f"NaN in log(x) at {HERE}:{line}")
    assert "f64[3]" in message and "log(-1.0)" in message and "index (1,)" in message
    assert "No parameter was updated" in message
    assert err.value.node.op == "log"


def test_a_non_finite_gradient_names_the_backward_rule_and_the_forward_line(backend):
    x = sg.placeholder((2,), name="x")
    loss = sg.sum(sg.sqrt(x)); line = caller_line()  # noqa: E702
    f = sg.function([x], sg.grad(loss, x), backend=backend, check_finite=True)
    with pytest.raises(sg.AnomalyError) as err:
        f(np.array([4.0, 0.0]))
    assert str(err.value).startswith(f"inf in SqrtBackward of sqrt(x) at {HERE}:{line}")
    assert err.value.node.origin.op == "sqrt"


def test_an_anomalous_step_writes_nothing_to_parameters(backend):
    x = sg.placeholder((2,), name="x")
    w = sg.parameter(np.array([1.0, 2.0]), name="w")
    loss = sg.sum(sg.log(x * w))
    step = sg.function([x], loss, updates=[(w, w - 0.1 * sg.grad(loss, w))], backend=backend,
                       check_finite=True)
    step(np.array([1.0, 1.0]))
    before = w.value.copy()
    with pytest.raises(sg.AnomalyError, match="the update of parameter 'w'|output 0"):
        step(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(w.value, before)
    step(np.array([2.0, 2.0]))          # the function still works afterwards
    assert not np.array_equal(w.value, before)


def test_a_non_finite_argument_is_reported_as_the_placeholder(backend):
    x = sg.placeholder((2,), name="x")
    f = sg.function([x], x * 2.0, backend=backend, check_finite=True)
    with pytest.raises(sg.AnomalyError, match="in placeholder 'x' \\(an argument of this call"):
        f(np.array([1.0, np.inf]))


def test_detect_anomaly_switches_checking_on_for_every_function(backend):
    x = sg.placeholder((), name="x")
    f = sg.function([x], sg.log(x), backend=backend)
    assert np.isnan(f(-1.0))               # off: NaN propagates as in NumPy
    with sg.detect_anomaly():
        with pytest.raises(sg.AnomalyError):
            f(-1.0)
        assert float(f(1.0)) == 0.0
    assert np.isnan(f(-1.0))


def test_finite_results_pass_and_integer_outputs_are_ignored(backend):
    x = sg.placeholder((3,), name="x")
    n = sg.placeholder((3,), np.int64, name="n")
    f = sg.function([x, n], [sg.exp(x), n * 2], backend=backend, check_finite=True)
    values = f(np.zeros(3), np.arange(3))
    assert values[0].tolist() == [1.0, 1.0, 1.0] and values[1].tolist() == [0, 2, 4]


# -- gradcheck -----------------------------------------------------------------------------------
def test_gradcheck_accepts_correct_gradients():
    x = sg.placeholder((3,), np.float32, name="x")
    w = sg.parameter(np.array([[0.5, -1.0], [2.0, 0.3], [1.0, 1.0]]), name="w")
    y = sg.tanh(x @ w) * 3.0
    assert sg.gradcheck(y, [x, w], [np.array([0.1, 0.2, -0.3]), w.value])
    assert sg.gradgradcheck(sg.sum(sg.sin(x) * x ** 3), x, np.array([0.1, 0.2, -0.3]))


def test_gradcheck_reports_the_worst_element_of_a_wrong_gradient():
    # stop_gradient hides one factor from autodiff: d(x * x)/dx comes out as x, not 2x
    x = sg.placeholder((3,), name="x")
    y = sg.stop_gradient(x) * x; line = caller_line()  # noqa: E702
    values = np.array([1.0, -2.0, 3.0])
    assert sg.gradcheck(y, x, values, raise_exception=False) is False
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(y, x, values)
    message = str(err.value)
    assert f"built at {HERE}:{line}" in message and "with respect to 'x'" in message
    assert "in 3 of 9 entries" in message
    # the worst entry is the largest |x|: analytic 3, numeric 6
    assert re.search(r"d output 0\[2\] / d x\[2\]: analytic 3\.0, numeric 6\.0\d*", message)


def test_gradgradcheck_catches_a_wrong_second_derivative():
    # the first derivative of x**3 is right, but written so that its own derivative is not
    x = sg.placeholder((2,), name="x")
    cube = x * x * x
    y = cube + (3.0 * sg.stop_gradient(x * x) * x - sg.stop_gradient(3.0 * x * x * x)) - cube \
        + sg.stop_gradient(cube)
    values = np.array([0.5, -1.5])
    assert sg.gradcheck(y, x, values)
    with pytest.raises(sg.GradcheckError, match="gradgradcheck: .*first-order gradient 0"):
        sg.gradgradcheck(y, x, values)


def test_gradcheck_rejects_inputs_that_are_not_leaves():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(TypeError, match="input 0 must be a placeholder or a parameter"):
        sg.gradcheck(sg.sum(x), [x * 2.0], [np.ones(2)])


# -- STATICGRAD_DEBUG ------------------------------------------------------------------------------
def debug_output(level: str, tmp_path: Path) -> str:
    code = """
        import numpy as np, staticgrad as sg
        x = sg.placeholder((None,), np.float32, name="x")
        f = sg.function([x], sg.sum(sg.exp(x) * 2.0))
        f(np.ones(3, np.float32))
    """
    env = dict(os.environ, STATICGRAD_DEBUG=level, STATICGRAD_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_debug_levels_print_graph_kernels_and_source(tmp_path):
    one = debug_output("1", tmp_path)
    assert "staticgrad: compiled" in one and "= exp x" in one and "rewrites:" in one
    assert "kernels (" not in one and "@numba.njit" not in one
    two = debug_output("2", tmp_path)
    assert "kernels (1):" in two and "k0 loop over [x.0]" in two and "@numba.njit" not in two
    three = debug_output("3", tmp_path)
    assert "@numba.njit" in three and "def run(" in three
    assert debug_output("", tmp_path) == ""
