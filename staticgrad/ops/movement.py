"""Movement ops: index maps that move data without arithmetic.

reshape, transpose, broadcast_to, slice (and its adjoint unslice), concatenate, take (and its
adjoint untake), plus numel, the element count of some axes that a call-time size may need.
Indexing (``x[1:, None, idx]``) is a composite of slice, reshape and take.
"""

from __future__ import annotations

import numpy as np

from .. import shapes as sh
from ..index import ZERO
from ..tensor import Tensor, as_tensor, build_error, constant
from . import Kind, apply, broadcast_index, defop, promote, same_dtype

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "swapaxes",
           "flip", "concatenate", "numel"]


# -- reshape -------------------------------------------------------------------------------
def reshape_shape(shapes, shape):
    (x,) = shapes
    before, after = sh.size(x), sh.size(shape)
    # a size known only at call time is checked then, when this rule runs on the real sizes
    if before != after and sh.is_static(before) and sh.is_static(after):
        raise ValueError(f"cannot reshape {sh.show(x)} ({sh.show_dim(sh.size(x))} elements) "
                         f"into {sh.show(shape)}")
    return shape


def drops_or_adds_ones(node: Tensor) -> bool:
    """A reshape that only adds or drops size-1 axes is an index map; any other is read
    through a ``.reshape`` view of its input's (contiguous, stored) buffer."""
    (x,) = node.inputs
    return [d for d in x.dims if d != 1] == [d for d in node.dims if d != 1]


def reshape_index(node: Tensor, index: tuple) -> list:
    (x,) = node.inputs
    kept = iter(e for e, d in zip(index, node.dims) if d != 1)
    return [tuple(ZERO if d == 1 else next(kept) for d in x.dims)]


defop("reshape", Kind.MOVEMENT, reshape_shape, same_dtype,
      lambda x, shape: np.reshape(x, shape), lambda g, y, x, shape: [reshape(g, x.dims)],
      index=reshape_index, view=lambda node: not drops_or_adds_ones(node),
      stores=lambda node: [] if drops_or_adds_ones(node) else [node.inputs[0]],
      alias=lambda node: 0)


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


def transpose_index(node: Tensor, index: tuple) -> list:
    out = [None] * node.ndim
    for k, a in enumerate(dict(node.attrs)["axes"]):
        out[a] = index[k]
    return [tuple(out)]


defop("transpose", Kind.MOVEMENT, transpose_shape, same_dtype,
      lambda x, axes: np.transpose(x, axes),
      lambda g, y, x, axes: [transpose(g, tuple(int(a) for a in np.argsort(axes)))],
      index=transpose_index)


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
      lambda x, shape: np.broadcast_to(x, shape), lambda g, y, x, shape: [g],
      index=broadcast_index, broadcasts=True)


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


def first_index(dim, start, step: int):
    """The index a slice of an axis of size ``dim`` starts at (``start`` as the user gave it)."""
    if start is None:
        return 0 if step > 0 else dim - 1
    return dim + start if sh.is_static(start) and start < 0 else start


def slice_index(node: Tensor, index: tuple) -> list:
    """Element ``e`` of a slice is element ``start + step * e`` of its input."""
    (x,) = node.inputs
    return [tuple(e.scaled(step).shifted(first_index(dim, start, step))
                  for e, dim, (start, _, step) in zip(index, x.dims, dict(node.attrs)["index"]))]


def slice_offset(node: Tensor):
    """Where a slice begins in its input's memory, if it is one contiguous run of it: single
    indices on the leading axes, then one axis of step 1, then whole axes (``h[t]``,
    ``x[a:b]``, ``x[2, 1:3, :]``); else ``None``."""
    (x,) = node.inputs
    offset, stride, partial = 0, 1, False
    for dim, length, (start, _, step) in reversed(list(zip(x.dims, node.dims,
                                                            dict(node.attrs)["index"]))):
        first = first_index(dim, start, step)
        if partial and length != 1:     # several elements of an axis left of a partial one
            return None
        if not (first == 0 and length == dim and (step == 1 or length == 1)):
            if length != 1 and step != 1:
                return None
            partial = True
        offset = offset + first * stride
        stride = stride * dim
    return offset


