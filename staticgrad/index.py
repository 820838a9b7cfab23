"""Index maps as data: where a loop reads each value, shared by ops, schedule and renderers.

A loop over a space of rank ``r`` has loop variables ``i0 .. i{r-1}``. An element of a node is
read at an index: one entry per axis, each an ``Affine`` (``offset + sum(coeff * i_k)``, the
offset a size that may be known only at call time) or a ``Gather`` (read from an index tensor).
A movement op's ``OpDef.index`` maps its own index to its inputs' indices, so fusion through
reshape, transpose, slice, flip, broadcast and take needs no op names anywhere else.

>>> i = loop_index(2)
>>> i[1].scaled(-1).shifted(4)
Affine(4 - i1)
"""

from __future__ import annotations

from dataclasses import dataclass

from . import shapes as sh


@dataclass(frozen=True)
class Affine:
    """``offset + sum(coeff * i_k for k, coeff in terms)``; ``terms`` sorted by loop depth."""
    terms: tuple = ()
    offset: object = 0

    def shifted(self, by) -> Affine:
        return Affine(self.terms, self.offset + by) if not (sh.is_static(by) and by == 0) \
            else self

    def scaled(self, by: int) -> Affine:
        return Affine(tuple((k, c * by) for k, c in self.terms), self.offset * by)

    def plus(self, other: Affine) -> Affine:
        """The sum of two entries (a sliding window reads ``stride * o + dilation * k``)."""
        coeffs = dict(self.terms)
        for k, c in other.terms:
            coeffs[k] = coeffs.get(k, 0) + c
        return Affine(tuple(sorted((k, c) for k, c in coeffs.items() if c)),
                      self.offset + other.offset)

    @property
    def depth(self) -> int:
        """How many loops this entry depends on (the deepest loop variable, plus one)."""
        return max((k + 1 for k, _ in self.terms), default=0)

    def show(self, dim=str, offset=None) -> str:
        """Code for this entry; ``dim`` renders a size (``str`` for symbolic names), and
        ``offset`` the offset (``dim`` by default)."""
        parts = []
        if not (sh.is_static(self.offset) and self.offset == 0):
            parts.append((offset or dim)(self.offset))
        for k, c in self.terms:
            term = f"i{k}" if abs(c) == 1 else f"{abs(c)} * i{k}"
            parts.append(term if c > 0 and not parts else (f"+ {term}" if c > 0 else f"- {term}"))
        if not parts:
            return "0"
        text = " ".join(parts)
        return text if len(parts) == 1 and not text.startswith("- ") else f"({text})"

    def __repr__(self) -> str:
        return f"Affine({self.show().strip('()')})"


ZERO = Affine()


def loop_index(rank: int) -> tuple:
    """The index of the loop space itself: ``(i0, i1, ...)``."""
    return tuple(Affine(((k, 1),)) for k in range(rank))


def is_loop_index(index: tuple, rank: int) -> bool:
    return tuple(index) == loop_index(rank)


class Gather:
    """An entry read from ``indices`` (a node) at ``index``: ``start + step * j`` where ``j``
    is the value read, negative values counting from ``size`` (the gathered axis' length), so
    a slice of a gather is a gather. Never equal to another entry: two gathers are two reads."""

    __slots__ = ("indices", "index", "size", "step", "start")

    def __init__(self, indices, index: tuple, size, step: int = 1, start=0):
        self.indices, self.index, self.size = indices, tuple(index), size
        self.step, self.start = step, start

    def shifted(self, by) -> Gather:
        return Gather(self.indices, self.index, self.size, self.step, self.start + by)

    def scaled(self, by: int) -> Gather:
        return Gather(self.indices, self.index, self.size, self.step * by, self.start * by)

    @property
    def depth(self) -> int:
        return max((e.depth for e in self.index), default=0)

    def __repr__(self) -> str:
        return f"Gather({self.indices.op or self.indices.leaf}[{', '.join(map(repr, self.index))}])"


def depth(index: tuple) -> int:
    """How many loops an index depends on."""
    return max((e.depth for e in index), default=0)


def aligned(index: tuple, out_dims: tuple, in_dims: tuple) -> tuple:
    """NumPy broadcasting as an index map: leading axes dropped, size-1 axes read at 0."""
    offset = len(out_dims) - len(in_dims)
    return tuple(ZERO if d == 1 else index[k + offset] for k, d in enumerate(in_dims))
