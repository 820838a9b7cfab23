"""Schedule stage: decide what is stored and group the rest into fused loop nests (kernels).

Some nodes get a buffer ("roots"): outputs, reductions, operands of BLAS calls, values used by
loops of different shapes. Every other node is recomputed inline wherever a root needs it, so
intermediates inside a loop never touch memory. Roots that loop over the same shape share one
kernel; a root that needs a row reduction of the same kernel runs in a later pass over the row
while the row is still in cache (softmax, layer norm). ``Kernel`` s run in list order.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import shapes as sh
from .index import ZERO, Gather, is_loop_index, loop_index
from .ops import REGISTRY, Kind, is_view
from .tensor import Tensor, toposort

MAX_READS = 16      # arrays one fused loop reads, at most (see cap_kernels)
# values one fused loop computes, at most: the T slices an unrolled loop stores become kernels
# of 8 that are the same text (their offsets are arguments), not one kernel growing with T
MAX_ROOTS = 8
MAX_DEPTH = 48      # nested inlined expressions, at most
VIEW = ("view",)     # a dependency read through a reshaped view: never the same element
INDEX = ("index",)   # a dependency used as indices: bounds-checked between kernels


@dataclass
class Kernel:
    """One loop nest (or one opaque call) of a compiled function.

    ``space`` is the iteration shape; ``passes`` the roots computed in each pass (a later pass
    may read a row reduction of an earlier one); ``split`` is the loop depth at which passes
    begin; ``nodes`` are all nodes it computes, roots and inlined ones, in order.
    """
    name: str
    kind: str                    # "loop", or the opaque op's name (an emitter runs it)
    space: tuple
    passes: list = field(default_factory=list)
    split: int | None = None
    nodes: list = field(default_factory=list)
    reads: list = field(default_factory=list)
    writes: list = field(default_factory=list)

    @property
    def roots(self) -> list:
        return [r for p in self.passes for r in p]

    def cost(self, env: dict) -> dict:
        """Estimated work of one run, call-time sizes taken from ``env`` (a call plan's):
        ``read``/``written`` bytes (each stored value once), ``flops`` (one per element of each
        elementwise or reduction node) and ``gemm`` flops (``2*M*N*K`` per matrix product)."""
        def count(dims) -> int:
            return int(sh.evaluate(sh.size(dims), env))

        def nbytes(nodes) -> int:
            # scalar constants are literals in the code, not memory
            return sum(count(t.dims) * t.dtype.itemsize for t in nodes
                       if not (t.leaf == "constant" and t.value.size == 1))

        flops = gemm = largest = 0
        for n in self.nodes:
            work = REGISTRY[n.op].flops(n, count)
            flops += work["flops"]
            gemm += work["gemm"]
            largest = max(largest, work["largest"])
        return {"read": nbytes(self.reads), "written": nbytes(self.writes), "flops": flops,
                "gemm": gemm, "largest": largest}

    def __repr__(self) -> str:
        ops = ", ".join(f"{n.op}" for n in self.nodes)
        shape = sh.show(self.space)
        extra = f", {len(self.passes)} passes" if len(self.passes) > 1 else ""
        return f"<Kernel {self.name} {self.kind} over {shape}{extra}: {ops}>"


@dataclass
class Schedule:
    kernels: list
    roots: set                   # ids of nodes that are computed by a kernel as a unit
    locals: set                  # ids of roots kept in a register, never stored
    nodes: list
    # id of a stored root -> (its base, offset): its buffer is ``base``'s memory from element
    # ``offset`` on (a slice or reshape of a stored value); no kernel computes it
    aliases: dict = field(default_factory=dict)


def input_indices(node: Tensor, index: tuple) -> list:
    """Where each input of an inlined ``node`` is read when ``node`` is read at ``index``: the
    op's own index map (elementwise ops broadcast; a reduction reads its input at the loop's
    index, the reduced axes being loops too)."""
    opdef = REGISTRY[node.op]
    if opdef.kind is Kind.REDUCE:
        return [index]
    return opdef.index(node, index)


def is_opaque(node: Tensor) -> bool:
    return node.op is not None and REGISTRY[node.op].emit is not None


def data_inputs(node: Tensor) -> tuple:
    """The inputs whose values a node reads (``numel`` only reads its input's shape)."""
    return node.inputs if REGISTRY[node.op].reads_data else ()


def space_of(node: Tensor, same=lambda dims: dims) -> tuple:
    """The shape a root loops over: its input's for a reduction, else its own (``same``
    names equal call-time sizes alike)."""
    return same(node.inputs[0].dims if REGISTRY[node.op].kind is Kind.REDUCE else node.dims)


def equal_sizes(nodes: list):
    """Call-time sizes that broadcasting assumed equal (checked at each call) are one size
    for scheduling, so ``x + w`` with ``x: (N,)``, ``w: (M,)`` and its gradients share a loop."""
    parent: dict = {}

    def find(s):
        while parent.get(s, s) is not s:
            s = parent[s]
        return s

    for n in nodes:
        if n.op is None or not REGISTRY[n.op].broadcasts:
            continue
        for x in data_inputs(n):
            offset = n.ndim - x.ndim
            for a, d in enumerate(x.dims):
                s, t = sh.single_symbol(d), sh.single_symbol(n.dims[a + offset])
                if s is not None and t is not None and find(s) is not find(t):
                    parent[find(s)] = find(t)
    mapping = {s: find(s) for s in parent}
    return (lambda dims: sh.rename(dims, mapping)) if mapping else (lambda dims: dims)


def reduced_axes(node: Tensor) -> tuple:
    return dict(node.attrs)["axes"] if REGISTRY[node.op].kind is Kind.REDUCE else ()


def is_suffix(axes: tuple, rank: int) -> bool:
    return bool(axes) and tuple(axes) == tuple(range(rank - len(axes), rank))


def schedule(targets: Sequence[Tensor], views: bool = True) -> Schedule:
    """Choose roots, then group roots into kernels in an order that respects dependencies.
    ``views``: stored slices and reshapes of stored values are views of their memory."""
    nodes = toposort(targets)
    same = equal_sizes(nodes)
    roots = choose_roots(nodes, targets, same)
    aliases = choose_aliases(nodes, targets, roots) if views else {}
    kernels, home, passno = [], {}, {}
    # per loop space, its kernels that still take roots, in order: a node tries only those
    # (trying every later kernel made scheduling 20k nodes grow as their square)
    open_kernels: dict = {}
    for node in nodes:
        if id(node) not in roots:
            continue
        if id(node) in aliases:
            home[id(node)] = home.get(id(aliases[id(node)][0]), 0)
            continue
        if is_opaque(node):
            kernels.append(Kernel(f"k{len(kernels)}", node.op, node.dims, [[node]]))
            home[id(node)] = len(kernels) - 1
            continue
        space = space_of(node, same)
        deps = root_reads(node, roots)
        first = max((home[id(d)] for d, _ in deps), default=0)
        same_space = open_kernels.setdefault(space, [])
        placed = None
        for k in same_space[bisect.bisect_left(same_space, first):]:
            placed = join(kernels[k], node, deps, home, passno, k, same, aliases)
            if placed is not None:
                break
        if placed is None:
            kernels.append(Kernel(f"k{len(kernels)}", "loop", space))
            k, placed = len(kernels) - 1, (0, None)
            same_space.append(k)
        kernel = kernels[k]
        p, split = placed
        if split is not None:
            kernel.split = split
        while len(kernel.passes) <= p:
            kernel.passes.append([])
        kernel.passes[p].append(node)
        home[id(node)], passno[id(node)] = k, p
        if len(kernel.roots) >= MAX_ROOTS:
            same_space.remove(k)
    local = kept_local(kernels, targets, roots, nodes)
    for kernel in kernels:
        describe(kernel, roots)
    return Schedule(kernels, roots, local, nodes, aliases)


def choose_aliases(nodes: list, targets: Sequence[Tensor], roots: set) -> dict:
    """Stored slices and reshapes that are one contiguous run of a stored value's (or a
    leaf's) memory, directly or through other such views: their buffer is a view of that
    memory, so no kernel copies them (a scan's pieces, ``h[t]`` of a stored history, a
    flattened BLAS operand). Outputs keep buffers of their own: a result never shares memory
    with a reused buffer."""
    target_ids = {id(t) for t in targets}
    memory: dict = {}    # id -> (stored base, offset) where a node's elements are
    aliases: dict = {}
    for n in nodes:
        found = None
        if n.op is not None and REGISTRY[n.op].alias is not None and id(n) not in target_ids \
                and id(n.inputs[0]) in memory:
            offset = REGISTRY[n.op].alias(n)
            if offset is not None:
                base, start = memory[id(n.inputs[0])]
                found = (base, start + offset)
        if found is not None:
            memory[id(n)] = found
            if id(n) in roots:
                aliases[id(n)] = found
        elif n.op is None or id(n) in roots:
            memory[id(n)] = (n, 0)
    return aliases


def choose_roots(nodes: list, targets: Sequence[Tensor], same) -> set:
    """Nodes that get computed as a unit (and usually stored); all others are inlined."""
    roots = {id(t) for t in targets if t.op is not None}

    def store(x: Tensor):
        if x.op is not None:
            roots.add(id(x))

    for n in nodes:
        if n.op is None:
            continue
        opdef = REGISTRY[n.op]
        if opdef.emit is not None or opdef.kind is Kind.REDUCE:
            roots.add(id(n))
        # an opaque op's operands, a view's input, a gather's indices: the op says
        stores = opdef.stores(n) if opdef.stores is not None else \
            (n.inputs if opdef.emit is not None else ())
        for x in stores:
            store(x)
    share_across_spaces(nodes, roots, same)
    if cap_kernels(nodes, roots):
        share_across_spaces(nodes, roots, same)
    return roots


def share_across_spaces(nodes: list, roots: set, same) -> None:
    """A value needed by loops of different shapes is stored once rather than recomputed:
    one pass from the outputs back, each node seeing the loop spaces of all its users."""
    spaces: dict = {}
    for n in reversed(nodes):
        if n.op is None:
            continue
        # a view is read through its stored input by every user: storing it would be a copy
        # nobody reads
        if id(n) not in roots and len(spaces.get(id(n), ())) > 1 and not is_view(n):
            roots.add(id(n))
        mine = {space_of(n, same)} if id(n) in roots else spaces.get(id(n), set())
        for x in data_inputs(n):
            if x.op is not None and id(x) not in roots:
                spaces.setdefault(id(x), set()).update(mine)


def cap_kernels(nodes: list, roots: set) -> bool:
    """Store a value where inlining it would make a loop read more than ``MAX_READS`` arrays
    or nest expressions deeper than ``MAX_DEPTH``: the sum of T gradient terms of an unrolled
    loop becomes kernels of 16 terms, all the same text (compiled once), not one kernel whose
    size and code grow with T. Returns whether it stored anything."""
    reads: dict = {}
    depth: dict = {}
    changed = False
    for n in nodes:
        if n.op is None:
            continue
        while True:
            mine, deep, inlined = set(), 0, []
            for x in data_inputs(n):
                if x.op is None:
                    if not (x.leaf == "constant" and x.value.size == 1):
                        mine.add(id(x))
                elif id(x) in roots:
                    mine.add(id(x))
                else:
                    mine |= reads[id(x)]
                    deep = max(deep, depth[id(x)])
                    inlined.append(x)
            if len(mine) <= MAX_READS and deep < MAX_DEPTH or not inlined:
                break
            biggest = max(inlined, key=lambda x: (len(reads[id(x)]), depth[id(x)]))
            roots.add(id(biggest))
            changed = True
        reads[id(n)], depth[id(n)] = mine, deep + 1
    return changed


def root_reads(node: Tensor, roots: set) -> list:
    """The roots (and leaves) ``node`` reads, each with the index it reads it at."""
    out = []
    rank = len(space_of(node))
    start = node.inputs[0] if REGISTRY[node.op].kind is Kind.REDUCE else node
    index = loop_index(rank)

    stack = [(node, index, True)] if start is node else \
        [(start, index, id(start) not in roots)]
    while stack:
        t, idx, top = stack.pop()
        if t.op is None:
            continue
        if id(t) in roots and not top:
            out.append((t, idx))
            continue
        if is_view(t):
            if t.inputs[0].op is not None:
                out.append((t.inputs[0], VIEW))
            continue
        checked = {id(x) for x, _ in checks_of(t)}
        for x, xi in zip(data_inputs(t), input_indices(t, idx)):
            if id(x) in checked and x.op is not None:
                # computed indices are bounds-checked between the kernel that makes them and
                # the one that gathers with them: never fused into the same loop
                out.append((x, INDEX))
            else:
                stack.append((x, xi, False))
    return out


def checks_of(node: Tensor) -> list:
    """``(index tensor, axis size)`` pairs to bounds-check before ``node`` runs."""
    checks = REGISTRY[node.op].checks if node.op is not None else None
    return checks(node) if checks is not None else []


def join(kernel: Kernel, node: Tensor, deps: list, home: dict, passno: dict, k: int, same,
         aliases: dict):
    """``(pass, split)`` if ``node`` can run in ``kernel``, a loop over ``node``'s space with
    room for another root (``schedule`` offers only those); ``None`` if it cannot."""
    rank = len(kernel.space)
    p, split = 0, None
    for dep, idx in deps:
        if home.get(id(dep)) != k:
            continue
        if id(dep) in aliases:
            # a view of memory this kernel writes: its elements are complete only after it
            if home.get(id(aliases[id(dep)][0])) == k:
                return None
            continue
        if is_loop_index(idx, rank) and same(dep.dims) == kernel.space:
            p = max(p, passno[id(dep)])       # same element, same pass
            continue
        axes = reduced_axes(dep)
        if REGISTRY[dep.op].kind is Kind.REDUCE and is_suffix(axes, rank) \
                and row_read(idx, axes, rank):
            depth = rank - len(axes)
            if (kernel.split if split is None else split) not in (None, depth):
                return None
            split = depth
            p = max(p, passno[id(dep)] + 1)   # after the row is reduced
            continue
        return None
    return p, split


def row_read(idx: tuple, axes: tuple, rank: int) -> bool:
    """Is a reduction over ``axes`` read once per row: kept axes in loop order, reduced at 0?"""
    loops = loop_index(rank)
    kept = [loops[a] for a in range(rank) if a not in axes]
    if any(isinstance(e, Gather) for e in idx) or len(idx) not in (rank, rank - len(axes)):
        return False
    return [e for e in idx if e != ZERO] == kept


def kept_local(kernels: list, targets, roots: set, nodes: list) -> set:
    """Row reductions read only inside their own kernel live in a register, never stored."""
    users: dict = {}
    for n in nodes:
        for x in n.inputs:
            users.setdefault(id(x), []).append(n)
    target_ids = {id(t) for t in targets}
    local = set()
    for kernel in kernels:
        if kernel.kind != "loop" or kernel.split is None:
            continue
        mine = {id(r) for r in kernel.roots}
        for r in kernel.roots:
            axes = reduced_axes(r)
            if id(r) in target_ids or not is_suffix(axes, len(kernel.space)) or \
                    len(kernel.space) - len(axes) != kernel.split:
                continue
            readers = reachable_roots(r, users, roots)
            if readers and readers <= mine:
                local.add(id(r))
    return local


def reachable_roots(node: Tensor, users: dict, roots: set) -> set:
    """Roots that read ``node`` directly or through inlined nodes."""
    found, stack = set(), list(users.get(id(node), []))
    while stack:
        u = stack.pop()
        if id(u) in roots:
            found.add(id(u))
        else:
            stack.extend(users.get(id(u), []))
    return found


def describe(kernel: Kernel, roots: set) -> None:
    """Fill ``nodes`` (everything computed, in order), ``reads`` and ``writes``."""
    members, reads = [], []
    seen = set()
    for root in kernel.roots:
        stack = [(root, True, False)]    # (node, is the root, inputs done)
        while stack:
            t, top, done = stack.pop()
            if done:
                members.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            if t.op is None or (id(t) in roots or is_view(t)) and not top:
                reads.append(t)
                continue
            stack.append((t, top, True))
            stack.extend((x, False, False) for x in reversed(data_inputs(t)))
    kernel.nodes, kernel.reads = members, reads
    kernel.writes = list(kernel.roots)
