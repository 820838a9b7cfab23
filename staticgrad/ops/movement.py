"""Movement ops: index maps that move data without arithmetic.

reshape, transpose, broadcast_to, slice (and its adjoint unslice), concatenate, take (and its
adjoint untake), plus numel, the element count of some axes that a call-time size may need.
Indexing (``x[1:, None, idx]``) is a composite of slice, reshape and take.
"""

from __future__ import annotations

import numpy as np

from .. import shapes as sh
from ..tensor import Tensor, as_tensor, build_error, constant
from . import Kind, apply, defop, promote, same_dtype
from .elementwise import logical_or, where

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "swapaxes",
           "concatenate", "take", "getitem", "numel"]


# -- reshape -------------------------------------------------------------------------------
def reshape_shape(shapes, shape):
    (x,) = shapes
    before, after = sh.size(x), sh.size(shape)
    # a size known only at call time is checked then, when this rule runs on the real sizes
    if before != after and sh.is_static(before) and sh.is_static(after):
        raise ValueError(f"cannot reshape {sh.show(x)} ({sh.show_dim(sh.size(x))} elements) "
                         f"into {sh.show(shape)}")
    return shape


defop("reshape", Kind.MOVEMENT, reshape_shape, same_dtype,
      lambda x, shape: np.reshape(x, shape), lambda g, y, x, shape: [reshape(g, x.dims)])


def reshape(x, shape) -> Tensor:
    """``x`` with a new shape of the same size; one entry may be ``-1`` (inferred).

    >>> import staticgrad as sg
    >>> sg.placeholder((None, 2, 3)).reshape(-1, 6).shape
    (None, 6)
    """
    x = as_tensor(x)
    shape = (shape,) if isinstance(shape, (int, np.integer, sh.Dim)) else tuple(shape)
    try:
        target = resolve_reshape(x.dims, shape)
    except ValueError as err:
        raise build_error(err, "reshape", [x]) from None
    if target == x.dims:
        return x
    return apply("reshape", [x], shape=target)


def resolve_reshape(dims, shape) -> tuple:
    if any(d is None for d in shape):
        raise ValueError(f"size None in target shape {shape}: use -1 for the one size to infer")
    shape = tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in shape)
    unknown = [i for i, d in enumerate(shape) if sh.is_static(d) and d == -1]
    if len(unknown) > 1:
        raise ValueError(f"can only infer one size in {shape}")
    if any(sh.is_static(d) and d < -1 for d in shape):
        raise ValueError(f"negative size in {shape}")
    if not unknown:
        return shape
    known = sh.size(d for d in shape if not (sh.is_static(d) and d == -1))
    inferred = sh.exact_div(sh.size(dims), known)
    if inferred is None:
        raise ValueError(f"cannot reshape {sh.show(dims)} into {shape}")
    return shape[:unknown[0]] + (inferred,) + shape[unknown[0] + 1:]


def expand_dims(x, axis) -> Tensor:
    """``x`` with new size-1 axes at ``axis`` (an int or a tuple), as ``np.expand_dims``."""
    x = as_tensor(x)
    axes = sh.normalize_axes(axis, x.ndim + (1 if isinstance(axis, int) else len(axis)))
    dims = list(x.dims)
    for a in axes:
        dims.insert(a, 1)
    return reshape(x, tuple(dims))


def squeeze(x, axis=None) -> Tensor:
    """``x`` without size-1 axes (all of them, or those in ``axis``), as ``np.squeeze``."""
    x = as_tensor(x)
    axes = [a for a, d in enumerate(x.dims) if d == 1] if axis is None \
        else sh.normalize_axes(axis, x.ndim)
    for a in axes:
        if x.dims[a] != 1:
            raise build_error(ValueError(f"cannot squeeze axis {a} of size "
                                         f"{sh.show_dim(x.dims[a])}"), "squeeze", [x])
    return reshape(x, tuple(d for a, d in enumerate(x.dims) if a not in axes))


