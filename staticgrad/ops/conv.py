"""Convolutions and pooling with PyTorch's names and layouts (NCL, NCHW; weights OIHW), built
on one movement primitive: ``windows``, the sliding windows over the last axes (im2col as an
index map, fused into the loop that reads it), and its adjoint ``unwindows`` (col2im, a
scatter-add). A convolution is windows plus one matrix product (BLAS); a pooling is a max or a
mean over the window axes. Gradients, and gradients of gradients, come from the primitives.
"""

from __future__ import annotations

import math

import numpy as np

from .. import shapes as sh
from ..index import Affine
from ..tensor import Tensor, as_tensor, build_error, constant
from . import Kind, apply, buffer_of, defop, operand, promote, same_dtype
from .composite import named
from .linalg import matmul
from .movement import reshape, transpose
from .nn import pad
from .reduce import max, sum

__all__ = ["conv1d", "conv2d", "max_pool2d", "avg_pool2d"]


# -- windows and its adjoint -----------------------------------------------------------------
def window_counts(sizes, kernel, stride, dilation) -> tuple:
    """How many windows fit along each axis (PyTorch's output size without padding)."""
    out = []
    for size, k, s, r in zip(sizes, kernel, stride, dilation):
        if not sh.is_static(size):
            raise ValueError("sliding windows need the spatial sizes known when the graph is "
                             "built")
        span = r * (k - 1) + 1
        if size < span:
            raise ValueError(f"a window of {k} (dilation {r}) does not fit in size {size}")
        out.append((size - span) // s + 1)
    return tuple(out)


def windows_shape(shapes, kernel, stride, dilation):
    (x,) = shapes
    n = len(kernel)
    if len(x) < n:
        raise ValueError(f"{n} window axes in a {len(x)}-d input")
    return x[:len(x) - n] + kernel + window_counts(x[len(x) - n:], kernel, stride, dilation)


def unwindows_shape(shapes, kernel, stride, dilation, size):
    (g,) = shapes
    lead = g[:len(g) - 2 * len(kernel)]
    if windows_shape([lead + size], kernel, stride, dilation) != g:
        raise ValueError(f"{sh.show(g)} are not the windows of {sh.show(lead + size)}")
    return lead + size


def window_slices(kernel_offset, counts, stride, dilation) -> tuple:
    """The input elements window element ``kernel_offset`` reads, as slices (NumPy)."""
    return tuple(slice(k * r, k * r + s * (o - 1) + 1, s)
                 for k, o, s, r in zip(kernel_offset, counts, stride, dilation))


def windows_reference(x, kernel, stride, dilation):
    n = len(kernel)
    counts = window_counts(x.shape[x.ndim - n:], kernel, stride, dilation)
    lead = x.shape[:x.ndim - n]
    out = np.empty(lead + kernel + counts, x.dtype)
    for k in np.ndindex(*kernel):
        at = (slice(None),) * len(lead)
        out[at + k] = x[at + window_slices(k, counts, stride, dilation)]
    return out


def unwindows_reference(g, kernel, stride, dilation, size):
    n = len(kernel)
    lead = g.shape[:g.ndim - 2 * n]
    counts = g.shape[g.ndim - n:]
    out = np.zeros(lead + size, g.dtype)
    for k in np.ndindex(*kernel):
        at = (slice(None),) * len(lead)
        out[at + window_slices(k, counts, stride, dilation)] += g[at + k]
    return out


def window_entry(o, k, stride: int, dilation: int):
    """Where window ``o``'s element ``k`` is: ``stride * o + dilation * k``."""
    if isinstance(o, Affine) and isinstance(k, Affine):
        return o.scaled(stride).plus(k.scaled(dilation))
    if isinstance(k, Affine) and not k.terms:    # a gather of windows at a fixed element
        return o.scaled(stride).shifted(k.offset * dilation)
    if isinstance(o, Affine) and not o.terms:
        return k.scaled(dilation).shifted(o.offset * stride)
    # ``windows`` is internal: convolutions and pooling read it at loop indices, and a gather
    # (``x[idx]``, ``take_along_axis``) reads their stored results, never the windows
    raise AssertionError("windows read with integer-array indices along both a window axis "
                         "and its position axis: no op reads it so")


def windows_index(node: Tensor, index: tuple) -> list:
    attrs = dict(node.attrs)
    n = len(attrs["kernel"])
    lead = len(index) - 2 * n
    return [tuple(index[:lead]) + tuple(
        window_entry(index[lead + n + j], index[lead + j], s, r)
        for j, (s, r) in enumerate(zip(attrs["stride"], attrs["dilation"])))]


def unwindows_source(node: Tensor) -> tuple:
    """The array ``unwindows`` reads and, per axis of its input, that array's axis: a
    transposed input (a convolution's column gradient) is read in place, in its own order."""
    (g,) = node.inputs
    if g.op == "transpose" and g.inputs[0].leaf != "constant":
        return g.inputs[0], dict(g.attrs)["axes"]
    return g, tuple(range(g.ndim))


def unwindows_emit(node: Tensor, code) -> list:
    """Zeros, then each window element added where ``windows`` read it (windows overlap)."""
    source, axes = unwindows_source(node)
    attrs = dict(node.attrs)
    n = len(attrs["kernel"])
    lead = len(axes) - 2 * n
    out, gn = code.array(node), operand(source, code)

    def element(i):
        mine = [i[a] for a in axes]   # the loops run over ``source``, in its memory order
        at = mine[:lead] + [f"{s} * {mine[lead + n + j]} + {r} * {mine[lead + j]}"
                            for j, (s, r) in enumerate(zip(attrs["stride"], attrs["dilation"]))]
        return [f"{out}[{', '.join(at)}] += {gn}[{', '.join(i)}]"]

    return [*code.fill(out, node.dims, "0"), *code.each(source.dims, element)]


defop("windows", Kind.MOVEMENT, windows_shape, same_dtype, windows_reference,
      lambda g, y, x, kernel, stride, dilation: [
          apply("unwindows", [g], kernel=kernel, stride=stride, dilation=dilation,
                size=x.dims[x.ndim - len(kernel):])],
      index=windows_index)
defop("unwindows", Kind.OPAQUE, unwindows_shape, same_dtype, unwindows_reference,
      lambda g, y, x, kernel, stride, dilation, size: [
          apply("windows", [g], kernel=kernel, stride=stride, dilation=dilation)],
      emit=unwindows_emit, stores=lambda node: [buffer_of(unwindows_source(node)[0])],
      cost=lambda node, count: {"flops": count(node.inputs[0].dims),
                                                      "gemm": 0})


def windows(x: Tensor, kernel: tuple, stride: tuple, dilation: tuple) -> Tensor:
    """The sliding windows over ``x``'s last ``len(kernel)`` axes: ``out[..., k, o]`` is
    ``x[..., stride * o + dilation * k]`` (shape ``(..., *kernel, *counts)``)."""
    return apply("windows", [x], kernel=kernel, stride=stride, dilation=dilation)


# -- argument forms --------------------------------------------------------------------------
def per_axis(value, n: int, what: str) -> tuple:
    """An int for every axis, or one per axis (PyTorch's ``_pair``)."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ValueError(f"{what} must be an int or {n} ints, got {value!r}")
    return tuple(int(v) for v in values)


def padding_pairs(padding, kernel, stride, dilation) -> tuple:
    """``(before, after)`` per axis from ints, a tuple, ``"valid"`` or ``"same"``."""
    n = len(kernel)
    if padding == "valid":
        return ((0, 0),) * n
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' needs stride 1 (as in PyTorch)")
        # PyTorch puts the odd element of the padding after
        totals = [r * (k - 1) for k, r in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in per_axis(padding, n, "padding"))


def padded(x: Tensor, pairs: tuple, fill) -> Tensor:
    if not any(p for pair in pairs for p in pair):
        return x
    return pad(x, ((0, 0),) * (x.ndim - len(pairs)) + pairs, constant_values=fill)


# -- convolution -----------------------------------------------------------------------------
def conv(x, weight, bias, stride, padding, dilation, groups: int, name: str) -> Tensor:
    """A convolution over ``weight.ndim - 2`` axes as windows and one matrix product per
    group: ``(C/G * prod(kernel), N * L)`` columns times ``(O/G, C/G * prod(kernel))``."""
    x, weight = promote(x, weight)
    n = weight.ndim - 2
    if x.ndim != n + 2 or not all(sh.is_static(d) for d in x.dims[1:] + weight.dims):
        raise build_error(ValueError(f"needs input (N, C, {n} sizes) and weight (O, C/groups, "
                                     f"{n} sizes), all but N known when the graph is built"),
                          name, [x, weight])
    channels, out_channels, kernel = x.dims[1], weight.dims[0], weight.dims[2:]
    if groups < 1 or channels % groups or out_channels % groups or \
            weight.dims[1] * groups != channels:
        raise build_error(ValueError(f"{channels} input channels in {groups} groups do not "
                                     f"match a weight of {sh.show(weight.dims)}"),
                          name, [x, weight])
    try:
        stride = per_axis(stride, n, "stride")
        dilation = per_axis(dilation, n, "dilation")
        pairs = padding_pairs(padding, kernel, stride, dilation)
        cols = windows(padded(x, pairs, 0), kernel, stride, dilation)
    except ValueError as err:
        raise build_error(err, name, [x, weight]) from None
    batch, counts = x.dims[0], cols.dims[2 + n:]
    group = (groups,) if groups > 1 else ()    # one group: plain 2-D products (one BLAS call)
    per_group = channels // groups
    rows = per_group * math.prod(kernel)
    # (N, [G,] C/G, *K, *L) -> ([G,] C/G, *K, N, *L): the columns each group multiplies
    cols = reshape(cols, (batch,) + group + (per_group,) + kernel + counts)
    g = len(group)
    axes = tuple(range(1, 2 + g + n)) + (0,) + tuple(range(2 + g + n, 2 + g + 2 * n))
    cols = reshape(transpose(cols, axes), group + (rows, sh.size((batch,) + counts)))
    out = matmul(reshape(weight, group + (out_channels // groups, rows)), cols)
    if bias is not None:
        # added to the (channels, positions) product, the bias gradient sums rows in place
        out = out + reshape(as_tensor(bias), group + (out_channels // groups, 1))
    return transpose(reshape(out, (out_channels, batch) + counts),
                     (1, 0) + tuple(range(2, n + 2)))


@named
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """PyTorch's ``F.conv1d``: ``x`` (N, C, L), ``weight`` (O, C/groups, K), optional
    ``bias`` (O,); ``padding`` an int, ``"valid"`` or ``"same"``. A cross-correlation, as in
    PyTorch (the kernel is not flipped).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 4, 20), np.float32)
    >>> sg.conv1d(x, sg.placeholder((8, 4, 3), np.float32), stride=2).shape
    (None, 8, 9)
    """
    return conv(x, weight, bias, stride, padding, dilation, groups, "conv1d")


@named
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """PyTorch's ``F.conv2d``: ``x`` (N, C, H, W), ``weight`` (O, C/groups, KH, KW), optional
    ``bias`` (O,); ``stride``, ``padding`` and ``dilation`` an int or a pair (``padding`` also
    ``"valid"`` or ``"same"``). Computed as im2col windows (fused, no Python) and one BLAS
    product per group.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 1, 8, 8), np.float32)
    >>> w = sg.parameter(np.zeros((16, 1, 3, 3), np.float32))
    >>> sg.conv2d(x, w, padding=1).shape
    (None, 16, 8, 8)
    """
    return conv(x, weight, bias, stride, padding, dilation, groups, "conv2d")


# -- pooling ---------------------------------------------------------------------------------
def pooling_windows(x: Tensor, kernel_size, stride, padding, dilation, fill, name: str):
    """``x``'s windows with the window axes last: ``(..., *counts, *kernel)``."""
    x = as_tensor(x)
    n = 2
    try:
        kernel = per_axis(kernel_size, n, "kernel_size")
        stride = kernel if stride is None else per_axis(stride, n, "stride")
        dilation = per_axis(dilation, n, "dilation")
        pads = per_axis(padding, n, "padding")
        if any(2 * p > k for p, k in zip(pads, kernel)):
            raise ValueError(f"padding {pads} must be at most half the kernel {kernel}")
        if x.ndim not in (3, 4):
            raise ValueError("needs an input (N, C, H, W) or (C, H, W)")
        pairs = tuple((p, p) for p in pads)
        w = windows(padded(x, pairs, fill), kernel, stride, dilation)
    except ValueError as err:
        raise build_error(err, name, [x]) from None
    lead = x.ndim - n
    axes = tuple(range(lead)) + tuple(range(lead + n, lead + 2 * n)) + \
        tuple(range(lead, lead + n))
    return transpose(w, axes), pairs, kernel, stride, dilation


