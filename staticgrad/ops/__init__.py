"""Ops: one ``OpDef`` record per primitive, holding every rule about it in one place.

An ``OpDef`` carries the shape and dtype rule (run when a node is built), the NumPy reference
(the oracle, and constant folding), the symbolic VJP, and everything the scheduler and the loop
renderer need: a scalar template (elementwise), an accumulator (reductions), an index map
(movement), or an emitter, a cost and maybe a library call (opaque ops such as matmul).
``schedule.py`` and ``backends/numba`` read these fields and never test an op's name, so
adding an op of any kind touches one module here and its test. The family helpers below
register a record and return the user-facing function; ``composite.py`` builds the rest
(softmax, mean, clip, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, auto

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..index import aligned
from ..tensor import SMALL_CONSTANT, Tensor, as_tensor, build_error, constant, node


class Kind(Enum):
    ELEMENTWISE = auto()  # fusible; ``loop`` is a scalar expression template over {0}, {1}...
    REDUCE = auto()       # fusible as a loop tail; ``accumulator`` says how
    MOVEMENT = auto()     # fusible as an index map (``index``): reshape, transpose, slice, take
    OPAQUE = auto()       # a fusion barrier with its own ``emit`` (matmul, concatenate, cumsum)
    CUSTOM = auto()       # a user's function with its own VJP; inlined before scheduling


@dataclass(frozen=True)
class Accumulator:
    """How a reduction combines: ``combine`` is a template over the running value ``{0}`` and
    an element ``{1}``, started at ``init``. ``wide``: float32 accumulates in float64 (a sum of
    10M float32 elements keeps float32 accuracy); ``blocked``: it then adds blocks of elements
    in float32 (full-width vectors) and only the blocks in float64. ``identity``: one element
    reduces to itself (a rewrite drops reductions over size-1 axes), false for counts;
    ``converts``: elements are converted to the result's dtype before they combine (an int32
    sum adds int64s), false where ``combine`` reads the element as it is (a count).
    ``ignoring_nan``: the same combine for elements that are not NaN; a float row then runs
    it and notes separately whether any element was NaN (one compare per element, not
    two and an ``or``: a row max 1.5x faster), and the result is NaN if one was."""
    combine: str
    init: float
    wide: bool = False
    blocked: bool = False
    identity: bool = True
    converts: bool = True
    ignoring_nan: str | None = None


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: Kind
    shape: Callable[..., tuple]        # (input shapes, **attrs) -> output shape
    dtype: Callable[..., np.dtype]     # (input dtypes, **attrs) -> output dtype
    numpy: Callable[..., np.ndarray]   # (*input arrays, **attrs) -> output array
    vjp: Callable | None = None        # (g, y, *inputs, **attrs) -> one Tensor|None per input
    # ELEMENTWISE: a scalar template over the operands' code; a callable gets (node, dim), dim
    # rendering a size as code, and returns the template
    loop: str | Callable | None = None
    keeps_weak: bool = True            # all-weak inputs give a weak result (NumPy 2 scalars)
    domain: tuple = (-2.0, 2.0)        # where tests sample inputs (inside the op's domain)
    accumulator: Accumulator | None = None   # REDUCE
    # ELEMENTWISE and MOVEMENT: (node, index) -> the index each input is read at when the node
    # is read at ``index`` (see ``staticgrad.index``); elementwise ops broadcast
    index: Callable | None = None
    broadcasts: bool = False           # inputs broadcast to the output (sizes unify)
    reads_data: bool = True            # False: only the inputs' shapes are read (numel)
    view: Callable | None = None       # (node) -> True: read through a view of its stored input
    # (node) -> where the node's elements begin in its input's C-order memory, when they are
    # one contiguous run of it in the same order (a reshape, a leading-axis slice), else None:
    # stored, such a node is a view of its input's buffer, not a copy made by a kernel
    alias: Callable | None = None
    stores: Callable | None = None     # (node) -> inputs that need a buffer of their own
    checks: Callable | None = None     # (node) -> [(index tensor, axis size)] bounds-checked
    # OPAQUE: (node, code) -> lines of generated code (``code`` names arrays and sizes)
    emit: Callable | None = None
    # OPAQUE: (node) -> ``(name, arrays, flags)`` or None: the node is computed by calling
    # ``blas.<name>(*arrays, *flag values)`` (``arrays``: stored nodes, the result among them;
    # ``flags``: ``(name, int)`` pairs), not by a kernel of its own that every graph compiles.
    # ``emit`` still writes its code inside a loop's body (``sg.scan``) and wherever this
    # gives None
    call: Callable | None = None
    # (node, count) -> {"flops": n, "gemm": n, "largest": n}; count(dims) -> elements. ``gemm``
    # is all the matrix-product work, ``largest`` the largest single product (BLAS threads are
    # chosen by it: a scan's T small products are each too small for two threads)
    cost: Callable | None = None
    # the VJP also takes ``needed`` (a flag per input: is its gradient asked for?) and may skip
    # the others (a scan's per-step input gradients cost a matrix product a step)
    partial_vjp: bool = False

    def flops(self, node, count) -> dict:
        """Estimated work of ``node``: one flop per element of an elementwise op or of a
        reduction's input, unless ``cost`` says otherwise."""
        if self.cost is not None:
            work = self.cost(node, count)
            return {"largest": work["gemm"], **work}
        if self.kind is Kind.ELEMENTWISE:
            return {"flops": count(node.dims), "gemm": 0, "largest": 0}
        if self.kind is Kind.REDUCE:
            return {"flops": count(node.inputs[0].dims), "gemm": 0, "largest": 0}
        return {"flops": 0, "gemm": 0, "largest": 0}


