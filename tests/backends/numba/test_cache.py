"""The disk cache under faults: processes compiling at once, a process killed mid-write, torn,
zeroed and stale files, read-only folders. Each case ends with a process that gets the right
numbers, and with a cache that a later process can trust."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import runs_after_a_cache_race

import staticgrad as sg
from staticgrad.backends.numba import cache

ROOT = Path(__file__).resolve().parents[3]


def environment(cache: Path, **extra) -> dict:
    """The environment of a child process using ``cache``; ``extra`` values of None unset."""
    env = dict(os.environ, STATICGRAD_CACHE_DIR=str(cache), **extra,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return {k: v for k, v in env.items() if v is not None}


def run_script(code: str, cache: Path, timeout=300, **env) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         env=environment(cache, **env), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


SCRIPT = """
    import numpy as np, staticgrad as sg
    x = sg.placeholder((None,), np.float32, name="x")
    y = sg.sum(sg.sin(x) * 3.0)
    f = sg.function([x], [y, sg.grad(y, x)])
    v = f(np.arange(5, dtype=np.float32))
    print(f.stats["loaded"], f.stats["compiled"], f.stats["distinct"])
    print(float(v[0]))
    print(f.stats["cache"], sorted(f.stats["seconds"]))
"""


def test_a_second_process_loads_compiled_code_from_the_cache(tmp_path):
    first = run_script(SCRIPT, tmp_path).split()
    second = run_script(SCRIPT, tmp_path).split()
    distinct = first[2]
    assert first[:2] == ["0", distinct]     # every distinct kernel compiled
    assert second[:2] == [distinct, "0"]    # loaded, not compiled
    assert first[3] == second[3]
    # stats say so too, with the time of every stage
    assert first[4] == "miss" and second[4] == "hit"
    stages = "['codegen', 'first call', 'import', 'rewrite', 'schedule']"
    assert " ".join(first[5:]) == " ".join(second[5:]) == stages
    modules = list(tmp_path.glob("*/sgk_*.py"))   # one module (in its folder) per kernel
    assert len(modules) == int(distinct)


LOAD_THEN_COMPILE = """
    import numpy as np, staticgrad as sg
    from numba.core.base import BaseContext
    refreshes = []
    plain = BaseContext.refresh
    BaseContext.refresh = lambda self: refreshes.append(1) or plain(self)
    x = sg.placeholder((None,), np.float32, name="x")
    y = sg.sum(sg.sin(x) * 3.0)
    f = sg.function([x], [y, sg.grad(y, x)])
    v = f(np.arange(5, dtype=np.float32))
    print(f.stats["cache"], len(refreshes))
    g = sg.function([x], [sg.cumsum(sg.exp(x) - 2.0, axis=0)])   # not cached: compiled
    right = np.allclose(g(np.arange(5, dtype=np.float32))[0],
                        np.cumsum(np.exp(np.arange(5, dtype=np.float32)) - 2))
    print(g.stats["cache"], right, float(v[0]))
"""


def test_loading_cached_code_skips_numbas_context_refresh_and_compiling_still_works(tmp_path):
    # the refresh (every typing and lowering registry) was a third of a warm start
    run_script(SCRIPT, tmp_path)
    loaded, compiled = run_script(LOAD_THEN_COMPILE, tmp_path).splitlines()
    assert loaded == "hit 0"
    cache_state, right, value = compiled.split()
    assert cache_state == "miss" and right == "True"
    assert float(value) == pytest.approx(3 * np.sin(np.arange(5)).sum())


def test_cache_dir_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("STATICGRAD_CACHE_DIR", str(tmp_path))
    assert cache.cache_dir() == str(tmp_path)
    x = sg.placeholder((3,), name="x")
    f = sg.function([x], sg.exp(x) * 7.25 + 0.125)   # a graph no other test builds
    kernel = f.program.steps[0].kernel
    assert Path(kernel.py_func.__code__.co_filename).parent.parent == tmp_path


def test_an_unwritable_cache_folder_still_works_with_a_warning(tmp_path):
    # a path that is a file cannot hold the cache, even for root (who ignores read-only modes)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    code = """
        import warnings, numpy as np, staticgrad as sg
        x = sg.placeholder((3,), name="x")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = sg.function([x], sg.exp(x) * 3.5 + 0.25)   # a graph no other test builds
            print(f(np.zeros(3)).tolist(), sum("cannot write" in str(w.message) for w in caught))
    """
    out = run_script(code, blocked).split("]")
    assert out[0] == "[3.75, 3.75, 3.75" and out[1].strip() == "1"   # warned once
    assert blocked.read_text() == ""


# -- what a later process may trust ----------------------------------------------------------
def trusted(folder: Path) -> dict:
    """What a later process would use from ``folder``: each module whose text hashes to its
    name, with whole Numba cache files. Anything else must be absent or unused."""
    modules = {}
    for path in folder.glob("*/sgk_*.py"):
        text = path.read_text()
        assert cache.entry_name(text) == path.stem, f"{path.name} does not hold its own text"
        assert path.parent.name == path.stem            # each entry in a folder of its own
        numba_files = list((path.parent / "__pycache__").glob(f"{path.stem}.*.nb[ic]"))
        assert all(cache.whole_pickles(str(f)) for f in numba_files), numba_files
        modules[path.stem] = len(numba_files)
    return modules


def loads_everything(folder: Path) -> None:
    """A later process finds every kernel compiled: nothing to compile."""
    loaded, compiled, distinct = run_script(SCRIPT, folder).split()[:3]
    assert (loaded, compiled) == (distinct, "0")


# -- several processes at once ----------------------------------------------------------------
RACE = """
    import os, sys, time
    import numpy as np, staticgrad as sg
    x = sg.placeholder((None,), np.float32, name="x")
    y = sg.sum(sg.sin(x) * 3.0)
    outputs = [y, sg.grad(y, x)]
    open(sys.argv[1], "w").close()                   # ready
    while not os.path.exists(sys.argv[2]):           # all start compiling at the same moment
        time.sleep(0.001)
    f = sg.function([x], outputs)
    print(float(f(np.arange(5, dtype=np.float32))[0]), f.stats["distinct"])
