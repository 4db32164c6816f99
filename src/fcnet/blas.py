"""BLAS calls NumPy does not expose, made into the very library NumPy's ``matmul`` uses.

NumPy has no in-place ``y ← αx + βy``: ``p -= lr * g`` costs a temporary and
three passes over memory. BLAS has it (AXPY, AXPBY), called here through
``ctypes`` in NumPy's own OpenBLAS — not SciPy's, whose second thread pool
would fight NumPy's for the cores. The compiled engine (:mod:`fcnet.engines.numba`)
calls that library's GEMM the same way, through :func:`function`. Where the
library cannot be found (a NumPy built against another BLAS),
:data:`AVAILABLE` is False and callers use the NumPy expressions, which stay
the reference (tests compare the two).
"""

import ctypes
import glob
import os

import numpy as np

__all__ = ["AVAILABLE", "axpy", "axpby", "function", "get_threads", "set_threads", "ROW_MAJOR", "NO_TRANS", "TRANS"]

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enum values for the layout and transpose arguments


def _find():
    """``{(name, dtype): function}`` from NumPy's bundled OpenBLAS, or ``{}``."""
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, int_t in (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64),
                                      ("scipy_cblas_", "", ctypes.c_int), ("cblas_", "", ctypes.c_int)):
            found = {}
            for dtype, letter, real in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
                axpy_f = getattr(lib, f"{prefix}{letter}axpy{suffix}", None)
                axpby_f = getattr(lib, f"{prefix}{letter}axpby{suffix}", None)
                gemm_f = getattr(lib, f"{prefix}{letter}gemm{suffix}", None)
                if axpy_f is None or axpby_f is None or gemm_f is None:
                    break
                p = ctypes.c_void_p
                axpy_f.argtypes = [int_t, real, p, int_t, p, int_t]
                axpby_f.argtypes = [int_t, real, p, int_t, real, p, int_t]
                gemm_f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real, p, int_t, p,
                                   int_t, real, p, int_t]
                axpy_f.restype = axpby_f.restype = gemm_f.restype = None
                found[("axpy", np.dtype(dtype))] = axpy_f
                found[("axpby", np.dtype(dtype))] = axpby_f
                found[("gemm", np.dtype(dtype))] = gemm_f
            if len(found) == 6:
                for name in ("set_num_threads", "get_num_threads"):  # the thread count, under the same names
                    f = getattr(lib, f"{prefix.replace('cblas_', 'openblas_')}{name}{suffix}", None)
                    if f is not None:
                        f.argtypes, f.restype = ([ctypes.c_int], None) if name[0] == "s" else ([], ctypes.c_int)
                        found[(name, None)] = f
                return found
    return {}


_FUNCTIONS = {} if os.environ.get("FCNET_NO_BLAS") else _find()
AVAILABLE = bool(_FUNCTIONS)  # the GEMM, AXPY and AXPBY were found (the thread count may be missing)


def function(name, dtype):
    """The ``ctypes`` function ``cblas_{s,d}{name}`` (``"gemm"``, ``"axpy"``, ``"axpby"``) for ``dtype``.

    Raises
    ------
    KeyError
        When :data:`AVAILABLE` is False or ``dtype`` is not float32/float64.
    """
    return _FUNCTIONS[(name, np.dtype(dtype))]


def get_threads():
    """How many threads NumPy's OpenBLAS uses, or ``None`` where it cannot be asked."""
    f = _FUNCTIONS.get(("get_num_threads", None))
    return None if f is None else int(f())


def set_threads(n):
    """Make NumPy's OpenBLAS (and so every matrix product of fcnet) use ``n`` threads; a no-op where it cannot."""
    f = _FUNCTIONS.get(("set_num_threads", None))
    if f is not None:
        f(int(n))


_MIN_SIZE = 8192  # below this a ctypes call costs more than NumPy's temporary


def _usable(*arrays):
    dtype = arrays[-1].dtype
    return (AVAILABLE and arrays[-1].size >= _MIN_SIZE and dtype in (np.float32, np.float64)
            and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays))


def axpy(y, x, alpha):
    """``y += alpha * x`` in place, in one pass; ``x`` and ``y`` of one shape and float dtype."""
    if not _usable(y, x) or y.shape != x.shape:
        y += alpha * x
        return y
    _FUNCTIONS[("axpy", y.dtype)](y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return y


def axpby(y, x, alpha, beta):
    """``y = alpha * x + beta * y`` in place, in one pass (an exponential moving average, say)."""
    if not _usable(y, x) or y.shape != x.shape:
        y *= beta
        y += alpha * x
        return y
    _FUNCTIONS[("axpby", y.dtype)](y.size, alpha, x.ctypes.data, 1, beta, y.ctypes.data, 1)
    return y
