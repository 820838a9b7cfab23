"""The disk cache of generated modules: written by a hash of their text, imported normally.

Numba's own ``cache=True`` keeps the machine code next to each module, so a second process
loads instead of compiling. ``$STATICGRAD_CACHE_DIR`` (default ``~/.cache/staticgrad``) says
where.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib
import importlib.util
import os
import pickletools
import sys
import tempfile
import warnings

import numba
import numpy as np


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
    stamp = f"{numba.__version__}|{np.__version__}|{sys.version_info[:2]}|{mathlib_digest()}"
    digest = hashlib.sha256((stamp + source).encode()).hexdigest()[:24]
    name = f"{prefix}_{digest}"
    found = sys.modules.get(name)
    if found is not None:
        return found
    folder = cache_dir()
    path = os.path.join(folder, name + ".py")
    if not matches(path, source):
        try:
            write(folder, name, source)
        except OSError as err:   # a read-only or full cache folder: compile in a private one
            folder = fallback_dir(folder, err)
            path = os.path.join(folder, name + ".py")
            write(folder, name, source)
    drop_broken_numba_cache(folder, name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # another thread may have loaded it meanwhile: every caller gets the same module
    return sys.modules.setdefault(name, module)


def write(folder: str, name: str, source: str) -> None:
    """Write ``name.py`` atomically: a temporary file, then a rename."""
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    os.replace(tmp, os.path.join(folder, name + ".py"))


FALLBACKS: dict = {}   # the cache of private folders: unwritable folder -> this process's own


def fallback_dir(folder: str, err: OSError) -> str:
    """A private folder for this process when ``folder`` cannot be written (warned once):
    functions still work, compiled anew instead of loaded."""
    if folder not in FALLBACKS:
        FALLBACKS[folder] = tempfile.mkdtemp(prefix="staticgrad-cache-")
        warnings.warn(f"staticgrad: cannot write the cache folder {folder} ({err}); compiling "
                      f"into {FALLBACKS[folder]} for this process (set STATICGRAD_CACHE_DIR)",
                      RuntimeWarning, stacklevel=4)
    return FALLBACKS[folder]


def drop_broken_numba_cache(folder: str, name: str) -> None:
    """Numba loads its cache files without checking them; a torn or foreign file would crash
    the first call. Every file must unpickle, else all of this module's files go (and the
    functions compile again)."""
    files = glob.glob(os.path.join(folder, "__pycache__", f"{name}.*.nb[ic]"))
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
            # walk the pickle opcodes without running them (that would import this module)
            offset = 0
            for _ in range(2 if path.endswith(".nbi") else 1):   # .nbi: version, index
                stop = max(pos for _op, _arg, pos in pickletools.genops(data[offset:]))
                offset += stop + 1
            if offset != len(data):
                raise ValueError("trailing bytes")
        except Exception:
            for other in files:
                with contextlib.suppress(OSError):
                    os.remove(other)
            return


def matches(path: str, source: str) -> bool:
    try:
        with open(path) as f:
            return f.read() == source
    except OSError:
        return False


@functools.cache
def mathlib_digest() -> str:
    """Generated modules call ``mathlib`` and ``blas``; Numba's cache does not notice when
    they change, or when ``blas`` calls another library."""
    from .blas import PROVIDER
    digest = hashlib.sha256(PROVIDER.encode())
    for name in ("mathlib.py", "mathbase.py", "blas.py"):
        with open(os.path.join(os.path.dirname(__file__), name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:12]
