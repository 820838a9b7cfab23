"""Build stage: ``Tensor``, the immutable, interned graph node, and the three kinds of leaf.

Building ``x * y`` twice returns the same node (hash-consing), so equal subexpressions are
shared for free. Shape and dtype are inferred in the constructor; an impossible node raises
right there, naming the op, the shapes and the user's ``file.py:LINE``.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Sequence

import numpy as np

from . import dtypes as dt
from . import shapes as sh

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_serials = itertools.count()
_interned: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
SMALL_CONSTANT = 64   # constants of at most this many elements are interned by value

# While a VJP rule runs, the forward node it differentiates (set by autodiff); while a
# composite such as softmax runs, its name. Both only label the nodes built meanwhile.
_backward_of: contextvars.ContextVar = contextvars.ContextVar("backward_of", default=None)
_composite: contextvars.ContextVar = contextvars.ContextVar("composite", default=None)
# While a rewrite replaces a node, the replaced node: what it builds keeps that node's line.
_derived_from: contextvars.ContextVar = contextvars.ContextVar("derived_from", default=None)


def user_line() -> tuple:
    """``(filename, lineno)`` of the first caller outside staticgrad: where the user built it."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return ("<unknown>", 0)
    return (frame.f_code.co_filename, frame.f_lineno)


def location(source: tuple) -> str:
    return f"{source[0]}:{source[1]}"


@contextlib.contextmanager
def backward_of(node: Tensor):
    token = _backward_of.set(node)
    try:
        yield
    finally:
        _backward_of.reset(token)


@contextlib.contextmanager
def derived_from(node: Tensor):
    """Nodes built meanwhile inherit ``node``'s user line and backward origin (for rewrites)."""
    token = _derived_from.set(node)
    try:
        yield
    finally:
        _derived_from.reset(token)


@contextlib.contextmanager
def composite(name: str):
    """Label errors raised while building a composite op (``softmax``) with its name."""
    token = _composite.set(_composite.get() or name)
    try:
        yield
    finally:
        _composite.reset(token)


