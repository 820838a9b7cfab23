"""Matrix products for generated kernels, and the BLAS thread count around each call.

``gemm(a, b, out)`` calls NumPy's own OpenBLAS (the ``numpy.libs`` copy NumPy's ``@`` uses)
when it can find it, and falls back to Numba's ``np.dot`` (SciPy's OpenBLAS) otherwise. On
W5's 4096x512 by 4096x10 transposed product NumPy's build took 619 us against 874 us
through ``np.dot`` (2 threads, same run). The call is by symbol name, registered with LLVM at
import, so compiled kernels stay cacheable (a ctypes pointer would be a dynamic global).

``matmul(a, b, out, a_transposed, b_transposed)`` is the same product as a function of this
package, with the transposes as run-time flags: the runtime calls it for every 2-D float
product of a graph, so no graph compiles a kernel of its own for one.

Small matrix products are fastest on one thread: waking BLAS threads costs more than the
product, and spinning BLAS threads fight Numba's own threads and other libraries' for the
cores. A compiled function sets the count it wants around each call and restores it.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from .cache import OwnCodeCache

SMALL_GEMM_FLOPS = 4e6  # below this, one thread wins on a 2-core machine
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112   # CBLAS enums


def _library(package: str, folder: str, symbols: tuple):
    """The first OpenBLAS in a wheel's bundled-libraries folder with all of ``symbols``."""
    try:
        module = __import__(package)
    except ImportError:
        return None
    where = os.path.join(os.path.dirname(module.__file__), os.pardir, folder)
    for path in sorted(glob.glob(os.path.join(where, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, s) for s in symbols):
            return lib
    return None


@functools.lru_cache(maxsize=1)
def numpy_openblas():
    """NumPy's bundled OpenBLAS (64-bit integers: ``scipy_cblas_sgemm64_``), or ``None``."""
    return _library("numpy", "numpy.libs", ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_",
                                             "scipy_openblas_get_num_threads64_",
                                             "scipy_openblas_set_num_threads64_"))


def _register() -> str:
    """Make NumPy's sgemm/dgemm known to LLVM as ``staticgrad_sgemm``/``staticgrad_dgemm``;
    returns which BLAS ``gemm`` calls (part of the kernels' cache key)."""
    lib = numpy_openblas()
    if lib is None or os.environ.get("STATICGRAD_BLAS") == "numba":
        return "numba np.dot"
    for name in ("sgemm", "dgemm"):
        address = ctypes.cast(getattr(lib, f"scipy_cblas_{name}64_"), ctypes.c_void_p).value
        llvm.add_symbol(f"staticgrad_{name}", address)
    return "numpy " + os.path.basename(lib._name)


PROVIDER = _register()


def cached(**flags):
    """``numba.njit(cache=True, **flags)`` with ``cache.OwnCodeCache`` as its disk cache: the
    functions here are compiled for several signatures, by any process using the package."""
    def wrap(py_func):
        dispatcher = numba.njit(cache=True, **flags)(py_func)
        dispatcher._cache = OwnCodeCache(py_func)
        return dispatcher
    return wrap


@intrinsic
def _cblas_gemm(typingctx, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """``c = op(a) @ op(b)`` by row-major CBLAS ``?gemm`` (alpha 1, beta 0)."""
    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        flt = context.get_value_type(a.dtype)
        ptr = flt.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, flt, ptr, i64,
                                               ptr, i64, flt, ptr, i64])
        name = "staticgrad_sgemm" if a.dtype == types.float32 else "staticgrad_dgemm"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        data = [context.make_array(t)(context, builder, v).data
                for t, v in ((a, a_), (b, b_), (c, c_))]
        ints = [builder.sext(v, i64) if v.type.width < 64 else v
                for v in (m_, n_, k_, lda_, ldb_, ldc_)]
        builder.call(fn, [ir.Constant(i32, ROW_MAJOR), builder.trunc(ta, i32),
                          builder.trunc(tb, i32), *ints[:3], ir.Constant(flt, 1.0), data[0],
                          ints[3], data[1], ints[4], ir.Constant(flt, 0.0), data[2], ints[5]])
        return context.get_dummy_value()

    return types.void(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc), codegen


@cached()
def _layout(x):
    """``(CBLAS transpose flag, leading dimension)`` of a 2-D array, or ``(0, 0)`` when it is
    neither row- nor column-major."""
    rows, cols = x.shape
    s0, s1 = x.strides[0] // x.itemsize, x.strides[1] // x.itemsize
    if (s1 == 1 or cols == 1) and s0 >= max(1, cols) and s0 * x.itemsize == x.strides[0]:
        return NO_TRANS, s0
    if (s0 == 1 or rows == 1) and s1 >= max(1, rows) and s1 * x.itemsize == x.strides[1]:
        return TRANS, s1
    return 0, 0


@cached()
def loop_gemm(a, b, out):
    """``out = a @ b`` as plain loops, for layouts BLAS cannot take (neither axis of unit
    stride). Numba's ``np.dot`` would do it too, but its code (copies, checks, SciPy's BLAS)
    is linked into every kernel calling ``gemm`` and added 0.35 s to each one's compile."""
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            out[i, j] = 0
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[i, j] += aip * b[p, j]


def _gemm_by_layout(a, b, out):
    """Typed below: ``out = a @ b`` by BLAS with its flags chosen from the arrays' types."""