REGISTRY: dict[str, OpDef] = {}


def apply(op: str, inputs: Sequence[Tensor], **attrs) -> Tensor:
    """Build (or find) the node ``op(*inputs, **attrs)``: the one constructor of op nodes, where
    the op's shape and dtype rules run.

    >>> import staticgrad as sg
    >>> x = sg.placeholder((3,), name="x")
    >>> apply("exp", [x]) is sg.exp(x)
    True
    """
    opdef = REGISTRY[op]
    weak = bool(inputs) and all(i.weak for i in inputs) and opdef.keeps_weak

    def infer() -> tuple:
        try:
            dims = tuple(opdef.shape([i.dims for i in inputs], **attrs))
            dtype = np.dtype(opdef.dtype([i.dtype for i in inputs], **attrs))
        except (ValueError, TypeError) as err:
            raise build_error(err, op, inputs) from None
        # DESIGN: false after stop_gradient and for non-float results (comparisons), else any
        # input's; ops without a VJP rule (sign) still say True, as in PyTorch
        requires_grad = (op != "stop_gradient" and dt.is_float(dtype)
                         and any(i.requires_grad for i in inputs))
        return dims, dtype, requires_grad

    return node(op, tuple(inputs), tuple(sorted(attrs.items())), weak, infer)


def register(opdef: OpDef) -> OpDef:
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is defined twice")
    REGISTRY[opdef.name] = opdef
    return opdef


def promote(*values) -> list:
    """Tensors for the operands; weak ones (Python scalars) cast to the strong operands' dtype."""
    xs = [as_tensor(v) for v in values]
    if all(x.weak for x in xs) or not any(x.weak for x in xs):
        return xs
    common = dt.common_dtype([x.dtype for x in xs], [x.weak for x in xs])
    return [cast(x, common) if x.weak and x.dtype != common else x for x in xs]


def elementwise_shape(shapes, **_):
    return sh.broadcast_shapes(*shapes)


def broadcast_index(node: Tensor, index: tuple) -> list:
    """An elementwise op reads each input at the output's index, broadcast."""
    return [aligned(index, node.dims, x.dims) for x in node.inputs]


def ufunc_rule(ufunc: np.ufunc) -> Callable:
    return lambda dtypes, **_: dt.ufunc_dtype(ufunc, dtypes)


def float_rule(dtypes, **_):
    """Transcendental functions: floats keep their dtype, integers compute in float64."""
    return dt.ufunc_dtype(np.exp, dtypes[:1])


def unary(name: str, numpy: Callable, loop, vjp=None, dtype=None, domain=(-2.0, 2.0)):
    register(OpDef(name, Kind.ELEMENTWISE, elementwise_shape,
                   dtype or (ufunc_rule(numpy) if isinstance(numpy, np.ufunc) else float_rule),
                   numpy, vjp, loop, domain=domain, index=broadcast_index, broadcasts=True))
    return lambda x: apply(name, [as_tensor(x)])


def binary(name: str, numpy: Callable, loop, vjp=None, dtype=None, domain=(-2.0, 2.0),
           keeps_weak=True):
    register(OpDef(name, Kind.ELEMENTWISE, elementwise_shape, dtype or ufunc_rule(numpy),
                   numpy, vjp, loop, keeps_weak=keeps_weak, domain=domain, index=broadcast_index,
                   broadcasts=True))
    return lambda a, b: apply(name, promote(a, b))


