"""Memory stays flat: many calls of a training step, many functions built on fresh graphs, in
one process. Fewer than the issue's 100,000 calls and 2,000 builds (``python -m bench.memory``
runs those), with a bound on the growth per call that a leak of one small object per call
would break."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from bench import memory  # noqa: E402


def test_calls_of_a_training_step_hold_memory_flat():
    # W1's graph at its small sizes (the full sizes take 0.3 ms a call): 64 bytes a call would
    # be 1.2 MiB over 20,000 calls; allocator noise stays well below
    result = memory.calls(20_000, quick=True)
    growth = result["rss_end_mib"] - result["rss_start_mib"]
    assert growth < 0.5, result


def test_functions_built_on_fresh_graphs_are_released():
    from staticgrad import tensor
    memory.fresh_function(0)
    gc.collect()
    nodes = len(tensor._interned)
    alive = [weakref.ref(memory.fresh_function(k)) for k in range(3)]
    gc.collect()
    assert not any(r() for r in alive), "a Function outlived every reference to it"
    assert len(tensor._interned) == nodes, "interned nodes outlived their graph"
    result = memory.builds(300, warmup=150)   # past one-off growth of CPython tables
    assert result["interned_end"] == result["interned_start"], result
    # 4 KiB a build would be 1.2 MiB over 300 builds
    assert result["rss_end_mib"] - result["rss_start_mib"] < 0.75, result
