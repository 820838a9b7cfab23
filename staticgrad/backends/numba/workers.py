"""Cold starts on every core: the new kernels of a first call compiled in worker processes.

Numba compiles one function at a time in a process (its compiler holds the GIL), so a first
call with many distinct new kernels (a CNN step has 22) uses one core for seconds. Before such
a call runs, its new kernels are compiled for the argument types the call will pass, a share
in this process and the rest by worker processes, which save the machine code in the disk
cache beside each module (``cache=True``); the call then loads it instead of compiling. A
worker that fails or is slow changes nothing: the call compiles what the cache lacks itself, as
it does without workers.

On Linux a worker is a fork of this process: it has Numba imported and the kernels' modules
loaded, so it starts compiling at once, where a fresh interpreter spends 2-3 s importing
before its first kernel (so it got a smaller share, and a call with few kernels none). The
fork happens under Numba's compiler lock, so no other thread of this process is inside the
compiler at that moment, and the child keeps the lock: a thread restarted in the child (a
tiered function's) cannot compile alongside it. Elsewhere workers are fresh interpreters.

The package's math kernels (``mathlib.exp32``: 0.35-0.6 s to compile) that new kernels call are
dealt too, each to one process, first in its share: a process whose kernel calls one another
process compiles reads it from the disk cache (W5's cold first call: 3.1 s -> 2.7 s). Forks
only: a fresh interpreter starts too late to be first at anything.

``STATICGRAD_COMPILE_WORKERS`` sets how many processes (default: the number of cores; 0 or 1
turns this off).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings

MIN_JOBS = 2       # one new kernel compiles here while workers would start
TIMEOUT = 600.0    # seconds a worker may take for all its kernels
STARTUP = 6000     # a fresh worker's start (2-3 s: imports, Numba's start) in module characters
FORK_STARTUP = 300   # a forked worker's (tens of milliseconds)


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
    forking = can_fork()
    shares = deal(jobs, count, FORK_STARTUP if forking else STARTUP)
    if not any(shares[1:]):       # too little work to be worth a worker's start
        return 0
    math = math_first(shares) if forking else [[] for _ in shares]
    start = fork if forking else spawn
    waits = []
    for share, calls in zip(shares[1:], math[1:]):
        if share:
            with contextlib.suppress(Exception):
                waits.append(start([*calls, *share]))
    for fn, types in [*math[0], *local, *shares[0]]:   # this process's share, meanwhile
        with contextlib.suppress(Exception):
            fn.compile(types)
    deadline = time.monotonic() + TIMEOUT
    for wait in waits:
        with contextlib.suppress(Exception):
            wait(deadline)
    return 1 + len(waits)


def math_calls(job: tuple) -> set:
    """The package's math kernels a generated kernel calls (``mathlib.exp(...)`` in its
    text), each with the argument types it is compiled for: one per float type of the
    graph's arrays the kernel gets (``x0``, ``x1``...: ``exp32`` for float32 ones; its
    float64 per-chunk partials say nothing of the values)."""
    from numba import types as nbt

    from . import mathlib
    fn, types = job
    code = fn.py_func.__code__
    with open(code.co_filename) as text:
        names = set(re.findall(r"mathlib\.(\w+)\(", text.read()))
    floats = {t.dtype for name, t in zip(code.co_varnames[:code.co_argcount], types)
              if name.startswith("x") and isinstance(t, nbt.Array)
              and isinstance(t.dtype, nbt.Float)}
    calls = set()
    for name in names:
        kernels = getattr(getattr(mathlib, name, None), "kernels", {})
        for dtype in floats:   # the generic name computes any other float in float64
            single = nbt.float32 if dtype == nbt.float32 else nbt.float64
            if single in kernels:
                calls.add((kernels[single], (single,)))
    return calls


def math_first(shares: list) -> list:
    """Which process compiles each math kernel (``math_calls``) the shares' kernels call,
    before its own kernels: one process per math kernel, the one with the fewest so far. A
    process whose kernel calls a math kernel another one compiles then reads it from the
    disk cache when it is there in time, where both used to compile it at once (``exp32``
    takes 0.35-0.6 s)."""
    firsts: list = [[] for _ in shares]
    calls = [set().union(*map(math_calls, share)) for share in shares]
    for call in sorted(set().union(*calls), key=lambda c: c[0].py_func.__name__):
        callers = [k for k, needs in enumerate(calls) if call in needs]
        k = min(callers, key=lambda k: len(firsts[k]))
        firsts[k].append(call)
    return firsts


def can_fork() -> bool:
    """Whether workers are forks of this process: on Linux (macOS's system libraries are not
    safe to use in a fork of a process with threads; Windows has no fork)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def fork(share: list):
    """Fork a worker compiling ``share``; returns a function waiting for it until a deadline
    (then killing it)."""
    from numba.core.compiler_lock import global_compiler_lock
    with global_compiler_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: forking with threads
        pid = os.fork()
        if pid == 0:   # the worker: compile, then leave without running the parent's exit code
            try:
                for fn, types in share:
                    with contextlib.suppress(Exception):
                        fn.compile(types)
            finally:
                os._exit(0)

    def wait(deadline: float) -> None:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)
    return wait


def spawn(share: list):
    """Start a fresh interpreter compiling ``share`` (it imports each kernel's module from
    its file; package functions cannot go there, see ``compile_all``); returns a function
    waiting for it until a deadline (then killing it). Not multiprocessing, whose spawned
    children import the user's script again."""
    command = [sys.executable, "-c", "from staticgrad.backends.numba.workers import serve; "
               "serve()"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.stdin.write(pickle.dumps([(fn.py_func.__code__.co_filename, fn.py_func.__module__,
                                        types) for fn, types in share]))
        proc.stdin.close()
    except Exception:
        proc.kill()
        raise

    def wait(deadline: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return wait


def deal(jobs: list, count: int, startup: int = STARTUP) -> list:
    """``count`` shares of the jobs, the longest kernels first, each to the share that would
    finish first; share 0 is this process's (already started, so it takes more: a worker
    starts ``startup`` module characters' worth of compile time late)."""
    def cost(job) -> int:   # a module's length stands for its compile time
        return os.path.getsize(job[0].py_func.__code__.co_filename)

    loads = [0] + [startup] * (count - 1)
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
