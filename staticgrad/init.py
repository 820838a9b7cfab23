"""Initial parameter values, as ``torch.nn.init``: NumPy arrays to give ``sg.parameter``.

Each takes a shape, a ``numpy.random.Generator`` (reproducible: no hidden global state) and a
dtype. Fans follow PyTorch: for a weight of shape ``(fan_in, fan_out)`` (staticgrad's
``x @ W`` layout) ``fan_in`` is the first axis; for a convolution kernel ``(out, in, *k)``
``fan_in = in * prod(k)`` and ``fan_out = out * prod(k)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fans", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
           "zeros"]


def fans(shape: tuple) -> tuple:
    """``(fan_in, fan_out)`` of a weight shape.

    >>> fans((784, 128)), fans((16, 3, 5, 5))
    ((784, 128), (75, 400))
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of two or more axes, got shape {shape}")
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def gain_of(nonlinearity: str) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}
    if nonlinearity not in gains:
        raise ValueError(f"nonlinearity must be one of {sorted(gains)}, got {nonlinearity!r}")
    return gains[nonlinearity]


def kaiming_uniform(shape, rng: np.random.Generator, nonlinearity: str = "relu",
                    dtype=np.float32) -> np.ndarray:
    """He initialisation: uniform on ``±gain * sqrt(3 / fan_in)``.

    >>> w = kaiming_uniform((1000, 10), np.random.default_rng(0))
    >>> w.dtype, bool(abs(w.std() - np.sqrt(2 / 1000)) < 0.005)
    (dtype('float32'), True)
    """
    bound = gain_of(nonlinearity) * math.sqrt(3.0 / fans(shape)[0])
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal(shape, rng: np.random.Generator, nonlinearity: str = "relu",
                   dtype=np.float32) -> np.ndarray:
    """He initialisation: normal with standard deviation ``gain / sqrt(fan_in)``."""
    std = gain_of(nonlinearity) / math.sqrt(fans(shape)[0])
    return (std * rng.standard_normal(shape)).astype(dtype)


def xavier_uniform(shape, rng: np.random.Generator, gain: float = 1.0,
                   dtype=np.float32) -> np.ndarray:
    """Glorot initialisation: uniform on ``±gain * sqrt(6 / (fan_in + fan_out))``.

    >>> w = xavier_uniform((300, 100), np.random.default_rng(0))
    >>> bool(np.abs(w).max() <= np.sqrt(6 / 400))
    True
    """
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def xavier_normal(shape, rng: np.random.Generator, gain: float = 1.0,
                  dtype=np.float32) -> np.ndarray:
    """Glorot initialisation: normal with standard deviation ``gain * sqrt(2 / (in + out))``."""
    fan_in, fan_out = fans(shape)
    return (gain * math.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(shape)).astype(dtype)


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """Zeros (biases)."""
    return np.zeros(shape, dtype)
