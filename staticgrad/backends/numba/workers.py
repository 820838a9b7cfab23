"""Cold starts on every core: the new kernels of a first call compiled in worker processes.

Numba compiles one function at a time in a process (its compiler holds the GIL), so a first
call with many distinct new kernels (a CNN step has 32) uses one core for seconds. Before such
a call runs, its new kernels are compiled for the argument types the call will pass, a share
in this process and the rest by worker processes, which save the machine code in the disk
cache beside each module (``cache=True``); the call then loads it instead of compiling. A
worker that fails or is slow changes nothing: the call compiles what the cache lacks itself, as
it does without workers.

``STATICGRAD_COMPILE_WORKERS`` sets how many processes (default: the number of cores; 0 or 1
turns this off).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pickle
import subprocess
import sys
import time

MIN_JOBS = 3       # fewer new kernels compile faster here than workers start (about 1 s each)
TIMEOUT = 600.0    # seconds a worker may take for all its kernels
STARTUP = 6000     # a worker's start (2-3 s: imports, Numba's own start) in module characters


def worker_count(jobs: int) -> int:
    """How many processes to start for ``jobs`` kernels (0: compile in this process)."""
    setting = os.environ.get("STATICGRAD_COMPILE_WORKERS")
    cores = os.cpu_count() or 1
    wanted = cores if setting is None or not setting.strip().isdigit() else int(setting)
    return min(wanted, jobs) if jobs >= MIN_JOBS and wanted > 1 else 0


def uncached(dispatcher) -> bool:
    """Whether a kernel's module has no machine code in the disk cache yet (Numba writes an
    index file per function beside the module)."""
    path = dispatcher.py_func.__code__.co_filename
    name = dispatcher.py_func.__module__
    return not glob.glob(os.path.join(os.path.dirname(path), "__pycache__", f"{name}.*.nbi"))


def compile_all(jobs: list, local: list = ()) -> int:
    """Compile ``(dispatcher, argument types)`` jobs at once: this process takes a share and
    worker processes the rest; returns how many processes compiled (0: none of this, the call
    compiles as usual). ``local`` jobs never go to a worker: functions of the package
    (``blas.matmul``), which have no generated module for a worker to import (Numba caches
    their machine code beside the package, or in ``NUMBA_CACHE_DIR``); this process compiles
    them with its share while workers run, and the call does when none starts. Errors are
    left for the call to meet (and report) itself."""
    jobs = [(fn, types) for fn, types in jobs if uncached(fn)]
    count = worker_count(len(jobs))
    if not count:
        return 0
    shares = deal(jobs, count)
    if not any(shares[1:]):       # too little work to be worth a worker's start
        return 0
    # fresh interpreters running this module (not multiprocessing, whose spawned children
    # import the user's script again)
    command = [sys.executable, "-c", "from staticgrad.backends.numba.workers import serve; "
               "serve()"]
    procs = []
    with contextlib.suppress(Exception):
        for share in filter(None, shares[1:]):
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            procs.append(proc)
            proc.stdin.write(pickle.dumps([(fn.py_func.__code__.co_filename,
                                            fn.py_func.__module__, types)
                                           for fn, types in share]))
            proc.stdin.close()
    for fn, types in [*local, *shares[0]]:   # this process's share, while the workers run
        with contextlib.suppress(Exception):
            fn.compile(types)
    deadline = time.monotonic() + TIMEOUT
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return 1 + len(procs)


def deal(jobs: list, count: int) -> list:
    """``count`` shares of the jobs, the longest kernels first, each to the share that would
    finish first; share 0 is this process's (already started, so it takes more)."""
    def cost(job) -> int:   # a module's length stands for its compile time
        return os.path.getsize(job[0].py_func.__code__.co_filename)

    loads = [0] + [STARTUP] * (count - 1)
    shares: list = [[] for _ in range(count)]
    for job in sorted(jobs, key=cost, reverse=True):
        k = loads.index(min(loads))
        shares[k].append(job)
        loads[k] += cost(job)
    return shares


def serve() -> None:
    """A worker: read its jobs from stdin, import each kernel's module from its file and
    compile it for the given argument types (Numba saves the machine code in the cache)."""
    for path, name, types in pickle.loads(sys.stdin.buffer.read()):
        with contextlib.suppress(Exception):
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[name] = module
            module.kernel.compile(types)
