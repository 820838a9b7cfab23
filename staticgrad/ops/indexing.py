"""Indexing: ``x[...]`` with ints, slices, ``None``, ``...`` and integer arrays, built from
slice, reshape and ``take``; ``take`` (a gather, fused as an index map whose entry is read from
the index tensor) and its adjoint ``untake`` (a scatter-add).
"""

from __future__ import annotations

import numpy as np

from .. import shapes as sh
from ..index import Gather
from ..tensor import Tensor, as_tensor, build_error
from . import Kind, apply, defop, same_dtype
from .elementwise import logical_or, where
from .movement import canonical_slice, numel, reshape, slice_

__all__ = ["take", "take_along_axis", "embedding", "getitem"]


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
        if idx.dtype == np.bool_:
            raise IndexError("a boolean mask selects a number of elements known only at call "
                             "time: use sg.where(mask, x, 0) (or a masked sum) instead")
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


def take_index(node: Tensor, index: tuple) -> list:
    """The gathered axis is read at the index tensor's value; the index tensor itself is read
    at the output's axes that it spans."""
    a, idx = node.inputs
    axis = dict(node.attrs)["axis"]
    inner = tuple(index[axis:axis + idx.ndim])
    return [tuple(index[:axis]) + (Gather(idx, inner, a.dims[axis]),)
            + tuple(index[axis + idx.ndim:]), inner]


def untake_emit(node: Tensor, code) -> list:
    """Scatter-add: repeated indices add up."""
    g, idx = node.inputs
    axis, size = dict(node.attrs)["axis"], dict(node.attrs)["size"]
    out, gn, xn = code.array(node), code.array(g), code.array(idx)
    k = idx.ndim
    j = code.fresh("j")

    def element(i):
        target = ", ".join([*i[:axis], j, *i[axis + k:]])
        return [f"{j} = {xn}[{', '.join(i[axis:axis + k]) or '()'}]",
                f"{j} = {j} + {code.dim(size)} if {j} < 0 else {j}",
                f"{out}[{target}] += {gn}[{', '.join(i) or '()'}]"]

    return [*code.fill(out, node.dims, "0"), *code.each(g.dims, element)]


def take_checks(node: Tensor) -> list:
    """Indices are checked against the gathered axis before any loop reads with them, so a
    bad index raises instead of reading or writing outside an array."""
    attrs = dict(node.attrs)
    size = node.inputs[0].dims[attrs["axis"]] if node.op == "take" else attrs["size"]
    return [(node.inputs[1], size)]


defop("take", Kind.MOVEMENT, take_shape, take_dtype,
      lambda a, idx, axis: np.take(a, idx, axis=axis),
      lambda g, y, a, idx, axis: [apply("untake", [g, idx], axis=axis, size=a.dims[axis]),
                                  None],
      index=take_index, stores=lambda node: [node.inputs[1]], checks=take_checks)
defop("untake", Kind.OPAQUE, untake_shape, same_dtype, untake_reference,
      lambda g, y, gy, idx, axis, size: [take(g, idx, axis=axis), None],
      emit=untake_emit, checks=take_checks)


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


def take_along_axis(a, indices, axis: int) -> Tensor:
    """``np.take_along_axis``: ``out[..., j, ...] = a[..., indices[..., j, ...], ...]`` along
    ``axis``, ``indices`` of ``a``'s rank (other axes of size 1 broadcast). The other axes'
    sizes must be known when the graph is built.

    >>> import numpy as np, staticgrad as sg
    >>> logits = sg.placeholder((4, 10))
    >>> sg.take_along_axis(logits, sg.placeholder((4, 1), np.int64), axis=1).shape
    (4, 1)
    """
    a, indices = as_tensor(a), as_tensor(np.asarray(indices) if isinstance(indices, list)
                                         else indices)
    try:
        axis = sh.normalize_axis(axis, a.ndim)
        if indices.ndim != a.ndim:
            raise ValueError(f"indices {sh.show(indices.dims)} must have the rank of "
                             f"{sh.show(a.dims)}")
        index = []
        for k, d in enumerate(a.dims):
            if k == axis:
                index.append(indices)
                continue
            if not sh.is_static(d):
                raise ValueError(f"axis {k} needs a size known when the graph is built")
            where_ = [1] * a.ndim
            where_[k] = d
            index.append(np.arange(d).reshape(where_))
        return index_tensor(a, tuple(index))
    except (ValueError, TypeError, IndexError) as err:
        raise build_error(err, "take_along_axis", [a, indices]) from None


def embedding(indices, weight) -> Tensor:
    """PyTorch's ``F.embedding``: rows of ``weight`` (num_embeddings, dim) at integer
    ``indices`` of any shape; the gradient adds up over repeated indices (a scatter-add).

    >>> import numpy as np, staticgrad as sg
    >>> table = sg.parameter(np.zeros((100, 16), np.float32))
    >>> sg.embedding(sg.placeholder((None, 12), np.int64), table).shape
    (None, 12, 16)
    """
    return take(weight, indices, axis=0)
