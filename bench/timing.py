"""How calls are timed: warm-up, then many samples; each sample repeats the call enough times
to be well above the clock's resolution, and is reported per call.

The garbage collector is off while sampling (as in ``timeit``) so a collection of unrelated
garbage does not land in one system's sample.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    warmup: int          # untimed calls first (caches, lazy allocation, thread pools)
    min_samples: int
    max_samples: int
    budget_s: float      # keep sampling past min_samples until this much time has passed
    sample_s: float      # a sample repeats the call until it lasts about this long
    steps: int           # W1: one sample is this many consecutive training steps
    pause_s: float       # idle time between system blocks: spinning threads go to sleep
    startup_all: bool    # time staticgrad's cold/warm start on every workload (else W3 only)
    floor_scale: int     # STREAM array length and GEMM size: small in quick mode

    def to_dict(self) -> dict:
        return asdict(self)


QUICK = Settings(warmup=1, min_samples=3, max_samples=5, budget_s=0.02, sample_s=0.002,
                 steps=20, pause_s=0.0, startup_all=False, floor_scale=0)
FULL = Settings(warmup=3, min_samples=10, max_samples=200, budget_s=2.0, sample_s=0.05,
                steps=500, pause_s=0.5, startup_all=True, floor_scale=1)


@dataclass
class Timing:
    samples: list[float]   # seconds per call, one per sample
    number: int            # calls per sample

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_dict(self) -> dict:
        return dict(median_s=self.median, min_s=min(self.samples), max_s=max(self.samples),
                    number=self.number, samples_s=self.samples)


def measure(call: Callable[[], object], settings: Settings, number: int | None = None) -> Timing:
    """Time ``call``: ``number`` calls per sample, or enough to last ``settings.sample_s``."""
    first = math.inf
    for _ in range(settings.warmup):
        t0 = time.perf_counter()
        call()
        first = min(first, time.perf_counter() - t0)
    if number is None:
        number = max(1, math.ceil(settings.sample_s / max(first, 1e-9)))
    samples: list[float] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + settings.budget_s
        while len(samples) < settings.max_samples and (
                len(samples) < settings.min_samples or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if enabled:
            gc.enable()
    return Timing(samples, number)


def timed(f: Callable[[], object]) -> tuple[object, float]:
    """``(f(), seconds it took)``."""
    t0 = time.perf_counter()
    result = f()
    return result, time.perf_counter() - t0
