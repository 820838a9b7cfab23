"""W9 (the digits CNN's loss and gradients) with the systems interleaved call by call.

``python -m bench`` times each system in a block of its own, which is right on a quiet machine
(no library's idle threads disturb another's); on a shared machine the load changes from block
to block. This times staticgrad, PyTorch eager and JAX jit in turns, one call each per round,
so every system sees the same load, and prints the best and the median call of each.

    python -m bench.w9 [--rounds 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.systems import jax_jit, staticgrad_graph, torch_eager
from bench.workloads import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every library (0: each library's default)")
    args = parser.parse_args()
    if args.threads:   # before the libraries start their pools
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = str(args.threads)
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false " \
            f"intra_op_parallelism_threads={args.threads}"
    data = WORKLOADS["W9"].make_data(False)
    jax_jit.setup()
    torch_eager.setup()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    runners = {"staticgrad": staticgrad_graph.w9(data, "numba"),
               "PyTorch eager": torch_eager.w9(data), "JAX jit": jax_jit.w9(data)}
    seconds: dict = {name: [] for name in runners}
    for runner in runners.values():
        runner.call()
        for _ in range(4):
            runner.call()
    for _ in range(args.rounds):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.call()
            seconds[name].append(time.perf_counter() - start)
    print(f"W9, {args.rounds} rounds, threads: {args.threads or 'default'}; load average "
          f"{os.getloadavg()[0]:.2f}")
    for name, ts in seconds.items():
        print(f"  {name:14s} best {min(ts) * 1e3:6.2f} ms   median {np.median(ts) * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
