"""Shapes whose sizes may be known only at call time.

A placeholder dimension given as ``None`` (or a name such as ``"batch"``) becomes a symbol;
every derived size is an integer polynomial in those symbols (``Dim``), so ``concatenate``,
slicing and ``reshape(-1)`` keep exact sizes, and one compiled function serves every batch.
Shape rules here work unchanged on plain ints, which is how sizes are checked at call time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

_serials = itertools.count()


class Sym:
    """A size named at graph-build time and bound when a function is called."""

    __slots__ = ("name", "serial")

    def __init__(self, name: str):
        self.name = name
        self.serial = next(_serials)

    def __repr__(self) -> str:
        return self.name


class Dim:
    """An integer polynomial in ``Sym`` s, e.g. ``N``, ``2*N + M``. Never a plain constant.

    >>> n = Dim.symbol("N")
    >>> (n * 3 + 1) - n
    2*N + 1
    """

    __slots__ = ("terms", "_hash", "__weakref__")  # weak: tensor.py remembers named sizes

    def __init__(self, terms: tuple):
        # terms: sorted tuple of (monomial, coeff); a monomial is a sorted tuple of Syms
        self.terms = terms
        self._hash = hash(tuple((tuple(s.serial for s in m), c) for m, c in terms))

    @staticmethod
    def symbol(name: str) -> Dim:
        return Dim((((Sym(name),), 1),))

    @staticmethod
    def make(poly: dict) -> Size:
        items = sorted(((m, c) for m, c in poly.items() if c != 0),
                       key=lambda mc: (len(mc[0]), [s.serial for s in mc[0]]))
        if not items:
            return 0
        if len(items) == 1 and items[0][0] == ():
            return items[0][1]
        return Dim(tuple(items))

    def symbols(self) -> set:
        return {s for m, _ in self.terms for s in m}

    def evaluate(self, env: dict) -> int:
        return sum(c * math.prod(env[s] for s in m) for m, c in self.terms)

    def __eq__(self, other) -> bool:
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    def __add__(self, other) -> Size:
        poly = _poly(self)
        for m, c in _poly(other).items():
            poly[m] = poly.get(m, 0) + c
        return Dim.make(poly)

    __radd__ = __add__

    def __neg__(self) -> Size:
        return Dim.make({m: -c for m, c in self.terms})

    def __sub__(self, other) -> Size:
        return self + (-other)

    def __rsub__(self, other) -> Size:
        return (-self) + other

    def __mul__(self, other) -> Size:
        poly: dict = {}
        for (ma, ca), (mb, cb) in itertools.product(_poly(self).items(), _poly(other).items()):
            m = tuple(sorted(ma + mb, key=lambda s: s.serial))
            poly[m] = poly.get(m, 0) + ca * cb
        return Dim.make(poly)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        parts = []
        for m, c in reversed(self.terms):
            body = "*".join(s.name for s in m)
            parts.append(body if c == 1 and m else f"{c}*{body}" if m else str(c))
        return " + ".join(parts).replace("+ -", "- ")


Size = int | Dim
Shape = tuple


def _poly(d: Size) -> dict:
    return dict(d.terms) if isinstance(d, Dim) else ({(): d} if d else {})


def is_static(d: Size) -> bool:
    return not isinstance(d, Dim)


def evaluate(value, env: dict):
    """Replace every ``Dim`` inside ``value`` (nested tuples) by its integer under ``env``."""
    if isinstance(value, Dim):
        return value.evaluate(env)
    if isinstance(value, tuple):
        return tuple(evaluate(v, env) for v in value)
    return value


def symbols_in(value) -> set:
    if isinstance(value, Dim):
        return value.symbols()
    if isinstance(value, tuple):
        return set().union(*(symbols_in(v) for v in value)) if value else set()
    return set()


def rename(value, mapping: dict):
    """``value`` (a size, or nested tuples of sizes) with symbols replaced per ``mapping``."""
    if isinstance(value, Dim):
        poly: dict = {}
        for m, c in value.terms:
            key = tuple(sorted((mapping.get(s, s) for s in m), key=lambda s: s.serial))
            poly[key] = poly.get(key, 0) + c
        return Dim.make(poly)
    if isinstance(value, tuple):
        return tuple(rename(v, mapping) for v in value)
    return value


def single_symbol(d: Size):
    """The ``Sym`` if ``d`` is exactly one symbol (``N``, not ``2*N`` or ``N + 1``)."""
    if isinstance(d, Dim) and len(d.terms) == 1 and d.terms[0][1] == 1 \
            and len(d.terms[0][0]) == 1:
        return d.terms[0][0][0]
    return None


def size(shape: Shape) -> Size:
    out: Size = 1
    for d in shape:
        out = out * d
    return out


def exact_div(total: Size, part: Size) -> Size | None:
    """``total / part`` when it divides exactly as polynomials, else ``None``."""
    if is_static(part):
        if part == 0:
            return None
        terms = _poly(total)
        if any(c % part for c in terms.values()):
            return None
        return Dim.make({m: c // part for m, c in terms.items()})
    if len(part.terms) != 1:
        return total if total == part else None
    (pm, pc), = part.terms
    out = {}
    for m, c in _poly(total).items():
        rest = list(m)
        for s in pm:
            if s not in rest:
                return None
            rest.remove(s)
        if c % pc:
            return None
        out[tuple(rest)] = c // pc
    return Dim.make(out)


def show_dim(d: Size) -> str:
    return str(d) if is_static(d) else repr(d)


def show(shape: Shape) -> str:
    """``(2, N, 3)`` -> ``'[2,N,3]'`` for listings and messages."""
    return "[" + ",".join(show_dim(d) for d in shape) + "]"


def public(shape: Shape) -> tuple:
    """The user-facing shape: ``None`` where a size is known only at call time."""
    return tuple(d if is_static(d) else None for d in shape)


def normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def normalize_axes(axis, ndim: int) -> tuple:
    """``None`` -> all axes; an int or iterable -> sorted, non-negative, distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = tuple(sorted(normalize_axis(int(a), ndim) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return out


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting; a call-time size meeting a different size is assumed equal to it.

    The assumption is checked when the function is called (``check_no_dynamic_broadcast``).
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        result: Size = 1
        for d in dims:
            if d == 1 or d == result:
                continue
            if result == 1:
                result = d
            elif is_static(result) and is_static(d):
                raise ValueError("shapes " + " and ".join(show(s) for s in shapes)
                                 + " do not broadcast")
            elif is_static(d):
                result = d  # a known size wins over a call-time one
        out.append(result)
    return tuple(out)


def dynamic_broadcast_violations(in_shapes: Iterable[Shape], out_shape: Shape,
                                 env: dict) -> list:
    """Call-time sizes that would need broadcasting: generated loops assume they do not."""
    bad = []
    out_vals = evaluate(out_shape, env)
    for shape in in_shapes:
        offset = len(out_shape) - len(shape)
        for axis, d in enumerate(shape):
            if not is_static(d) and d.evaluate(env) != out_vals[axis + offset]:
                bad.append((d, d.evaluate(env), out_vals[axis + offset]))
    return bad


def slice_length(dim: Size, start, stop, step: int) -> Size:
    """Length of ``range(dim)[start:stop:step]``; symbolic bounds are non-negative positions."""
    if is_static(dim) and all(is_static(v) for v in (start, stop) if v is not None):
        return len(range(dim)[slice(start, stop, step)])
    if step not in (1, -1):
        raise ValueError(f"a slice with step {step} of a size known only at call time "
                         f"({show_dim(dim)}) is not supported")

    def position(v, default):
        if v is None:
            return default
        return v + dim if is_static(v) and v < 0 else v

    if step == 1:
        return position(stop, dim) - position(start, 0)
    return position(start, dim - 1) - position(stop, -1)