"""


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_compiling_the_same_graph_at_once_all_succeed(tmp_path, processes):
    folder = tmp_path / "cache"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{k}" for k in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(RACE), str(r), str(go)],
                              env=environment(folder), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    assert len({r[0] for r in results}) == 1           # the same value and kernel count
    distinct = int(results[0][0].split()[1])
    assert len(trusted(folder)) == distinct             # one valid entry per kernel
    assert not list(folder.rglob("*.tmp*"))             # no writer left a temporary file
    loads_everything(folder)


# -- a process killed in the middle of writing an entry -----------------------------------------
PAUSE = """
    import os, sys, time
    def pause():
        print("PAUSED", flush=True)
        time.sleep(120)                              # killed here by the test
    where = sys.argv[1]
    real_replace, real_fdopen = os.replace, os.fdopen
    def replace(src, dst, *args, **kwargs):
        suffix = {"module": ".tmp", "index": ".nbi", "data": ".nbc"}.get(where)
        if suffix and str(src if where == "module" else dst).endswith(suffix):
            pause()
        return real_replace(src, dst, *args, **kwargs)
    class Half:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.f.close()
        def write(self, text):
            self.f.write(text[:len(text) // 2])
            self.f.flush()
            pause()
    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        torn = where == "module-half" and os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp")
        return Half(f) if torn else f
    os.replace, os.fdopen = replace, fdopen
""" + SCRIPT


@pytest.mark.parametrize("where", ["module-half", "module", "data", "index"])
def test_a_process_killed_mid_write_leaves_nothing_trusted(tmp_path, where):
    # killed while writing a generated module's temporary file, between that write and its
    # rename, or between Numba's writes of its data and index files and their renames
    folder = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PAUSE), where],
                            env=environment(folder), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()        # blocks until the writer pauses (or exits)
        assert line.strip() == "PAUSED", proc.stderr.read()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert list(folder.rglob("*.tmp*"))      # the kill did leave a partial write behind
    trusted(folder)                          # what is there under a final name is whole
    out = run_script(SCRIPT, folder).split()
    # the next process trusts no machine code (compiles every kernel) and gets the numbers
    assert out[1] == out[2] and float(out[3]) == pytest.approx(3 * np.sin(np.arange(5)).sum())
    assert len(trusted(folder)) == int(out[2])
    loads_everything(folder)


# -- torn, zeroed and stale files in a filled cache ---------------------------------------------
@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("filled")
    out = run_script(SCRIPT, folder).split()
    return folder, out[3]


def other_numba_version(path: Path) -> None:
    """Rewrite an index as if another Numba version had written it."""
    with open(path, "rb") as f:
        version = pickle.load(f)
        rest = f.read()
    with open(path, "wb") as f:
        pickle.dump(("0.0.1",) if isinstance(version, tuple) else "0.0.1", f)
        f.write(rest)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zeroed": lambda p: p.write_bytes(bytes(p.stat().st_size)),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(p.stat().st_size)),
    "stale-numba": other_numba_version,
    # a module of another staticgrad version under this name: its text is not this one
    "stale-staticgrad": lambda p: p.write_text(p.read_text().replace("(format ", "(format 0")),
}


@pytest.mark.parametrize("target, damage", [
    ("module", "truncated"), ("module", "zeroed"), ("module", "empty"),
    ("module", "stale-staticgrad"), ("index", "truncated"), ("index", "zeroed"),
    ("index", "garbage"), ("index", "stale-numba"), ("data", "truncated"), ("data", "zeroed"),
    ("data", "empty")])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(filled, tmp_path, target, damage):
    import shutil
    folder = tmp_path / "cache"
    shutil.copytree(filled[0], folder)
    pattern = {"module": "*/sgk_*.py", "index": "*/__pycache__/*.nbi",
               "data": "*/__pycache__/*.nbc"}
    files = sorted(folder.glob(pattern[target]))
    assert files
    for path in files:
        DAMAGE[damage](path)
    out = run_script(SCRIPT, folder).split()
    assert out[3] == filled[1]                     # the same numbers, no crash
    assert int(out[1]) >= 1                        # something was compiled again...
    assert len(trusted(folder)) == int(out[2])     # ...and the cache is whole again
    loads_everything(folder)


# -- read-only folders ----------------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path):
    """``make(folder)``: ``folder`` made read-only for this user. Root ignores file modes, so for
    root the folder is bind-mounted read-only over itself (unmounted afterwards)."""
    mounted: list = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o555)
            return folder
        for args in (["--bind", str(folder), str(folder)],
                     ["-o", "remount,ro,bind", str(folder)]):
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            # no quiet skip: without a read-only folder this test would check nothing
            assert done.returncode == 0, \
                f"root cannot make a read-only folder here (mount: {done.stderr})"
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)


READ_ONLY = """
    import warnings, numpy as np, staticgrad as sg
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        x = sg.placeholder((None,), np.float32, name="x")
        y = sg.sum(sg.sin(x) * 3.0)
        f = sg.function([x], [y, sg.grad(y, x)])
        v = f(np.arange(5, dtype=np.float32))
    print(float(v[0]), sum("cannot write the cache folder" in str(w.message) for w in caught))
"""


@pytest.mark.parametrize("filled_first", [False, True])
def test_a_read_only_cache_folder_still_works_with_a_warning(filled, tmp_path, read_only,
                                                              filled_first):
    # empty (nothing can be written) or filled (the modules are there, but Numba will not use
    # a cache folder it cannot write, and here finds no other: the home folder is read-only)
    import shutil
    folder = tmp_path / "cache"
    if filled_first:
        shutil.copytree(filled[0], folder)
    read_only(folder)
    home = read_only(tmp_path / "home")
    value, warned = run_script(READ_ONLY, folder, HOME=str(home), NUMBA_CACHE_DIR=None).split()
    assert value == filled[1] and warned == "1"


TWO_SIGNATURES = """
    import numpy as np
    import staticgrad as sg
    results = []
    for dtype in (np.float32, np.float64):   # one kernel text (x * y), two signatures
        x, y = sg.placeholder((None,), dtype), sg.placeholder((None,), dtype)
        a = np.arange(5, dtype=dtype) + 0.5
        results.append(np.array_equal(sg.function([x, y], x * y)(a, a), a * a))
    print(all(results))
"""


def test_a_kernel_never_runs_machine_code_cached_for_other_types(tmp_path):
    env = environment(tmp_path / "sg", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    runs = runs_after_a_cache_race(TWO_SIGNATURES, env, "*.kernel-*.nbi")
    assert [r.stdout.strip() for r in runs] == ["True"] * 3, [r.stderr[-2000:] for r in runs]


def test_the_library_digest_follows_code_not_docstrings_or_comments(tmp_path, monkeypatch):
    # the digest is part of every kernel's cache key: a reworded docstring or comment in
    # mathlib or blas must not make every cached kernel compile again, a changed line must
    monkeypatch.setenv("STATICGRAD_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "lib.py"

    def digest(text: str) -> str:
        source.write_text(textwrap.dedent(text))
        return cache.code_digest([str(source)])

    first = digest('''
        """A library."""
        def f(x):
            """Twice x."""
            return 2 * x   # doubled
        ''')
    reworded = digest('''
        """A library, reworded."""

        def f(x):
            """Two times x, documented at length."""
            # a comment of its own
            return 2 * x
        ''')
    changed = digest('''
        """A library."""
        def f(x):
            """Twice x."""
            return 3 * x   # doubled
        ''')
    assert first == reworded != changed
    # remembered by the files' bytes: the second process does not parse again
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 3
