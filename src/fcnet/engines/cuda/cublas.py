"""cuBLAS for the CUDA engine, opened through ``ctypes``: a GEMM on a handle of the engine's own, bound to a stream.

CuPy's own bindings refuse every call while a stream is being captured into a CUDA graph, which cuBLAS itself
supports (with a workspace set beforehand).
"""

import functools
import os
import weakref

import numpy as np

__all__ = ["Gemm"]


@functools.cache
def _cublas():
    return _libcublas()


def _libcublas():
    """cuBLAS as CuPy loaded it, opened through ``ctypes``: CuPy's own bindings refuse every call while a stream
    is being captured into a graph, which cuBLAS itself supports (with a workspace set beforehand)."""
    import ctypes
    import ctypes.util
    import re

    from cupy_backends.cuda.libs import cublas  # linked against the library: importing it loads it

    cublas.destroy(cublas.create())
    path = None
    try:
        with open("/proc/self/maps") as maps:
            path = next((line.split()[-1] for line in maps if re.search(r"/libcublas\.so[.\d]*$", line.strip())),
                        None)
    except OSError:
        pass
    lib = ctypes.CDLL(path or ctypes.util.find_library("cublas") or "libcublas.so")
    handle, size_t, ptr, i32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
    for name, args in (("cublasCreate_v2", [ctypes.POINTER(ctypes.c_void_p)]), ("cublasDestroy_v2", [handle]),
                       ("cublasSetStream_v2", [handle, ptr]), ("cublasSetWorkspace_v2", [handle, ptr, size_t]),
                       ("cublasSetMathMode", [handle, i32])):
        getattr(lib, name).argtypes = args
    for name in ("cublasSgemm_v2", "cublasDgemm_v2"):
        getattr(lib, name).argtypes = [handle, i32, i32, i32, i32, i32, ptr, ptr, i32, ptr, i32, ptr, ptr, i32]
    return lib


_OP_N, _OP_T, _TF32_TENSOR_OP_MATH = 0, 1, 3  # cublasOperation_t, cublasMath_t
_WORKSPACE = 32 << 20  # bytes: cuBLAS must not allocate while a graph is captured


class Gemm:
    """Row-major ``C ← op(A) op(B)`` through cuBLAS (column-major: ``Cᵀ = op(B)ᵀ op(A)ᵀ``), on a handle of
    our own bound to ``stream`` with a workspace of its own; TF32 tensor cores for float32 where ``CUPY_TF32=1``."""

    def __init__(self, dtype, stream):
        import ctypes

        lib = self.lib = _cublas()
        handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)))
        self.handle = handle.value
        self._finalizer = weakref.finalize(self, lib.cublasDestroy_v2, self.handle)
        import cupy

        self.workspace = cupy.empty(_WORKSPACE, np.uint8)
        self._check(lib.cublasSetStream_v2(self.handle, stream.ptr))
        self._check(lib.cublasSetWorkspace_v2(self.handle, self.workspace.data.ptr, _WORKSPACE))
        self.tf32 = dtype == np.float32 and os.environ.get("CUPY_TF32") == "1"
        if self.tf32:
            self._check(lib.cublasSetMathMode(self.handle, _TF32_TENSOR_OP_MATH))
        self.fn = lib.cublasSgemm_v2 if dtype == np.float32 else lib.cublasDgemm_v2
        self.one, self.zero = np.ones(1, dtype), np.zeros(1, dtype)  # host scalars: read when the call is made

    @staticmethod
    def _check(status):
        if status:
            raise RuntimeError(f"cuBLAS failed with status {status}")

    def __call__(self, trans_a, trans_b, m, n, k, a, b, c):
        self._check(self.fn(self.handle, _OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N, n, m, k,
                            self.one.ctypes.data, b.data.ptr, b.shape[1], a.data.ptr, a.shape[1],
                            self.zero.ctypes.data, c.data.ptr, c.shape[1]))