@named
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False) -> Tensor:
    """PyTorch's ``F.max_pool2d`` (``stride`` defaults to the kernel; padding is -inf). Where
    several elements of a window tie for the maximum they share its gradient evenly (PyTorch
    gives it all to one of them); ``ceil_mode`` is not supported.

    >>> import numpy as np, staticgrad as sg
    >>> sg.max_pool2d(sg.placeholder((None, 16, 8, 8), np.float32), 2).shape
    (None, 16, 4, 4)
    """
    if ceil_mode:
        raise build_error(NotImplementedError("ceil_mode=True"), "max_pool2d", [as_tensor(x)])
    w, *_ = pooling_windows(x, kernel_size, stride, padding, dilation, -np.inf, "max_pool2d")
    return max(w, axis=(-2, -1))


@named
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """PyTorch's ``F.avg_pool2d``: the mean of each window, zero padding counted unless
    ``count_include_pad=False``; ``divisor_override`` replaces the count.

    >>> import numpy as np, staticgrad as sg
    >>> sg.avg_pool2d(sg.placeholder((2, 3, 8, 8), np.float32), 3, stride=2, padding=1).shape
    (2, 3, 4, 4)
    """
    x = as_tensor(x)
    if ceil_mode:
        raise build_error(NotImplementedError("ceil_mode=True"), "avg_pool2d", [x])
    w, pairs, kernel, stride, dilation = pooling_windows(x, kernel_size, stride, padding, 1, 0,
                                                         "avg_pool2d")
    total = sum(w, axis=(-2, -1))
    if divisor_override is not None:
        return total / float(divisor_override)
    if count_include_pad or not any(p for pair in pairs for p in pair):
        return total / float(math.prod(kernel))
    # the real elements in each window: the windows of a padded array of ones, summed
    ones = np.pad(np.ones(x.dims[-2:]), pairs)
    counts = windows_reference(ones, kernel, stride, dilation).sum(axis=(0, 1))
    return total / constant(counts.astype(x.dtype))