# -- transpose -----------------------------------------------------------------------------
def transpose_shape(shapes, axes):
    (x,) = shapes
    return tuple(x[a] for a in axes)


defop("transpose", Kind.MOVEMENT, transpose_shape, same_dtype,
      lambda x, axes: np.transpose(x, axes),
      lambda g, y, x, axes: [transpose(g, tuple(int(a) for a in np.argsort(axes)))])


def transpose(x, axes=None) -> Tensor:
    """``x`` with its axes permuted (reversed by default), as ``np.transpose``."""
    x = as_tensor(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(int(a) for a in axes)
    if sorted(a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes) != list(range(x.ndim)):
        raise build_error(ValueError(f"axes {axes} are not a permutation of {x.ndim} axes"),
                          "transpose", [x])
    axes = tuple(a % x.ndim for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    return apply("transpose", [x], axes=axes)


def swapaxes(x, axis1: int, axis2: int) -> Tensor:
    """``x`` with two axes interchanged, as ``np.swapaxes``."""
    x = as_tensor(x)
    axes = list(range(x.ndim))
    a, b = sh.normalize_axis(axis1, x.ndim), sh.normalize_axis(axis2, x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


# -- broadcast_to --------------------------------------------------------------------------
def broadcast_to_shape(shapes, shape):
    (x,) = shapes
    if len(x) > len(shape) or sh.broadcast_shapes(shape, x) != tuple(shape):
        raise ValueError(f"cannot broadcast {sh.show(x)} to {sh.show(shape)}")
    return shape


# the gradient is ``g`` itself: autodiff sums it back over the broadcast axes
defop("broadcast_to", Kind.MOVEMENT, broadcast_to_shape, same_dtype,
      lambda x, shape: np.broadcast_to(x, shape), lambda g, y, x, shape: [g])


def broadcast_to(x, shape) -> Tensor:
    """``x`` repeated along new or size-1 axes to ``shape``, as ``np.broadcast_to``."""
    x = as_tensor(x)
    shape = tuple(shape)
    if shape == x.dims:
        return x
    return apply("broadcast_to", [x], shape=shape)


# -- slice and its adjoint -----------------------------------------------------------------
def slice_shape(shapes, index):
    (x,) = shapes
    return tuple(sh.slice_length(d, *s) for d, s in zip(x, index))


def as_slices(index):
    return tuple(slice(*s) for s in index)


def unslice_shape(shapes, index, shape):
    (g,) = shapes
    if slice_shape([shape], index) != g:
        raise ValueError(f"a {sh.show(g)} slice does not fit {sh.show(shape)} at {index}")
    return shape


def unslice_reference(g, index, shape):
    out = np.zeros(shape, g.dtype)
    out[as_slices(index)] = g
    return out


defop("slice", Kind.MOVEMENT, slice_shape, same_dtype,
      lambda x, index: x[as_slices(index)],
      lambda g, y, x, index: [apply("unslice", [g], index=index, shape=x.dims)])
defop("unslice", Kind.MOVEMENT, unslice_shape, same_dtype, unslice_reference,
      lambda g, y, x, index, shape: [slice_(g, index)])


def slice_(x: Tensor, index: tuple) -> Tensor:
    """Basic slicing: ``index`` holds one ``(start, stop, step)`` per axis."""
    index = tuple(canonical_slice(d, s) for d, s in zip(x.dims, index))
    if all(s == (0, d, 1) or s == (None, None, 1) for s, d in zip(index, x.dims)):
        return x
    return apply("slice", [x], index=index)


def canonical_slice(dim, s) -> tuple:
    start, stop, step = s
    step = 1 if step is None else int(step)
    if step == 0:
        raise ValueError("slice step cannot be zero")
    static = sh.is_static(dim) and all(sh.is_static(v) for v in (start, stop) if v is not None)
    if static and step > 0:
        start, stop, _ = slice(start, stop, step).indices(dim)
        return (start, max(stop, start), step)
    return (start, stop, step)


# -- indexing ------------------------------------------------------------------------------
def getitem(x, index) -> Tensor:
    """NumPy indexing: ints, slices, ``None``, ``...`` and integer arrays (a gather).

    >>> import staticgrad as sg
    >>> x = sg.placeholder((4, 5), name="x")
    >>> x[1:, None, -1].shape
    (3, 1)
    """
    x = as_tensor(x)
    try:
        return index_tensor(x, index if isinstance(index, tuple) else (index,))
    except (ValueError, TypeError, IndexError) as err:
        raise build_error(err, "getitem", [x]) from None


def is_array_index(item) -> bool:
    return isinstance(item, (Tensor, np.ndarray, list))


def index_tensor(x: Tensor, index: tuple) -> Tensor:
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if used > x.ndim:
        raise IndexError(f"too many indices: {used} for {x.ndim} dimensions")
    if Ellipsis in [i for i in index if not is_array_index(i)]:
        at = next(k for k, i in enumerate(index) if i is Ellipsis)
        index = index[:at] + (slice(None),) * (x.ndim - used) + index[at + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - used)

    slices, dims, arrays, axis = [], [], [], 0
    for item in index:
        if item is None:
            dims.append(1)
            continue
        size = x.dims[axis]
        if is_array_index(item):
            slices.append((None, None, 1))
            arrays.append((len(dims), as_tensor(np.asarray(item)) if isinstance(item, list)
                           else as_tensor(item)))
            dims.append(size)
        elif isinstance(item, slice):
            s = canonical_slice(size, (item.start, item.stop, item.step))
            slices.append(s)
            dims.append(sh.slice_length(size, *s))
        elif isinstance(item, (int, np.integer)):
            i = int(item)
            if sh.is_static(size) and not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {size}")
            if sh.is_static(size) and i < 0:
                i += size
            slices.append((i, i + 1 if i != -1 else None, 1))
        else:
            raise TypeError(f"unsupported index {item!r}: use ints, slices, None, ... or "
                            f"integer arrays")
        axis += 1
    out = reshape(slice_(x, tuple(slices)), tuple(dims))
    return gather(out, arrays) if arrays else out


def gather(x: Tensor, arrays: list) -> Tensor:
    """Advanced indexing by integer arrays on adjacent axes: one ``take`` on merged axes."""
    axes = [a for a, _ in arrays]
    if axes != list(range(axes[0], axes[0] + len(axes))):
        raise IndexError("integer-array indices must be on adjacent axes")
    first, last = axes[0], axes[-1] + 1
    for _, idx in arrays:
        if idx.dtype.kind not in "iu":
            raise IndexError(f"arrays used as indices must be of integer type, not {idx.dtype}")
    if len(arrays) == 1:   # take itself wraps negative indices and checks the bounds
        return take(x, arrays[0][1], axis=first)
    flat = outside = None
    for a, idx in arrays:
        n = numel(x, (a,), idx.dtype)
        bad = logical_or(idx < -n, idx >= n)
        outside = bad if outside is None else logical_or(outside, bad)
        idx = idx + n * (idx < 0)  # NumPy's negative indices
        flat = idx if flat is None else flat * n + idx
    merged = x.dims[:first] + (sh.size(x.dims[first:last]),) + x.dims[last:]
    # an index outside its own axis may still land inside the merged one: send it past the end,
    # where take's bounds check catches it
    flat = where(outside, numel(x, tuple(range(first, last)), flat.dtype), flat)
    return take(reshape(x, merged), flat, axis=first)


# -- concatenate ---------------------------------------------------------------------------
def concatenate_shape(shapes, axis):
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for k, (a, b) in enumerate(zip(s, first))
                                        if k != axis):
            raise ValueError("all sizes except along axis "
                             f"{axis} must match: " + ", ".join(sh.show(s) for s in shapes))
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]


def concatenate_vjp(g, y, *xs, axis):
    start, grads = 0, []
    for x in xs:
        stop = start + x.dims[axis]
        index = tuple((start, stop, 1) if a == axis else (None, None, 1)
                      for a in range(x.ndim))
        grads.append(apply("slice", [g], index=index))
        start = stop
    return grads


defop("concatenate", Kind.MOVEMENT, concatenate_shape,
      lambda dtypes, axis: np.result_type(*dtypes),
      lambda *xs, axis: np.concatenate(xs, axis=axis), concatenate_vjp)


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis, as ``np.concatenate``.

    >>> import staticgrad as sg
    >>> sg.concatenate([sg.placeholder((2, 3)), sg.placeholder((4, 3))]).shape
    (6, 3)
    """
    xs = promote(*tensors)
    if not xs:
        raise ValueError("need at least one tensor to concatenate")
    try:
        axis = sh.normalize_axis(axis, xs[0].ndim)
    except ValueError as err:
        raise build_error(err, "concatenate", xs) from None
    if len(xs) == 1:
        return xs[0]
    return apply("concatenate", xs, axis=axis)


# -- take and its adjoint ------------------------------------------------------------------
def take_shape(shapes, axis):
    a, idx = shapes
    return a[:axis] + tuple(idx) + a[axis + 1:]


def take_dtype(dtypes, axis):
    if dtypes[1].kind not in "iu":
        raise TypeError(f"indices must be integers, not {dtypes[1]}")
    return dtypes[0]


def untake_shape(shapes, axis, size):
    g, idx = shapes
    return g[:axis] + (size,) + g[axis + len(idx):]


def untake_reference(g, idx, axis, size):
    out = np.zeros(g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:], g.dtype)
    np.add.at(out, (slice(None),) * axis + (idx,), g)
    return out


defop("take", Kind.MOVEMENT, take_shape, take_dtype,
      lambda a, idx, axis: np.take(a, idx, axis=axis),
      lambda g, y, a, idx, axis: [apply("untake", [g, idx], axis=axis, size=a.dims[axis]),
                                  None])
defop("untake", Kind.OPAQUE, untake_shape, same_dtype, untake_reference,
      lambda g, y, gy, idx, axis, size: [take(g, idx, axis=axis), None])


def take(a, indices, axis=None) -> Tensor:
    """Elements of ``a`` at integer ``indices`` along ``axis`` (flattened if None), as np.take.

    >>> import numpy as np, staticgrad as sg
    >>> sg.take(sg.placeholder((5, 3)), np.array([0, 4, 4]), axis=0).shape
    (3, 3)
    """
    a = as_tensor(a)
    indices = as_tensor(np.asarray(indices) if isinstance(indices, list) else indices)
    if axis is None:
        a, axis = reshape(a, -1), 0
    try:
        axis = sh.normalize_axis(axis, a.ndim)
    except ValueError as err:
        raise build_error(err, "take", [a, indices]) from None
    return apply("take", [a, indices], axis=axis)


# -- numel: a size as a value --------------------------------------------------------------
defop("numel", Kind.MOVEMENT, lambda shapes, axes, dtype: (), lambda dtypes, axes, dtype: dtype,
      lambda x, axes, dtype: np.asarray(np.prod([x.shape[a] for a in axes]), dtype=dtype))


def numel(x, axes=None, dtype=np.int64) -> Tensor:
    """The number of elements of ``x`` along ``axes`` (all by default) as a 0-d tensor."""
    x = as_tensor(x)
    axes = sh.normalize_axes(axes, x.ndim)
    count = sh.size(x.dims[a] for a in axes)
    if sh.is_static(count):
        return constant(np.asarray(count, dtype=dtype))
    return apply("numel", [x], axes=axes, dtype=np.dtype(dtype))
