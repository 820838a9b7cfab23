"""``sg.init``: PyTorch's fans and gains, reproducible draws, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import staticgrad as sg


def test_fans_of_dense_and_convolution_weights():
    assert sg.init.fans((784, 128)) == (784, 128)
    assert sg.init.fans((16, 3, 5, 5)) == (75, 400)
    with pytest.raises(ValueError, match="two or more axes"):
        sg.init.fans((10,))


@pytest.mark.parametrize("draw, std", [
    (lambda r: sg.init.kaiming_uniform((2000, 50), r), math.sqrt(2 / 2000)),
    (lambda r: sg.init.kaiming_normal((2000, 50), r), math.sqrt(2 / 2000)),
    (lambda r: sg.init.kaiming_normal((2000, 50), r, "tanh"), 5 / 3 / math.sqrt(2000)),
    (lambda r: sg.init.xavier_uniform((2000, 50), r), math.sqrt(2 / 2050)),
    (lambda r: sg.init.xavier_normal((2000, 50), r, gain=2.0), 2 * math.sqrt(2 / 2050)),
])
def test_spread_matches_pytorch(draw, std):
    w = draw(np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (2000, 50)
    assert abs(w.mean()) < 0.05 * std
    assert abs(w.std() / std - 1) < 0.02


def test_same_generator_seed_same_values_and_dtype_option():
    a = sg.init.kaiming_uniform((5, 4), np.random.default_rng(7), dtype=np.float64)
    b = sg.init.kaiming_uniform((5, 4), np.random.default_rng(7), dtype=np.float64)
    assert a.dtype == np.float64 and np.array_equal(a, b)


def test_unknown_nonlinearity_is_named():
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        sg.init.kaiming_normal((3, 3), np.random.default_rng(0), "gelu")


def test_initial_values_train_as_parameters():
    w = sg.parameter(sg.init.xavier_uniform((4, 3), np.random.default_rng(1)), name="w")
    assert w.value.dtype == np.float32 and w.shape == (4, 3)
    np.testing.assert_array_equal(sg.init.zeros(3), np.zeros(3, np.float32))
