"""Matrix products: the ``matmul`` primitive (a call of ``blas.matmul``, or BLAS in generated
code) and NumPy's ``matmul``/``dot`` semantics (1-D operands, batch broadcasting) built
around it.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..tensor import Tensor, build_error
from . import Kind, apply, buffer_of, cast, defop, operand, promote
from .elementwise import multiply
from .movement import broadcast_to, reshape, swapaxes, transpose

__all__ = ["matmul", "dot"]


def matmul_shape(shapes):
    a, b = shapes
    if len(a) < 2 or len(b) < 2 or a[:-2] != b[:-2]:
        raise ValueError("the primitive needs operands of 2 or more dimensions with equal "
                         "batch sizes")
    if a[-1] != b[-2] and sh.is_static(a[-1]) and sh.is_static(b[-2]):
        raise ValueError(f"inner sizes {a[-1]} and {b[-2]} do not match")
    return a[:-1] + b[-1:]


def last_two_swapped(x: Tensor) -> Tensor:
    return swapaxes(x, -1, -2)


def swaps_last_two(x: Tensor) -> bool:
    """BLAS reads an operand with its last two axes swapped as a flag, not a copy."""
    if x.op != "transpose" or x.inputs[0].leaf == "constant":
        return False
    axes = dict(x.attrs)["axes"]
    n = len(axes)
    return n >= 2 and axes == tuple(range(n - 2)) + (n - 1, n - 2)


def matmul_operand(x: Tensor, code) -> str:
    if swaps_last_two(x):
        base = operand(x.inputs[0], code)
        return f"{base}.T" if x.ndim == 2 else f"np.swapaxes({base}, -1, -2)"
    return operand(x, code)


def matmul_emit(node: Tensor, code) -> list:
    a, b = (matmul_operand(x, code) for x in node.inputs)
    out = code.array(node)
    q, k = code.fresh("q"), code.fresh("k")
    if node.dtype.kind != "f":   # BLAS has no integer product
        return [*code.fill(out, node.dims, "0"),
                f"for {q} in np.ndindex({out}.shape):",
                f"    for {k} in range({a}.shape[-1]):",
                f"        {out}[{q}] += {a}[{q}[:-1] + ({k},)] * {b}[{q}[:-2] + ({k}, {q}[-1])]"]
    if node.ndim == 2:
        return [f"blas.gemm({a}, {b}, {out})"]
    return [f"for {q} in np.ndindex({out}.shape[:-2]):",
            f"    blas.gemm({a}[{q}], {b}[{q}], {out}[{q}])"]


def call_operands(node: Tensor):
    """``[(a, a_transposed), (b, b_transposed)]`` for a 2-D float product's ``blas.matmul``
    call: each operand's array, an operand with its input's axes swapped as that input and a
    flag; ``None`` for an integer or batched product, which gets a kernel. An operand that
    is a reshape is stored as one: a view of its input's memory (``choose_aliases``), so a
    convolution's flattened windows go to BLAS without a kernel or a copy."""
    if node.ndim != 2 or node.dtype not in (np.float32, np.float64):
        return None
    pairs = [(x.inputs[0], 1) if swaps_last_two(x) else (x, 0) for x in node.inputs]
    return pairs if all(x.dtype == node.dtype for x, _ in pairs) else None


def matmul_call(node: Tensor):
    """A 2-D float product as a call of ``blas.matmul`` (see ``call_operands``), or None."""
    pairs = call_operands(node)
    if pairs is None:
        return None
    (a, a_transposed), (b, b_transposed) = pairs
    return "matmul", [a, b, node], [("a_transposed", a_transposed),
                                    ("b_transposed", b_transposed)]


def matmul_stores(node: Tensor) -> list:
    """What a product needs stored: its call's arrays, or for a kernel each operand's
    buffer (an operand with swapped axes is read as its input, transposed)."""
    pairs = call_operands(node)
    if pairs is not None:
        return [x for x, _ in pairs]
    return [buffer_of(x.inputs[0] if swaps_last_two(x) else x) for x in node.inputs]


defop("matmul", Kind.OPAQUE, matmul_shape, lambda dtypes: dt.ufunc_dtype(np.matmul, dtypes),
      np.matmul,
      lambda g, y, a, b: [matmul(g, last_two_swapped(b)), matmul(last_two_swapped(a), g)],
      emit=matmul_emit, call=matmul_call, stores=matmul_stores,
      cost=lambda node, count: {"flops": 0, "gemm": 2 * count(node.dims)
                                * count(node.inputs[0].dims[-1:]),
                                "largest": 2 * count(node.dims[-2:])
                                * count(node.inputs[0].dims[-1:])})


def matmul(a, b) -> Tensor:
    """The matrix product ``a @ b`` with NumPy's rules for 1-D operands and batches.

    >>> import staticgrad as sg
    >>> x, w = sg.placeholder((None, 1000)), sg.placeholder((1000, 100))
    >>> (x @ w).shape
    (None, 100)
    """
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise build_error(ValueError("operands must have at least one dimension (use * for "
                                     "scalars)"), "matmul", [a, b])
    a2 = reshape(a, (1,) + a.dims) if a.ndim == 1 else a
    b2 = reshape(b, b.dims + (1,)) if b.ndim == 1 else b
    if a2.dims[-1] != b2.dims[-2] and sh.is_static(a2.dims[-1]) and sh.is_static(b2.dims[-2]):
        raise build_error(ValueError(f"inner sizes {a2.dims[-1]} and {b2.dims[-2]} do not "
                                     "match"), "matmul", [a, b])
    try:
        batch = sh.broadcast_shapes(a2.dims[:-2], b2.dims[:-2])
    except ValueError as err:
        raise build_error(err, "matmul", [a, b]) from None
    # BLAS multiplies operands of one dtype: mixed ones meet at NumPy's result dtype first
    common = dt.ufunc_dtype(np.matmul, [a.dtype, b.dtype])
    a2 = broadcast_to(cast(a2, common), batch + a2.dims[-2:])
    b2 = broadcast_to(cast(b2, common), batch + b2.dims[-2:])
    out = apply("matmul", [a2, b2])
    dims = batch + (a.dims[-2:-1] if a.ndim > 1 else ()) + (b.dims[-1:] if b.ndim > 1 else ())
    return reshape(out, dims)


def dot(a, b) -> Tensor:
    """NumPy's ``dot``: a product summing the last axis of ``a`` with the second-to-last of
    ``b`` (the last if ``b`` is 1-D); a scalar operand multiplies.

    >>> import staticgrad as sg
    >>> sg.dot(sg.placeholder((2, 3, 4)), sg.placeholder((5, 4, 6))).shape
    (2, 3, 5, 6)
    """
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if b.ndim <= 2:
        return matmul(a, b)
    k = b.dims[-2]
    moved = transpose(b, (b.ndim - 2,) + tuple(range(b.ndim - 2)) + (b.ndim - 1,))
    out = matmul(reshape(a, (-1, a.dims[-1])), reshape(moved, (k, -1)))
    return reshape(out, a.dims[:-1] + b.dims[:-2] + b.dims[-1:])
