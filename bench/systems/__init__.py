"""The systems under test, each an optional peer with one builder per workload.

A system module has ``setup(**options) -> dict`` (imports and configures its library, returns
versions and thread counts; ``ImportError`` means the peer is missing) and ``BUILDERS``, mapping a
workload name to ``build(data, **options) -> Runner``. Building converts the inputs to the
library's own arrays once, so the timed call measures the computation, not the conversion.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Runner:
    """A built workload: ``call`` is what gets timed, ``check`` feeds the correctness check."""
    call: Callable[[], object]          # one call; returns only when its results are ready
    check: Callable[[], list]           # one call; its outputs as NumPy arrays, workload order
    info: dict = field(default_factory=dict)  # anything worth recording (node/kernel counts)
    # what only the timed calls tell (staticgrad: whether they ran on threads), added to info
    after: Callable[[], dict] | None = None


@dataclass(frozen=True)
class System:
    name: str          # what --systems selects
    label: str         # what the table shows
    module: str        # bench.systems.<module>
    options: dict = field(default_factory=dict)

    def load(self):
        return importlib.import_module(f"bench.systems.{self.module}")


# NumPy comes first: every other row is a ratio to it.
SYSTEMS: list[System] = [
    System("numpy", "NumPy, hand-written gradients", "numpy_hand"),
    System("torch", "PyTorch eager", "torch_eager"),
    System("jax", "JAX jit", "jax_jit"),
    System("pytensor", "PyTensor, default mode", "pytensor_graph", {"mode": None}),
    System("pytensor-numba", "PyTensor, NUMBA mode", "pytensor_graph", {"mode": "NUMBA"}),
    System("pytensor-c", "PyTensor, C mode (CVM)", "pytensor_graph", {"mode": "CVM"}),
    System("staticgrad-numba", "staticgrad, numba backend", "staticgrad_graph",
           {"backend": "numba"}),
    System("staticgrad-numpy", "staticgrad, numpy backend", "staticgrad_graph",
           {"backend": "numpy"}),
]


def select(names: list[str] | None) -> list[System]:
    """Systems by name; ``pytensor`` or ``staticgrad`` also select their variants.

    NumPy is always included: it is the baseline of the ratio column.
    """
    if not names:
        return list(SYSTEMS)
    known = {s.name for s in SYSTEMS}
    families = {s.name.split("-")[0] for s in SYSTEMS}
    unknown = [n for n in names if n not in known and n not in families]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(s.name for s in SYSTEMS)}")
    return [s for s in SYSTEMS
            if s.name == "numpy" or s.name in names or s.name.split("-")[0] in names]


class Skipped(Exception):
    """Raised by ``setup`` when a system would only repeat another row (reported, not timed)."""