@overload(_gemm_by_layout)
def _gemm_by_layout_typed(a, b, out):
    if a.layout in "CF" and b.layout in "CF" and out.layout == "C":
        # the flags and leading dimensions follow from the types: the kernel is one call.
        # Linking the general path's loops and layout checks into each kernel that multiplies
        # cost 0.08-0.1 s of compile per kernel (W1 has five products)
        ta, tb = (TRANS if t.layout == "F" else NO_TRANS for t in (a, b))
        a_rows, b_rows = (0 if t.layout == "F" else 1 for t in (a, b))

        def fixed(a, b, out):
            m, k = a.shape
            n = b.shape[1]
            if m == 0 or n == 0:
                return
            _cblas_gemm(ta, tb, m, n, k, a, max(1, a.shape[a_rows]), b,
                        max(1, b.shape[b_rows]), out, max(1, n))
        return fixed

    def general(a, b, out):
        m, k = a.shape
        n = b.shape[1]
        if m == 0 or n == 0:
            return
        ta, lda = _layout(a)
        tb, ldb = _layout(b)
        if ta == 0 or tb == 0 or out.strides[1] != out.itemsize or \
                out.strides[0] != max(1, n) * out.itemsize:
            loop_gemm(a, b, out)
            return
        _cblas_gemm(ta, tb, m, n, k, a, lda, b, ldb, out, max(1, n))
    return general


if PROVIDER.startswith("numpy"):
    @cached()
    def gemm(a, b, out):
        """``out = a @ b`` for 2-D float arrays (``a`` or ``b`` may be a transposed view)."""
        _gemm_by_layout(a, b, out)
else:
    @cached()
    def gemm(a, b, out):
        """``out = a @ b`` for 2-D float arrays (``a`` or ``b`` may be a transposed view)."""
        np.dot(a, b, out)


def _matmul_by_layout(a, b, out, a_transposed, b_transposed):
    """Typed below: ``matmul``'s product, by the flags given at run time."""


@overload(_matmul_by_layout)
def _matmul_by_layout_typed(a, b, out, a_transposed, b_transposed):
    if a.layout == "C" and b.layout == "C" and out.layout == "C":
        # what the runtime passes: buffers of its own, arguments and parameters made
        # C-contiguous. The flags go to BLAS as they are, and a row-major array's leading
        # dimension is its row length whether BLAS reads it transposed or not
        def rows(a, b, out, a_transposed, b_transposed):
            m, n = out.shape
            if m == 0 or n == 0:
                return
            k = a.shape[0] if a_transposed else a.shape[1]
            _cblas_gemm(NO_TRANS + a_transposed, NO_TRANS + b_transposed, m, n, k,
                        a, max(1, a.shape[1]), b, max(1, b.shape[1]), out, max(1, n))
        return rows

    def other(a, b, out, a_transposed, b_transposed):   # a constant of another layout
        if a_transposed:
            if b_transposed:
                _gemm_by_layout(a.T, b.T, out)
            else:
                _gemm_by_layout(a.T, b, out)
        elif b_transposed:
            _gemm_by_layout(a, b.T, out)
        else:
            _gemm_by_layout(a, b, out)
    return other


if PROVIDER.startswith("numpy"):
    @cached(nogil=True)
    def matmul(a, b, out, a_transposed, b_transposed):
        """``out = op(a) @ op(b)`` for 2-D float arrays of one dtype, ``op(x)`` being ``x.T``
        where its flag (an int, 0 or 1) is 1: the runtime calls this for a graph's 2-D float
        products instead of a generated kernel each. The flags are arguments, not types, so
        one compile per dtype and layout serves every product of every graph (W1's three
        product kernels took 1.1-1.5 s of its cold compile, this 0.4-0.5 s, and every new
        graph compiled its own again). Shapes are not checked: ``out`` must be ``(m, n)`` for
        an ``(m, k)`` ``op(a)`` and a ``(k, n)`` ``op(b)``."""
        _matmul_by_layout(a, b, out, a_transposed, b_transposed)
else:
    @cached(nogil=True)
    def matmul(a, b, out, a_transposed, b_transposed):
        """``out = op(a) @ op(b)``, ``op(x)`` being ``x.T`` where its flag is 1, by Numba's
        ``np.dot`` (NumPy's OpenBLAS was not found)."""
        if a_transposed:
            if b_transposed:
                np.dot(a.T, b.T, out)
            else:
                np.dot(a.T, b, out)
        elif b_transposed:
            np.dot(a, b.T, out)
        else:
            np.dot(a, b, out)


@functools.lru_cache(maxsize=1)
def _openblas():
    """``(get, set)`` thread count of the OpenBLAS ``gemm`` calls, or ``None``."""
    if PROVIDER.startswith("numpy"):
        lib = numpy_openblas()
        get, set_ = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
        set_.argtypes = [ctypes.c_int]
        return get, set_
    lib = _library("scipy", "scipy.libs", ())
    if lib is None:
        return None
    for prefix in ("scipy_openblas", "openblas"):
        get = getattr(lib, f"{prefix}_get_num_threads", None)
        set_ = getattr(lib, f"{prefix}_set_num_threads", None)
        if get is not None and set_ is not None:
            set_.argtypes = [ctypes.c_int]
            return get, set_
    return None


def set_threads(count: int) -> int | None:
    """Set the BLAS thread count; returns the previous one (``None``: BLAS not OpenBLAS).

    >>> before = set_threads(1)
    >>> _ = set_threads(before) if before is not None else None
    """
    calls = _openblas()
    if calls is None:
        return None
    get, set_ = calls
    before = get()
    if before != count:
        set_(count)
    return before


def threads_for(flops: float, available: int) -> int:
    """One thread for small products, all of them for large ones."""
    return 1 if flops < SMALL_GEMM_FLOPS else available