def reduction(name: str, numpy: Callable, accumulator: Accumulator, vjp=None, dtype=None):
    """A reduction over ``axis`` (None: all) with NumPy's ``keepdims``."""
    def shape(shapes, axes, keepdims):
        (x,) = shapes
        if keepdims:
            return tuple(1 if a in axes else d for a, d in enumerate(x))
        return tuple(d for a, d in enumerate(x) if a not in axes)

    register(OpDef(name, Kind.REDUCE, shape, dtype or (lambda dtypes, **_: dtypes[0]),
                   lambda x, axes, keepdims: numpy(x, axis=axes, keepdims=keepdims),
                   vjp, keeps_weak=False, accumulator=accumulator))

    def reduce(x, axis=None, keepdims=False) -> Tensor:
        x = as_tensor(x)
        try:
            axes = sh.normalize_axes(axis, x.ndim)
        except ValueError as err:
            raise build_error(err, name, [x]) from None
        return apply(name, [x], axes=axes, keepdims=bool(keepdims))

    return reduce


@functools.cache
def accumulated_dtype(numpy_reduce: Callable, dtype: np.dtype) -> np.dtype:
    """The dtype NumPy's reduction gives (int32 sums to int64, float32 stays float32)."""
    return numpy_reduce(np.zeros(1, dtype)).dtype


def defop(name: str, kind: Kind, shape, dtype, numpy, vjp=None, **fields) -> OpDef:
    """Register an op that is not of a family (movement ops, matmul): its rules spelled out."""
    return register(OpDef(name, kind, shape, dtype, numpy, vjp, **fields))


def same_dtype(dtypes, **_):
    return dtypes[0]


def is_view(x: Tensor) -> bool:
    """Read through a ``.reshape`` view of its stored input (a reshape that moves data)."""
    view = REGISTRY[x.op].view if x.op is not None else None
    return view is not None and view(x)


def buffer_of(x: Tensor) -> Tensor:
    """What an opaque op reading ``x`` needs stored: ``x``'s input if ``x`` is a view (the
    emitter reads ``operand(x, code)``, so no copy is made), else ``x`` itself."""
    return x.inputs[0] if is_view(x) else x


def operand(x: Tensor, code) -> str:
    """``x`` in an emitter's code: its array, or a reshaped view of its input's."""
    return code.view(x) if is_view(x) else code.array(x)


def cast(x, dtype) -> Tensor:
    """``x`` converted to ``dtype`` (NumPy ``astype``); gradients flow back in ``x``'s dtype.

    >>> import numpy as np, staticgrad as sg
    >>> sg.cast(sg.placeholder((3,), np.int32), np.float32).dtype
    dtype('float32')
    """
    x = as_tensor(x)
    dtype = np.dtype(dtype)
    if x.dtype == dtype and not x.weak:
        return x
    if x.leaf == "constant" and x.value.size <= SMALL_CONSTANT:
        # a typed constant, not a node: as a node, interned on an interned constant, it would be
        # shared by every graph (and listing) that makes it, e.g. backward rules typing literals
        return constant(x.value.astype(dtype), name=x.name)
    return apply("cast", [x], to=dtype)


def cast_vjp(g, y, x, to):
    return [cast(g, x.dtype)] if dt.is_float(x.dtype) and dt.is_float(to) else [None]


register(OpDef("cast", Kind.ELEMENTWISE, elementwise_shape, lambda dtypes, to: to,
               lambda x, to: np.asarray(x).astype(to), cast_vjp,
               loop=lambda node, dim: f"np.{node.dtype.name}({{0}})", keeps_weak=False,
               index=broadcast_index, broadcasts=True))

from .composite import *  # noqa: E402,F401,F403
from .conv import *  # noqa: E402,F401,F403
from .custom import *  # noqa: E402,F401,F403
from .elementwise import *  # noqa: E402,F401,F403
from .indexing import *  # noqa: E402,F401,F403
from .linalg import *  # noqa: E402,F401,F403
from .movement import *  # noqa: E402,F401,F403
from .nn import *  # noqa: E402,F401,F403
from .operators import install  # noqa: E402
from .random import *  # noqa: E402,F401,F403
from .reduce import *  # noqa: E402,F401,F403
from .scan import *  # noqa: E402,F401,F403

install(Tensor)