class GradFn:
    """Names the backward rule of a non-leaf tensor, as PyTorch's ``grad_fn`` does.

    >>> import staticgrad as sg
    >>> x = sg.placeholder((), name="x", requires_grad=True)
    >>> (x * 2.0).grad_fn
    <MulBackward>
    """

    __slots__ = ("node",)

    def __init__(self, node: Tensor):
        self.node = node

    @property
    def name(self) -> str:
        return "".join(part.capitalize() for part in self.node.op.split("_")) + "Backward"

    @property
    def next_functions(self) -> tuple:
        return tuple(i.grad_fn for i in self.node.inputs)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Tensor:
    """A node of the graph: a leaf (placeholder, parameter, constant) or an op applied to inputs.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 3), dtype=np.float32, name="x")
    >>> y = x * 2.0 + 1.0
    >>> y.shape, y.dtype, y.op, y.is_leaf
    ((None, 3), dtype('float32'), 'add', False)
    """

    __slots__ = ("op", "inputs", "attrs", "dims", "dtype", "weak", "name", "source",
                 "origin", "requires_grad", "leaf", "serial", "_value", "__weakref__")
    __array_ufunc__ = None  # `ndarray + Tensor` builds a node instead of looping elementwise

    def __setattr__(self, name, value):
        raise AttributeError(f"Tensor is immutable (cannot set {name!r})")

    def __delattr__(self, name):
        raise AttributeError(f"Tensor is immutable (cannot delete {name!r})")

    def _init(self, op, inputs, attrs, dims, dtype, weak, name, leaf, requires_grad,
              source=None, value=None):
        set_ = object.__setattr__
        set_(self, "op", op)
        set_(self, "inputs", inputs)
        set_(self, "attrs", attrs)
        set_(self, "dims", dims)
        set_(self, "dtype", dtype)
        set_(self, "weak", weak)
        set_(self, "name", name)
        site, origin = creation_site()
        set_(self, "source", source or site)
        set_(self, "origin", origin)
        set_(self, "requires_grad", requires_grad)
        set_(self, "leaf", leaf)
        set_(self, "serial", next(_serials))
        set_(self, "_value", value)

    # -- the public view -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """Sizes, with ``None`` where a size is known only at call time."""
        return sh.public(self.dims)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    @property
    def grad_fn(self) -> GradFn | None:
        return None if self.op is None else GradFn(self)

    @property
    def attributes(self) -> dict:
        return dict(self.attrs)

    def __repr__(self) -> str:
        kind = self.leaf or self.op
        name = f" {self.name!r}" if self.name else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"<Tensor {kind}{name} {dt.short(self.dtype)}{sh.show(self.dims)}{grad}>"

    def __bool__(self):
        raise TypeError("a staticgrad Tensor has no truth value while the graph is being "
                        "built; use sg.where(cond, a, b) for a data-dependent choice")

    def __len__(self) -> int:
        if not self.dims:
            raise TypeError("len() of a 0-d tensor")
        if not sh.is_static(self.dims[0]):
            raise TypeError("len() of a tensor whose first size is known only at call time")
        return self.dims[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    __hash__ = object.__hash__


class Parameter(Tensor):
    """A leaf that holds a value between calls; ``updates`` overwrite it in place.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.zeros((2, 3)), name="w")
    >>> w.value = np.ones((2, 3)); float(w.value.sum())
    6.0
    """

    # ``lock`` guards the value while a call reads or overwrites it; ``updated`` says whether
    # some function's updates write it (only then do readers need the lock)
    __slots__ = ("lock", "updated")

    def __setattr__(self, name, value):
        if name != "value":
            super().__setattr__(name, value)
        object.__setattr__(self, name, value)

    @property
    def value(self) -> np.ndarray:
        return self._value

    @value.setter
    def value(self, new) -> None:
        new = np.asarray(new)
        if new.shape != self.dims:
            raise ValueError(f"parameter {self.name!r}: new value has shape {new.shape}, "
                             f"expected {self.dims}")
        dt.check_castable(new.dtype, self.dtype, f"parameter {self.name!r}")
        new = np.require(new.astype(self.dtype, copy=False), requirements=["C", "W"])
        object.__setattr__(self, "_value", new)


class Constant(Tensor):
    """A leaf with a fixed value, folded into generated code."""

    __slots__ = ()

    @property
    def value(self) -> np.ndarray:
        return self._value


def placeholder(shape: Sequence, dtype=np.float64, name: str | None = None,
                requires_grad: bool = False) -> Tensor:
    """An input fed at call time. ``None`` in ``shape`` is a size fixed only when called;
    a string names such a size, so placeholders can share it.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((None, 1000), dtype=np.float32, name="x")
    >>> x.shape
    (None, 1000)
    """
    dtype = np.dtype(dtype)
    serial = next(_serials)
    label = name or f"input{serial}"
    dims = []
    for axis, d in enumerate(tuple(shape)):
        if d is None:
            dims.append(sh.Dim.symbol(f"{label}.{axis}"))
        elif isinstance(d, str):
            dims.append(_named_dim(d))
        elif isinstance(d, sh.Dim):
            dims.append(d)
        elif isinstance(d, (int, np.integer)) and d >= 0:
            dims.append(int(d))
        else:
            raise ValueError(f"placeholder {label!r}: size {d!r} at axis {axis} must be a "
                             f"non-negative int, None or a name")
    node = Tensor.__new__(Tensor)
    node._init(None, (), (), tuple(dims), dtype, False, name, "placeholder",
               bool(requires_grad))
    return node


_named_dims: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _named_dim(name: str) -> sh.Dim:
    # Placeholders that name a size the same way share it; the table only remembers live ones.
    dim = _named_dims.get(name)
    if dim is None:
        dim = sh.Dim.symbol(name)
        _named_dims[name] = dim
    return dim


def parameter(value, name: str | None = None, dtype=None) -> Parameter:
    """A leaf holding a value (a copy of ``value``) that ``updates`` may change between calls.

    >>> import numpy as np, staticgrad as sg
    >>> w = sg.parameter(np.random.randn(3, 2).astype(np.float32), name="w")
    >>> w.shape, w.dtype, w.requires_grad, w.is_leaf
    ((3, 2), dtype('float32'), True, True)
    """
    value = np.array(value, dtype=dtype, copy=True, order="C")
    if value.dtype == object:
        raise TypeError(f"parameter {name!r}: value must be numeric, got an object array")
    node = Parameter.__new__(Parameter)
    node._init(None, (), (), value.shape, value.dtype, False, name, "parameter", True,
               value=value)
    object.__setattr__(node, "lock", threading.Lock())
    object.__setattr__(node, "updated", False)
    return node


def constant(value, dtype=None, name: str | None = None) -> Constant:
    """A fixed value. A Python scalar is *weak*: ``x_f32 * sg.constant(2.0)`` stays float32.

    >>> import numpy as np, staticgrad as sg
    >>> sg.constant(2.0).dtype, sg.constant(np.ones(3, np.float32)).dtype
    (dtype('float64'), dtype('float32'))
    """
    # exactly Python's scalars: NumPy scalars (np.float64 subclasses float) are strong
    weak = type(value) in dt.WEAK_DEFAULT and dtype is None
    if weak:
        array = np.asarray(value, dtype=dt.WEAK_DEFAULT[type(value)])
    else:
        array = np.array(value, dtype=dtype, copy=True)
    if array.dtype == object:
        raise TypeError(f"constant {name!r}: value must be numeric, got {type(value).__name__}")
    array.flags.writeable = False
    small = array.size <= SMALL_CONSTANT
    key = ("constant", array.dtype.str, array.shape, array.tobytes(), weak, name) \
        if small else None
    if key is not None:
        found = _interned.get(key)
        if found is not None:
            return found
    node = Constant.__new__(Constant)
    node._init(None, (), (), array.shape, array.dtype, weak, name, "constant", False,
               value=array)
    if key is not None:
        _interned[key] = node
    return node


def as_tensor(value) -> Tensor:
    """Tensors pass through; Python scalars and arrays become constants."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        raise TypeError("a list containing Tensors is not a tensor; use sg.stack or "
                        "sg.concatenate")
    return constant(value)


def creation_site() -> tuple:
    """``(source, origin)`` of a node made now: the user's line and the backward rule making
    it, or those of the node a rewrite is replacing."""
    parent = _derived_from.get()
    if parent is not None:
        return parent.source, parent.origin
    return user_line(), _backward_of.get()


def node(op: str, inputs: tuple, attr_items: tuple, weak: bool, infer) -> Tensor:
    """The interned node ``op(*inputs, **attrs)``: found if it exists, else made with
    ``infer() -> (dims, dtype, requires_grad)``. ``ops.apply`` is its one caller."""
    key = (op, tuple(id(i) for i in inputs), attr_items, weak)
    if all(i.leaf == "constant" for i in inputs):
        # made of constants only (a VJP's ``b - 1``), it would be the same node in unrelated
        # graphs, listed with whichever line made it first: one per backward rule that makes
        # it (the same graph built twice still shares it), or per user line outside one
        source, origin = creation_site()
        key += (origin,) if origin is not None else (source,)
    found = _interned.get(key)
    if found is not None:
        return found
    dims, dtype, requires_grad = infer()
    made = Tensor.__new__(Tensor)
    made._init(op, tuple(inputs), attr_items, dims, dtype, weak, None, None, requires_grad)
    _interned[key] = made
    return made


def build_error(err: Exception, op: str, inputs: Sequence[Tensor]) -> Exception:
    """Re-raise a rule's complaint with the op, the operand shapes and the user's line."""
    label = _composite.get()
    label = f"{label} ({op})" if label and label != op else op
    operands = ", ".join(f"{dt.short(i.dtype)}{sh.show(i.dims)}" for i in inputs)
    return type(err)(f"{label}: {err}; operands {operands} — at {location(user_line())}")


def toposort(outputs: Iterable[Tensor], stop: set = frozenset()) -> list:
    """Every node the outputs depend on, inputs before users, in a deterministic order
    (not looking past nodes whose ids are in ``stop``)."""
    order, seen = [], set()
    for out in outputs:
        if id(out) in seen:
            continue
        stack = [(out, iter(() if id(out) in stop else out.inputs))]
        seen.add(id(out))
        while stack:
            node, pending = stack[-1]
            for child in pending:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(() if id(child) in stop else child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order

