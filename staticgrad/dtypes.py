"""Dtype rules: NumPy 2 promotion with weak Python scalars, so float32 stays float32.

A Python scalar (or ``sg.constant(2.0)``) is *weak*: it takes the dtype of the strong operand
it meets, exactly as in NumPy 2 (NEP 50). Arrays and tensors are strong.
"""

from __future__ import annotations

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
WEAK_DEFAULT = {bool: np.dtype(np.bool_), int: np.dtype(np.int64), float: np.dtype(np.float64)}


def is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def short(dtype: np.dtype) -> str:
    """``float32`` -> ``f32``, ``int64`` -> ``i64``, ``bool`` -> ``bool`` for listings."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return "bool"
    return f"{dtype.kind}{dtype.itemsize * 8}"


def weak_stand_in(dtype: np.dtype):
    """A Python scalar of the same kind, which NumPy treats as weak in promotion."""
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return 0
    if dtype.kind == "c":
        return 0j
    return 0.0


def common_dtype(dtypes: list, weak: list) -> np.dtype:
    """The dtype NumPy 2 would compute in for these operands (weak ones yield)."""
    strong = [d for d, w in zip(dtypes, weak) if not w]
    if not strong:
        return np.result_type(*[weak_stand_in(d) for d in dtypes]) if len(dtypes) > 1 \
            else np.dtype(dtypes[0])
    return np.result_type(*strong, *[weak_stand_in(d) for d, w in zip(dtypes, weak) if w])


def ufunc_dtype(ufunc: np.ufunc, dtypes: list) -> np.dtype:
    """The output dtype NumPy gives ``ufunc`` on operands of these dtypes."""
    try:
        return ufunc.resolve_dtypes(tuple(dtypes) + (None,))[-1]
    except TypeError as err:
        raise TypeError(f"not defined for {', '.join(str(d) for d in dtypes)} "
                        f"({type(err).__name__}: {err})") from None


def check_castable(src: np.dtype, dst: np.dtype, what: str) -> None:
    if not np.can_cast(src, dst, casting="same_kind"):
        raise TypeError(f"{what}: cannot cast {src} to {dst} safely (same_kind)")
