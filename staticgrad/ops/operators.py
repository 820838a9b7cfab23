"""Python operators and NumPy-style methods on ``Tensor``, spelled as the op functions.

``tensor.py`` defines the node and knows no op; ``install`` gives the class its operators once
the ops exist (``ops/__init__`` calls it last), so the two modules do not import each other.
"""

from __future__ import annotations

from .. import ops


def _reshape(self, *shape):
    return ops.reshape(self, shape[0] if len(shape) == 1 else shape)


def _transpose(self, *axes):
    return ops.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)


def _reducer(name: str):
    def method(self, axis=None, keepdims=False):
        return getattr(ops, name)(self, axis, keepdims)
    method.__name__ = name
    method.__doc__ = f"``sg.{name}(self, axis, keepdims)``."
    return method


METHODS = {
    "__add__": lambda self, other: ops.add(self, other),
    "__radd__": lambda self, other: ops.add(other, self),
    "__sub__": lambda self, other: ops.subtract(self, other),
    "__rsub__": lambda self, other: ops.subtract(other, self),
    "__mul__": lambda self, other: ops.multiply(self, other),
    "__rmul__": lambda self, other: ops.multiply(other, self),
    "__truediv__": lambda self, other: ops.divide(self, other),
    "__rtruediv__": lambda self, other: ops.divide(other, self),
    "__pow__": lambda self, other: ops.power(self, other),
    "__rpow__": lambda self, other: ops.power(other, self),
    "__matmul__": lambda self, other: ops.matmul(self, other),
    "__rmatmul__": lambda self, other: ops.matmul(other, self),
    "__neg__": lambda self: ops.negative(self),
    "__pos__": lambda self: self,
    "__abs__": lambda self: ops.abs(self),
    "__lt__": lambda self, other: ops.less(self, other),
    "__le__": lambda self, other: ops.less_equal(self, other),
    "__gt__": lambda self, other: ops.greater(self, other),
    "__ge__": lambda self, other: ops.greater_equal(self, other),
    "__eq__": lambda self, other: ops.equal(self, other),
    "__ne__": lambda self, other: ops.not_equal(self, other),
    "__getitem__": lambda self, index: ops.getitem(self, index),
    "reshape": _reshape,
    "transpose": _transpose,
    "astype": lambda self, dtype: ops.cast(self, dtype),
    **{name: _reducer(name) for name in ("sum", "mean", "max", "min", "prod")},
}


def install(cls) -> None:
    """Give ``cls`` (``Tensor``) its arithmetic, comparison, indexing and reduction methods.

    >>> import staticgrad as sg
    >>> (sg.placeholder((2,), name="x") * 2.0).op
    'mul'
    """
    for name, method in METHODS.items():
        setattr(cls, name, method)
    cls.T = property(lambda self: ops.transpose(self), doc="The axes reversed (NumPy ``.T``).")
