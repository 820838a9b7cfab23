"""The disk cache of generated modules: written by a hash of their text, imported normally.

Numba's own ``cache=True`` keeps the machine code next to each module, so a second process
loads instead of compiling. Each module has a folder of its own (``<name>/<name>.py`` and
Numba's ``<name>/__pycache__``): finding a module's files then never lists the files of all
the others, so loading costs the same with ten entries or a hundred thousand.
``$STATICGRAD_CACHE_DIR`` (default ``~/.cache/staticgrad``) says where.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import functools
import glob
import hashlib
import importlib
import importlib.util
import os
import pickletools
import shutil
import sys
import tempfile
import warnings

import numba
import numpy as np
from numba.core import sigutils
from numba.core.caching import FunctionCache
from numba.core.runtime import rtsys


def cache_dir() -> str:
    """Where generated modules live: ``$STATICGRAD_CACHE_DIR`` or ``~/.cache/staticgrad``."""
    return os.environ.get("STATICGRAD_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "staticgrad")


def load(source: str, prefix: str = "sgk"):
    """The module for ``source``, from the cache folder (written first if needed).

    The file name is a hash of the text and of the Numba, NumPy, Python and mathlib versions,
    so an entry is never stale. A file whose text does not match (a torn or edited write) is
    replaced; writes go through a temporary file and an atomic rename, so processes compiling
    the same code at once all succeed. The module is imported from its path (not through
    ``sys.path``), so thousands of kernel files cost no directory scans.
    """
    name = entry_name(source, prefix)
    found = sys.modules.get(name)
    if found is not None:
        return found
    folder = cache_dir()
    if not matches(entry_path(folder, name), source):
        try:
            write(folder, name, source)
        except OSError as err:   # a read-only or full cache folder: compile in a private one
            folder = fallback_dir(folder, err)
            write(folder, name, source)
    try:
        module = import_path(folder, name)
    except RuntimeError as err:
        # a read-only folder whose modules are there: Numba finds no writable place for its
        # machine code (its own user-wide folder unwritable too) and refuses the module
        if "no locator available" not in str(err):
            raise
        folder = fallback_dir(folder, err)
        write(folder, name, source)
        module = import_path(folder, name)
    # another thread may have loaded it meanwhile: every caller gets the same module
    return sys.modules.setdefault(name, module)


class OwnCodeCache(FunctionCache):
    """Numba's disk cache of a function, handing over only machine code compiled for the
    signature asked for. Each signature's code is a data file the index names; a process
    saving a new one takes the first number the index it read leaves free, so two processes
    saving different signatures at once (test workers, a float32 and a float64 job) can
    leave one signature's key naming the other's file. Numba would then run that code on
    arrays it was not compiled for: wrong numbers for another layout, no error (seen:
    ``gemm`` of two Fortran-order float64 arrays loaded float32 code). Rejected, the
    signature is compiled and saved again."""

    def load_overload(self, sig, target_context):
        # Numba refreshes the whole target context here (typing and lowering registries:
        # 0.3 s of a warm process's start). Machine code read back needs none of them, only
        # the runtime's symbols; a compile after a miss refreshes the context itself.
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            found = self._load_overload(sig, target_context)
        args, _ = sigutils.normalize_signature(sig)
        if found is not None and tuple(found.signature.args) != tuple(args):
            return None
        return found


def own_code(dispatcher):
    """``dispatcher`` (a generated module's ``kernel``) with ``OwnCodeCache`` as its disk
    cache: one kernel text can serve float32 and float64 arrays (``x * y``)."""
    if not isinstance(dispatcher._cache, OwnCodeCache):
        dispatcher._cache = OwnCodeCache(dispatcher.py_func)
    return dispatcher


def entry_path(folder: str, name: str) -> str:
    """Where the module ``name`` lives in the cache ``folder``."""
    return os.path.join(folder, name, name + ".py")


def import_path(folder: str, name: str):
    """Import the entry ``name`` of ``folder`` (its Numba cache files checked first)."""
    drop_broken_numba_cache(folder, name)
    spec = importlib.util.spec_from_file_location(name, entry_path(folder, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry_name(source: str, prefix: str = "sgk") -> str:
    """The module name (and file name) of ``source``: a hash of the text and of the Numba,
    NumPy, Python and mathlib versions it is compiled with."""
    stamp = f"{numba.__version__}|{np.__version__}|{sys.version_info[:2]}|{mathlib_digest()}"
    return f"{prefix}_{hashlib.sha256((stamp + source).encode()).hexdigest()[:24]}"


def write(folder: str, name: str, source: str) -> None:
    """Write the entry ``name`` of ``folder`` atomically."""
    path = entry_path(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomically(path, source.encode())


def write_atomically(path: str, data: bytes) -> None:
    """Write ``path`` through a temporary file and a rename: a reader (or a process that
    starts after this one is killed) sees the old file or the whole new one, never a part."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


FALLBACKS: dict = {}   # the cache of private folders: unwritable folder -> this process's own


def fallback_dir(folder: str, err: OSError) -> str:
    """A private folder for this process when ``folder`` cannot be written (warned once):
    functions still work, compiled anew instead of loaded."""
    if folder not in FALLBACKS:
        FALLBACKS[folder] = tempfile.mkdtemp(prefix="staticgrad-cache-")
        atexit.register(shutil.rmtree, FALLBACKS[folder], ignore_errors=True)
        warnings.warn(f"staticgrad: cannot write the cache folder {folder} ({err}); compiling "
                      f"into {FALLBACKS[folder]} for this process (set STATICGRAD_CACHE_DIR)",
                      RuntimeWarning, stacklevel=4)
    return FALLBACKS[folder]


def drop_broken_numba_cache(folder: str, name: str) -> None:
    """Numba loads its cache files without checking them; a torn or foreign file would crash
    the first call. Every file must unpickle, else all of this module's files go (and the
    functions compile again)."""
    files = glob.glob(os.path.join(folder, name, "__pycache__", f"{name}.*.nb[ic]"))
    if not all(map(whole_pickles, files)):
        for path in files:
            with contextlib.suppress(OSError):
                os.remove(path)


def whole_pickles(path: str) -> bool:
    """Whether a Numba cache file is whole: an index (``.nbi``) is two pickles (version,
    index), a data file one, with nothing after. The opcodes are walked, not run (running
    them would import the module)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        for _ in range(2 if path.endswith(".nbi") else 1):
            stop = max(pos for _op, _arg, pos in pickletools.genops(data[offset:]))
            offset += stop + 1
        return offset == len(data)
    except Exception:   # noqa: BLE001 (any failure to parse means: not whole)
        return False


def matches(path: str, source: str) -> bool:
    try:
        with open(path) as f:
            return f.read() == source
    except OSError:
        return False


@functools.cache
def mathlib_digest() -> str:
    """Generated modules call ``mathlib`` and ``blas``; Numba's cache does not notice when
    they change, or when ``blas`` calls another library. Their code counts, not their
    docstrings or comments: editing those leaves every cached kernel valid (see
    ``code_digest``)."""
    from .blas import PROVIDER
    here = os.path.dirname(__file__)
    paths = [os.path.join(here, name) for name in ("mathlib.py", "mathbase.py", "blas.py")]
    return hashlib.sha256((PROVIDER + code_digest(paths)).encode()).hexdigest()[:12]


def code_digest(paths: list) -> str:
    """A hash of the Python code in ``paths``: their syntax trees without docstrings (which
    leaves out comments and layout too). Parsing takes about 50 ms, too long for every
    start, so the result is kept in the cache folder under a hash of the files' bytes.

    >>> len(code_digest([__file__]))
    24
    """
    texts = []
    for path in paths:
        with open(path, "rb") as f:
            texts.append(f.read())
    memo = os.path.join(cache_dir(), "digests",
                        hashlib.sha256(b"\0".join(texts)).hexdigest()[:24])
    with contextlib.suppress(OSError), open(memo) as f:
        found = f.read()
        if len(found) == 24:
            return found
    digest = hashlib.sha256()
    for text in texts:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and body and \
                    isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree).encode())
    found = digest.hexdigest()[:24]
    with contextlib.suppress(OSError):   # an unwritable folder: parsed again next time
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        write_atomically(memo, found.encode())
    return found