def unslice_emit(node: Tensor, code) -> list:
    """Zeros, then the slice's elements where ``slice`` read them."""
    out, g = code.array(node), code.array(node.inputs[0])
    attrs = dict(node.attrs)
    where_ = [f"{code.dim(first_index(dim, start, step))} + {step} * i{k}"
              for k, (dim, (start, _, step)) in enumerate(zip(attrs["shape"], attrs["index"]))]
    return [*code.fill(out, node.dims, "0"), *code.each(node.inputs[0].dims, lambda i: [
        f"{out}[{', '.join(where_)}] = {g}[{', '.join(i)}]"])]


defop("slice", Kind.MOVEMENT, slice_shape, same_dtype,
      lambda x, index: x[as_slices(index)],
      lambda g, y, x, index: [apply("unslice", [g], index=index, shape=x.dims)],
      index=slice_index, alias=slice_offset)
defop("unslice", Kind.OPAQUE, unslice_shape, same_dtype, unslice_reference,
      lambda g, y, x, index, shape: [slice_(g, index)], emit=unslice_emit)


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


# -- flip ----------------------------------------------------------------------------------
def flip_index(node: Tensor, index: tuple) -> list:
    """Element ``e`` of a flipped axis of size ``n`` is element ``n - 1 - e``."""
    axes = dict(node.attrs)["axes"]
    return [tuple(e.scaled(-1).shifted(d - 1) if a in axes else e
                  for a, (e, d) in enumerate(zip(index, node.dims)))]


defop("flip", Kind.MOVEMENT, lambda shapes, axes: shapes[0], same_dtype,
      lambda x, axes: np.flip(x, axes), lambda g, y, x, axes: [flip(g, axes)],
      index=flip_index)


def flip(x, axis=None) -> Tensor:
    """``x`` with the order of elements reversed along ``axis`` (all axes if None), as
    ``np.flip``.

    >>> import staticgrad as sg
    >>> sg.flip(sg.placeholder((None, 3)), axis=1).shape
    (None, 3)
    """
    x = as_tensor(x)
    try:
        axes = sh.normalize_axes(axis, x.ndim)
    except ValueError as err:
        raise build_error(err, "flip", [x]) from None
    axes = tuple(a for a in axes if x.dims[a] != 1)
    return apply("flip", [x], axes=axes) if axes else x


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


def concatenate_emit(node: Tensor, code) -> list:
    axis = dict(node.attrs)["axis"]
    out, lines, start = code.array(node), [], 0
    for x in node.inputs:
        xn, at = code.array(x), code.dim(start)

        def element(i, xn=xn, at=at):
            shifted = [f"{at} + {e}" if a == axis else e for a, e in enumerate(i)]
            return [f"{out}[{', '.join(shifted)}] = {xn}[{', '.join(i)}]"]

        lines += code.each(x.dims, element)
        start = start + x.dims[axis]
    return lines


defop("concatenate", Kind.OPAQUE, concatenate_shape,
      lambda dtypes, axis: np.result_type(*dtypes),
      lambda *xs, axis: np.concatenate(xs, axis=axis), concatenate_vjp,
      emit=concatenate_emit)


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


# -- numel: a size as a value --------------------------------------------------------------
def numel_code(node: Tensor, dim) -> str:
    count = " * ".join(dim(node.inputs[0].dims[a]) for a in dict(node.attrs)["axes"]) or "1"
    return f"np.{node.dtype.name}({count})"


# an elementwise op of no operands: a value made of the input's sizes, not its elements
defop("numel", Kind.ELEMENTWISE, lambda shapes, axes, dtype: (),
      lambda dtypes, axes, dtype: dtype,
      lambda x, axes, dtype: np.asarray(np.prod([x.shape[a] for a in axes]), dtype=dtype),
      loop=numel_code, reads_data=False, index=lambda node, index: [])


def numel(x, axes=None, dtype=np.int64) -> Tensor:
    """The number of elements of ``x`` along ``axes`` (all by default) as a 0-d tensor."""
    x = as_tensor(x)
    axes = sh.normalize_axes(axes, x.ndim)
    count = sh.size(x.dims[a] for a in axes)
    if sh.is_static(count):
        return constant(np.asarray(count, dtype=dtype))
    return apply("numel", [x], axes=axes, dtype=np.dtype(dtype))
