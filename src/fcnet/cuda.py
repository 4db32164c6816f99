"""The CUDA engine: the compiled engine's steps on an NVIDIA GPU, through CuPy (``pip install 'fcnet[cuda]'``).

The same steps as :mod:`fcnet.jit` (and the NumPy reference it transcribes), with the same coverage
(:mod:`fcnet.coverage`): the training set lives on the GPU as it was given (``uint8`` images stay
``uint8``) and each batch is gathered and scaled there; the matrix products are cuBLAS GEMMs on a
handle of the engine's own (TF32 only where CuPy's own switch ``CUPY_TF32=1`` asks for it); the
element-wise work is fused kernels written out below — the batch gather, bias + activation, the softmax
cross-entropy with its gradient and the batch loss, the activation derivative with the bias gradient, and
one optimizer update of all the parameters. An output layer of at most :data:`HEAD_MAX` units (a
classifier's) takes no GEMM: its products are too small to fill a GPU, so two kernels do all its work, a
block per row forward (logits, softmax cross-entropy, its gradient) and a warp per input column backward
(the weight gradient, and the delta and bias gradient of the layer below, the activation derivative
applied). A layer's weight gradient is computed on a side stream while the main one carries the error
down to the layer below. A chunk of up to
:data:`fcnet.coverage.STEP_ROWS` rows of steps is captured once in a CUDA graph and replayed, and the
next chunk is queued before the last one's losses are read, so the CPU does not pace the GPU.

The engine contract of :mod:`fcnet.engines` holds: the kernel that sums the batch loss (softmax_ce, or
head_backward) raises a flag on the GPU when a step's loss is not finite, and every update kernel of that step
and after it reads the flag and changes nothing. The epoch's order is drawn on the host from the model's
generator, as on the other engines (so a seed gives the same run everywhere), and is uploaded once per epoch.
The parameters and the optimizer's state are uploaded at the start of each epoch and copied back at its end,
so callbacks, checkpoints and ``save`` see the model as on any engine.
"""

import functools
import math
import os
import warnings
import weakref
from collections import deque

import numpy as np

from . import coverage
from .coverage import ACTIVATIONS, STEP_ROWS, OptimizerRule, check_epoch
from .layers import Dense

__all__ = ["unavailable", "unsupported", "CudaEngine", "forward_batches", "loss_and_gradients"]

_BLOCK = 256
HEAD_MAX = 32  # outputs of at most this many units take the fused head kernels (HEAD_MAX in the source)
_H2D, _D2H, _D2D = 1, 2, 3  # cudaMemcpyKind
_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.uint8): "unsigned char"}

# Each kernel names the reference formula it transcribes (and fcnet.jit's twin of it).
_SOURCE = r"""
template<typename T> __device__ __forceinline__ T activate(T v, int code, T alpha) {
    // fcnet.activations forward (fcnet.jit._activate): 0 linear, 1 relu, 2 leaky relu, 3 sigmoid, 4 tanh
    switch (code) {
    case 1: return v <= T(0) ? T(0) : v;  // keeps NaN, as np.maximum does
    case 2: return v > T(0) ? v : alpha * v;
    case 3: { T e = exp(-fabs(v)); return (v >= T(0) ? T(1) : e) / (T(1) + e); }
    case 4: return tanh(v);
    default: return v;
    }
}

// Rows order[0 .. rows) of x, as model floats (Sequential.to_float): out[r, j] = x[order[r], j] * scale.
template<typename T, typename X>
__global__ void gather(const X* __restrict__ x, const long long* __restrict__ order, int rows, int cols,
                       T scale, int scaled, T* __restrict__ out) {
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const X* src = x + order[r] * (long long)cols;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += blockDim.x * gridDim.x) {
            T v = (T)src[j];
            out[(long long)r * cols + j] = scaled ? v * scale : v;
        }
    }
}

// z <- f(z + b) on z[:rows] (Dense.forward_z's bias, then the activation).
template<typename T>
__global__ void bias_act(T* __restrict__ z, const T* __restrict__ b, int rows, int cols, int code, T alpha) {
    for (int r = blockIdx.y; r < rows; r += gridDim.y)
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += blockDim.x * gridDim.x) {
            long long i = (long long)r * cols + j;
            z[i] = activate(z[i] + b[j], code, alpha);
        }
}

// The column sums of d[:rows] into db (Dense.backward's db = sum over the batch), in a fixed order: the
// threads of row group ty sum rows ty, ty + groups, ..., then one thread per column adds the groups' sums.
// Called by a whole block after d is written; part holds blockDim.x * blockDim.y values.
template<typename T>
__device__ void column_sums(const T* d, int rows, int cols, int j, int ty, int groups, T* part, T* db) {
    T acc = T(0);
    if (j < cols)
        for (int r = ty; r < rows; r += groups) acc += d[(long long)r * cols + j];
    part[ty * blockDim.x + threadIdx.x] = acc;
    __syncthreads();
    if (ty == 0 && j < cols) {
        T sum = T(0);
        for (int g = 0; g < groups; ++g) sum += part[g * blockDim.x + threadIdx.x];
        db[j] = sum;
    }
}

// d * f'(z), from the layer's output v = f(z) (fcnet.activations backward; fcnet.jit._derivative).
template<typename T> __device__ __forceinline__ T derive(T d, T v, int code, T alpha) {
    switch (code) {
    case 1: return v > T(0) ? d : T(0);
    case 2: return v > T(0) ? d : alpha * d;
    case 3: return d * (v * (T(1) - v));
    case 4: return d * (T(1) - v * v);
    default: return d;
    }
}

// d <- d * f'(z), from the layer's output a, and the bias gradient of the layer below, db = column sums of
// the new d. Blocks of 32 columns x 8 row groups.
template<typename T>
__global__ void derivative(T* __restrict__ d, const T* __restrict__ a, int rows, int cols, int code, T alpha,
                           T* __restrict__ db) {
    __shared__ T part[256];
    const int j = blockIdx.x * blockDim.x + threadIdx.x, ty = threadIdx.y;
    if (j < cols)
        for (int r = ty; r < rows; r += blockDim.y) {
            const long long i = (long long)r * cols + j;
            d[i] = derive(d[i], a[i], code, alpha);
        }
    __syncthreads();
    column_sums(d, rows, cols, j, ty, (int)blockDim.y, part, db);
}

// The cross-entropy of the logits z + b against labels y[order[r]] (losses.*Crossentropy.value_and_grad,
// fcnet.jit._crossentropy): delta = (softmax - onehot) / rows, the mean loss and the hits of the batch
// into loss[0] and hits[0]; a loss that is not finite raises *flag; the column sums of delta (the bias
// gradient) into db. One block; every sum in a fixed order, so the result does not depend on scheduling.
template<typename T>
__global__ void softmax_ce(const T* __restrict__ z, const T* __restrict__ b, T* __restrict__ delta,
                           const int* __restrict__ y, const long long* __restrict__ order, int rows, int cols,
                           double* loss, int* hits, int* flag, T* __restrict__ db) {
    __shared__ double s_loss[256];
    __shared__ int s_hits[256];
    __shared__ T part[256];
    double total = 0.0;
    int hit = 0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const T* zr = z + (long long)r * cols;
        T* dr = delta + (long long)r * cols;
        int label = y[order[r]], best = 0;
        T top = zr[0] + b[0];
        for (int j = 1; j < cols; ++j) {
            T v = zr[j] + b[j];
            if (v > top) { top = v; best = j; }
        }
        if (isnan(zr[0] + b[0])) top = zr[0] + b[0];  // a NaN logit must make the loss NaN
        double s = 0.0;
        for (int j = 0; j < cols; ++j) {
            T e = exp((zr[j] + b[j]) - top);
            dr[j] = e;
            s += (double)e;
        }
        for (int j = 0; j < cols; ++j)
            dr[j] = (T)(((double)dr[j] / s - (j == label ? 1.0 : 0.0)) / rows);
        total += log(s) - (double)((zr[label] + b[label]) - top);
        hit += best == label;
    }
    s_loss[threadIdx.x] = total;
    s_hits[threadIdx.x] = hit;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            s_loss[threadIdx.x] += s_loss[threadIdx.x + half];
            s_hits[threadIdx.x] += s_hits[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double mean = s_loss[0] / rows;
        *loss = mean;
        *hits = s_hits[0];
        if (!isfinite(mean)) *flag = 1;
    }
    // The output layer's bias gradient: the block as groups of cols threads (one group when cols > 256).
    const int per = cols < (int)blockDim.x ? cols : (int)blockDim.x;
    const int groups = blockDim.x / per;
    for (int first = 0; first < cols; first += per) {
        const int ty = threadIdx.x / per, j = first + threadIdx.x % per;
        const bool in = ty < groups;
        T acc = T(0);
        if (in && j < cols)
            for (int r = ty; r < rows; r += groups) acc += delta[(long long)r * cols + j];
        if (in) part[ty * per + threadIdx.x % per] = acc;
        __syncthreads();
        if (ty == 0 && j < cols) {
            T sum = T(0);
            for (int g = 0; g < groups; ++g) sum += part[g * per + threadIdx.x];
            db[j] = sum;
        }
        __syncthreads();
    }
}

// The output layer fused, for outputs of at most HEAD_MAX units (a classifier's head): its GEMMs are too
// small to fill the GPU, so a block takes each row forward and a warp each input column backward, their
// threads striding over the long dimension. Sums across a warp's lanes are butterfly shuffles, which leave the
// same result in every lane; every sum is made in a fixed order. Loops over memory are unrolled, so that a
// thread issues its loads together instead of waiting for each in turn.
#define HEAD_MAX 32
#define HEAD_WARPS 8  // head_forward's block: HEAD_WARPS * 32 threads

template<typename T> __device__ __forceinline__ T warp_total(T v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Forward: per row r (a block) the logits z = a[r] W + b (Dense.forward_z), then what softmax_ce computes for
// the row, lane j of the first warp taking logit j: delta[r] = (softmax - onehot) / rows, the row's loss
// log(sum e) - (z[label] - top) and whether it is a hit (the first largest logit; NaN counts as the smallest).
template<typename T>
__global__ void head_forward(const T* __restrict__ a, const T* __restrict__ w, const T* __restrict__ b, int rows,
                             int k, int m, const int* __restrict__ y, const long long* __restrict__ order,
                             T* __restrict__ delta, double* __restrict__ row_loss, int* __restrict__ row_hit) {
    __shared__ T part[HEAD_WARPS][HEAD_MAX];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool in = lane < m;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const int label = warp == 0 ? y[order[r]] : 0;  // loads issued early, used after the sums
        const T bias = warp == 0 && in ? b[lane] : T(0);
        T z[HEAD_MAX];
#pragma unroll
        for (int j = 0; j < HEAD_MAX; ++j) z[j] = T(0);
        const T* ar = a + (long long)r * k;
#pragma unroll 4
        for (int c = threadIdx.x; c < k; c += blockDim.x) {
            const T v = ar[c];
            const T* wc = w + (long long)c * m;
#pragma unroll
            for (int j = 0; j < HEAD_MAX; ++j)
                if (j < m) z[j] += v * wc[j];
        }
#pragma unroll
        for (int j = 0; j < HEAD_MAX; ++j)
            if (j < m) {
                const T t = warp_total(z[j]);
                if (lane == 0) part[warp][j] = t;
            }
        __syncthreads();
        if (warp == 0) {
            T zj = T(0);
            if (in) {
                zj = part[0][lane];
                for (int g = 1; g < HEAD_WARPS; ++g) zj += part[g][lane];
                zj += bias;
            }
            bool ok = in && !isnan(zj);
            T top = zj;
            int best = lane;
            for (int offset = 16; offset > 0; offset /= 2) {  // the largest (ok, top, -best): one total order
                const bool o_ok = __shfl_xor_sync(0xffffffffu, (int)ok, offset);
                const T o_top = __shfl_xor_sync(0xffffffffu, top, offset);
                const int o_best = __shfl_xor_sync(0xffffffffu, best, offset);
                if (o_ok != ok ? o_ok : (ok && o_top != top ? o_top > top : o_best < best)) {
                    ok = o_ok;
                    top = o_top;
                    best = o_best;
                }
            }
            const T z0 = __shfl_sync(0xffffffffu, zj, 0), picked = __shfl_sync(0xffffffffu, zj, label);
            if (isnan(z0)) top = z0;  // a NaN logit must make the loss NaN
            const T e = in ? T(exp(zj - top)) : T(0);
            const double s = warp_total((double)e);
            if (in) delta[(long long)r * m + lane] = (T)(((double)e / s - (lane == label ? 1.0 : 0.0)) / rows);
            if (lane == 0) {
                row_loss[r] = log(s) - (double)(picked - top);
                row_hit[r] = best == label;
            }
        }
        __syncthreads();  // part is written again for the next row
    }
}

// Backward: warp c < k takes input column c: the weight gradient dW[c] = sum over rows of a[r, c] delta[r]
// (Dense.backward's a^T delta), and, when there is a layer below, its delta d_below[r, c] = f'(.) (delta[r] . W[c])
// and bias gradient db_below[c]. Warp k takes the batch: the bias gradient db (column sums of delta), the mean
// loss and the hits into loss[0] and hits[0]; a mean loss that is not finite raises *flag.
template<typename T>
__global__ void head_backward(const T* __restrict__ a, const T* __restrict__ w, const T* __restrict__ delta, int rows,
                              int k, int m, T* __restrict__ dw, T* __restrict__ db, int below, T* __restrict__ d_below,
                              int code, T alpha, T* __restrict__ db_below, const double* __restrict__ row_loss,
                              const int* __restrict__ row_hit, double* loss, int* hits, int* flag) {
    const int lane = threadIdx.x & 31, c = (int)((blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5);
    if (c > k) return;  // whole warps
    T acc[HEAD_MAX];
#pragma unroll
    for (int j = 0; j < HEAD_MAX; ++j) acc[j] = T(0);
    if (c == k) {
        double total = 0.0;
        int hit = 0;
#pragma unroll 4
        for (int r = lane; r < rows; r += 32) {
            const T* dr = delta + (long long)r * m;
#pragma unroll
            for (int j = 0; j < HEAD_MAX; ++j)
                if (j < m) acc[j] += dr[j];
            total += row_loss[r];
            hit += row_hit[r];
        }
        total = warp_total(total);
        hit = warp_total(hit);
#pragma unroll
        for (int j = 0; j < HEAD_MAX; ++j)
            if (j < m) acc[j] = warp_total(acc[j]);
        if (lane == 0) {
#pragma unroll
            for (int j = 0; j < HEAD_MAX; ++j)
                if (j < m) db[j] = acc[j];
            const double mean = total / rows;
            *loss = mean;
            *hits = hit;
            if (!isfinite(mean)) *flag = 1;
        }
        return;
    }
    T wc[HEAD_MAX];
#pragma unroll
    for (int j = 0; j < HEAD_MAX; ++j) wc[j] = j < m ? w[(long long)c * m + j] : T(0);
    T bsum = T(0);
#pragma unroll 4
    for (int r = lane; r < rows; r += 32) {
        const T v = a[(long long)r * k + c];
        const T* dr = delta + (long long)r * m;
        T s = T(0);
#pragma unroll
        for (int j = 0; j < HEAD_MAX; ++j)
            if (j < m) {
                const T d = dr[j];
                acc[j] += v * d;
                s += d * wc[j];
            }
        if (below) {
            const T g = derive(s, v, code, alpha);
            d_below[(long long)r * k + c] = g;
            bsum += g;
        }
    }
#pragma unroll
    for (int j = 0; j < HEAD_MAX; ++j)
        if (j < m) acc[j] = warp_total(acc[j]);
    bsum = warp_total(bsum);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < HEAD_MAX; ++j)
            if (j < m) dw[(long long)c * m + j] = acc[j];
        if (below) db_below[c] = bsum;
    }
}

// One optimizer step on every parameter (fcnet.optimizers SGD/Adam/RMSprop._update; fcnet.jit._update): each
// layer's weights W from dW and its bias b from db.
// table holds per layer the addresses W, dW, b, db, W's two slots, b's two slots, then k, m and the
// layer's first index among all parameters; hyper holds this step's lr, Adam's step size and
// 1 / (1 - beta_2^t). Nothing changes once *flag is raised.
template<typename T>
__global__ void update(const long long* __restrict__ table, int layers, long long total, int rule,
                       int torch_form, const T* __restrict__ hyper, T h1, T g1, T h2, T g2, T eps, const int* flag) {
    if (*flag) return;
    const T lr = hyper[0], step = hyper[1], inv_c2 = hyper[2];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int l = 0;
        while (l + 1 < layers && i >= table[(l + 1) * 11 + 10]) ++l;
        const long long* row = table + l * 11;
        const long long k = row[8], m = row[9], nW = k * m, at = i - row[10];
        T *p, *s1, *s2, g;
        if (at < nW) {
            p = (T*)row[0] + at; s1 = (T*)row[4] + at; s2 = (T*)row[5] + at; g = ((const T*)row[1])[at];
        } else {
            const long long j = at - nW;
            p = (T*)row[2] + j; s1 = (T*)row[6] + j; s2 = (T*)row[7] + j; g = ((const T*)row[3])[j];
        }
        if (rule == 0) {
            *p -= lr * g;
        } else if (rule == 1) {
            *s1 = h1 * *s1 - lr * g;
            *p += *s1;
        } else if (rule == 2) {
            *s1 = h1 * *s1 - lr * g;
            *p += h1 * *s1 - lr * g;
        } else if (rule == 3) {
            *s1 = g1 * g + h1 * *s1;
            *s2 = g2 * (g * g) + h2 * *s2;
            T root = torch_form ? sqrt(*s2 * inv_c2) : sqrt(*s2);
            *p -= step * (*s1 / (root + eps));
        } else {
            *s1 = g1 * (g * g) + h1 * *s1;
            T root = torch_form ? sqrt(*s1) + eps : sqrt(*s1 + eps);
            *p -= lr * (g / root);
        }
    }
}
"""


def _cupy():
    import cupy

    return cupy


def _pinned(shape, dtype):
    """A NumPy array in page-locked host memory: copies to and from it run asynchronously."""
    import cupyx

    return cupyx.empty_pinned(shape, dtype)


def unavailable():
    """Why the CUDA engine cannot run here (a short phrase), or ``None`` when CuPy sees a GPU."""
    try:
        cp = _cupy()
    except ImportError:
        return "CuPy is not installed: pip install 'fcnet[cuda]'"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own error types, from several layers, when no driver answers
        return f"no CUDA device answers ({exc})".replace("\n", " ")
    return None if count else "no CUDA device"


def unsupported(model, y):
    """Why ``model`` cannot train on targets ``y`` on the GPU, or ``None``: the coverage of :mod:`fcnet.coverage`."""
    return coverage.unsupported(model, y, squared_error=False, regularized=False)


@functools.cache
def _cublas():
    return _libcublas()


def kernel_names(dtype, x_dtype):
    """``{kernel: its instantiation in _SOURCE}`` for model floats ``dtype`` and inputs ``x_dtype``."""
    t, x = _TYPES[np.dtype(dtype)], _TYPES[np.dtype(x_dtype)]
    return {"gather": f"gather<{t}, {x}>", "bias_act": f"bias_act<{t}>", "derivative": f"derivative<{t}>",
            "softmax_ce": f"softmax_ce<{t}>", "head_forward": f"head_forward<{t}>",
            "head_backward": f"head_backward<{t}>", "update": f"update<{t}>"}


@functools.cache
def _kernels(dtype, x_dtype):
    """The compiled kernels for model floats ``dtype`` and inputs ``x_dtype`` (NVRTC, cached by CuPy on disk)."""
    names = kernel_names(dtype, x_dtype)
    # No fused multiply-adds: each rounding is the one NumPy makes, so float64 agrees to the last bits.
    module = _cupy().RawModule(code=_SOURCE, options=("--fmad=false",), name_expressions=tuple(names.values()))
    return {key: module.get_function(name) for key, name in names.items()}


def _blocks(size):
    return max(1, min(math.ceil(size / _BLOCK), 8192))


def _grid2(rows, cols):
    return (max(1, min(math.ceil(cols / _BLOCK), 64)), max(1, min(rows, 65535)))


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


class _Gemm:
    """Row-major ``C ← op(A) op(B)`` through cuBLAS (column-major: ``Cᵀ = op(B)ᵀ op(A)ᵀ``), on a handle of
    our own bound to ``stream`` with a workspace of its own; TF32 tensor cores for float32 where ``CUPY_TF32=1``."""

    def __init__(self, dtype, stream):
        import ctypes

        lib = self.lib = _cublas()
        handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)))
        self.handle = handle.value
        self._finalizer = weakref.finalize(self, lib.cublasDestroy_v2, self.handle)
        self.workspace = _cupy().empty(_WORKSPACE, np.uint8)
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


class CudaEngine:
    """The CUDA engine of :mod:`fcnet.engines` (its interface, :class:`fcnet.engines.Engine`, is not
    inherited: that module imports this one).

    Parameters
    ----------
    model : Sequential
        Compiled, built, and accepted by :func:`unsupported`.
    batch_size : int
    x : ndarray, shape (n, n_in)
        The checked training inputs: uploaded here, once (again only if an epoch is given other arrays).
    y : ndarray, shape (n,)
        Integer labels.
    graphs : bool
        Capture each chunk of steps in a CUDA graph (else launch the kernels one by one).
    """

    name = "cuda"

    def __init__(self, model, batch_size, x, y, graphs=True):
        cp = self.cp = _cupy()
        self.model, self.batch_size, self.graphs = model, batch_size, graphs
        dtype, layers = model.dtype, model.layers
        # The weight gradient of a layer above the first is computed on a side stream, while the main one goes
        # on down the network (in a graph: a parallel branch); both meet before the update.
        self.stream, self.side = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
        self.gemm, self.side_gemm = _Gemm(dtype, self.stream), _Gemm(dtype, self.side)
        self.fork, self.join = cp.cuda.Event(disable_timing=True), cp.cuda.Event(disable_timing=True)
        self.rule = OptimizerRule(model.optimizer)
        self.codes = [ACTIVATIONS.get(type(layer.activation), 0) for layer in layers]
        self.alphas = [dtype.type(getattr(layer.activation, "alpha", 0.0)) for layer in layers]
        self.per_call = max(1, STEP_ROWS // batch_size)
        self.head = layers[-1].units <= HEAD_MAX
        widths = [layers[0].input_dim] + [layer.units for layer in layers]
        with self.stream:
            # Activations: buffer l is the input of layer l, buffer l + 1 its output; deltas likewise per layer.
            self.acts = [cp.empty((batch_size, w), dtype) for w in widths]
            self.deltas = [cp.empty((batch_size, w), dtype) for w in widths[1:]]
            self.params = [cp.zeros(p.shape, dtype) for p in model.parameters]  # W1, b1, W2, b2, ...
            self.weight_grads = [cp.empty(layer.params["W"].shape, dtype) for layer in layers]
            self.bias_grads = [cp.empty(layer.params["b"].shape, dtype) for layer in layers]
            self.slots = [None if name is None else [cp.zeros(p.shape, dtype) for p in model.parameters]
                          for name in self.rule.slots]
            self.flag = cp.zeros(1, np.int32)
            self.table = cp.asarray(self._layer_table(), dtype=np.int64)
            self.order_stage = cp.zeros(self.per_call * batch_size, np.int64)  # row 0 until an epoch fills it
            self.hyper_stage = cp.empty((self.per_call, 3), dtype)
            self.loss_stage = cp.empty(self.per_call, np.float64)
            self.hits_stage = cp.empty(self.per_call, np.int32)
            self.row_loss, self.row_hits = cp.empty(batch_size, np.float64), cp.empty(batch_size, np.int32)
        self._source = None
        self._load(x, y)

    def _layer_table(self):
        """Per layer: the addresses the update kernel reads and writes, ``k``, ``m`` and its first index."""
        rows, first = [], 0
        slots = [pair if pair is not None else self.params for pair in self.slots]  # unused by rules without state
        for layer, (k, m) in enumerate(p.shape for p in self.params[::2]):
            w, b = 2 * layer, 2 * layer + 1
            rows.append([self.params[w].data.ptr, self.weight_grads[layer].data.ptr, self.params[b].data.ptr,
                         self.bias_grads[layer].data.ptr, slots[0][w].data.ptr, slots[1][w].data.ptr,
                         slots[0][b].data.ptr, slots[1][b].data.ptr, k, m, first])
            first += k * m + m
        self.total = first
        return rows

    # -- data and graphs ---------------------------------------------------------------------------------

    def _load(self, x, y):
        """Upload the training set, size the per-epoch tables and capture the graphs of an epoch's chunks."""
        cp = self.cp
        dtype, batch = self.model.dtype, self.batch_size
        self._source = (x, y)
        self.kernels = _kernels(dtype, np.uint8 if x.dtype == np.uint8 else dtype)
        self.scale = dtype.type(1 / 255)
        n, steps = len(x), math.ceil(len(x) / batch)
        with self.stream:
            self.x = cp.asarray(np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(dtype, copy=False)))
            self.y = cp.asarray(y.astype(np.int32))
            self.order = cp.empty(max(n, 1), np.int64)
            self.hyper = cp.empty((max(steps, 1), 3), dtype)
        self.host_order = _pinned(max(n, 1), np.int64)
        self.host_hyper = _pinned((max(steps, 1), 3), dtype)
        self.host_loss = _pinned(max(steps, 1), np.float64)
        self.host_hits = _pinned(max(steps, 1), np.int32)
        full, tail = divmod(n, batch)
        self.chunks = [(first, min(self.per_call, full - first), batch) for first in range(0, full, self.per_call)]
        if tail:
            self.chunks.append((full, 1, tail))
        self._graphs = {}
        with self.stream:  # one step of each size, uncaptured: libraries load their kernels outside a capture
            for rows in {rows for _, _, rows in self.chunks}:
                self._enqueue_step(0, rows, update=False)
        if self.graphs:
            try:
                for _, k, rows in self.chunks:
                    if (k, rows) not in self._graphs:
                        self._graphs[k, rows] = self._capture(k, rows)
            except Exception as exc:  # a driver or library that cannot capture: the same steps, launched one by one
                warnings.warn(f"CUDA graph capture failed ({exc}); the steps are launched one by one", stacklevel=2)
                self.graphs, self._graphs = False, {}

    def _capture(self, k, rows):
        stream = self.stream
        with stream:
            stream.begin_capture()
            try:
                for i in range(k):
                    self._enqueue_step(i, rows)
            finally:
                graph = stream.end_capture()
        return graph

    def _enqueue_step(self, i, rows, update=True):
        """Queue step ``i`` of a chunk (its rows at ``order_stage[i * batch_size:]``) on the stream."""
        kern, gemm, B = self.kernels, self.gemm, self.batch_size
        acts, deltas, params, i32 = self.acts, self.deltas, self.params, np.int32
        order, depth = self.order_stage[i * B:], len(self.model.layers)
        cols = acts[0].shape[1]
        kern["gather"](_grid2(rows, cols), (_BLOCK,),
                       (self.x, order, i32(rows), i32(cols), self.scale, i32(self.x.dtype == np.uint8), acts[0]))
        below = depth - 1 if self.head else depth  # the layers the GEMMs take; the fused head takes the last one
        for layer in range(below):  # forward: Dense.forward_z, the bias and activation fused
            w = params[2 * layer]
            k, m = w.shape
            gemm(False, False, rows, m, k, acts[layer], w, acts[layer + 1])
            if layer < depth - 1:
                kern["bias_act"](_grid2(rows, m), (_BLOCK,), (acts[layer + 1], params[2 * layer + 1], i32(rows),
                                                               i32(m), i32(self.codes[layer]), self.alphas[layer]))
        if self.head:  # the output layer forward and backward, and the delta of the layer below
            k, m = params[-2].shape
            inner = depth > 1
            kern["head_forward"]((max(1, min(rows, 65535)),), (_BLOCK,), (
                acts[-2], params[-2], params[-1], i32(rows), i32(k), i32(m), self.y, order, deltas[-1],
                self.row_loss, self.row_hits))
            kern["head_backward"]((math.ceil((k + 1) / 8),), (_BLOCK,), (
                acts[-2], params[-2], deltas[-1], i32(rows), i32(k), i32(m), self.weight_grads[-1],
                self.bias_grads[-1], i32(inner), deltas[-2 if inner else -1], i32(self.codes[-2] if inner else 0),
                self.alphas[-2 if inner else -1], self.bias_grads[-2 if inner else -1], self.row_loss, self.row_hits,
                self.loss_stage[i:], self.hits_stage[i:], self.flag))
        else:
            out = acts[depth].shape[1]
            kern["softmax_ce"]((1,), (_BLOCK,), (acts[depth], params[-1], deltas[-1], self.y, order, i32(rows),
                                                 i32(out), self.loss_stage[i:], self.hits_stage[i:], self.flag,
                                                 self.bias_grads[-1]))
        for layer in range(below - 1, -1, -1):  # backward: Dense.backward
            w = params[2 * layer]
            k, m = w.shape
            side = layer > 0
            if side:  # dW of this layer on the side stream, dx on the main one
                self.fork.record(self.stream)
                self.side.wait_event(self.fork)
                self.side_gemm(True, False, k, m, rows, acts[layer], deltas[layer], self.weight_grads[layer])
                gemm(False, True, rows, k, m, deltas[layer], w, deltas[layer - 1])
                kern["derivative"]((math.ceil(k / 32),), (32, 8), (deltas[layer - 1], acts[layer], i32(rows), i32(k),
                                   i32(self.codes[layer - 1]), self.alphas[layer - 1], self.bias_grads[layer - 1]))
            else:
                gemm(True, False, k, m, rows, acts[layer], deltas[layer], self.weight_grads[layer])
        if below > 1:  # a weight gradient went to the side stream
            self.join.record(self.side)
            self.stream.wait_event(self.join)
        if update:  # the optimizer, on every parameter at once
            rule, t = self.rule, self.model.dtype.type
            kern["update"]((_blocks(self.total),), (_BLOCK,), (
                self.table, i32(depth), np.int64(self.total), i32(rule.rule), i32(rule.torch_form),
                self.hyper_stage[i:], t(rule.h1), t(1 - rule.h1), t(rule.h2), t(1 - rule.h2), t(rule.epsilon),
                self.flag))

    def _launch(self, first, k, rows):
        """Queue steps ``first .. first + k - 1`` and the copy of their losses; returns an event for them."""
        cp, stream, B = self.cp, self.stream, self.batch_size
        copy = cp.cuda.runtime.memcpyAsync
        hyper_row = self.hyper.itemsize * 3
        copy(self.order_stage.data.ptr, self.order.data.ptr + first * B * 8, ((k - 1) * B + rows) * 8, _D2D,
             stream.ptr)
        copy(self.hyper_stage.data.ptr, self.hyper.data.ptr + first * hyper_row, k * hyper_row, _D2D, stream.ptr)
        if self.graphs:
            self._graphs[k, rows].launch(stream)
        else:
            with stream:
                for i in range(k):
                    self._enqueue_step(i, rows)
        copy(self.host_loss.ctypes.data + first * 8, self.loss_stage.data.ptr, k * 8, _D2H, stream.ptr)
        copy(self.host_hits.ctypes.data + first * 4, self.hits_stage.data.ptr, k * 4, _D2H, stream.ptr)
        done = cp.cuda.Event(disable_timing=True)
        done.record(stream)
        return done

    # -- the model's state ---------------------------------------------------------------------------------

    def _state_pairs(self):
        """(device array, host array) for every parameter and every optimizer slot the rule keeps."""
        model, opt = self.model, self.model.optimizer
        pairs = list(zip(self.params, model.parameters))
        for name, devices in zip(self.rule.slots, self.slots):
            if name is not None:
                pairs += [(d, opt.slots(p)[name]) for d, p in zip(devices, model.parameters)]
        return pairs

    def _push(self):
        with self.stream:
            for device, host in self._state_pairs():
                device.set(host)

    def _pull(self):
        with self.stream:
            for device, host in self._state_pairs():
                device.get(out=host)

    # -- the contract ----------------------------------------------------------------------------------------

    def epoch(self, x, y, order):
        """Train one epoch over ``x[order]``; yields ``(rows, loss, hits)`` per step, as ``engines.Step``."""
        check_epoch(self.model, x, y, order)  # compiled code does not check bounds
        if self._source is None or x is not self._source[0] or y is not self._source[1]:
            self._load(x, y)
        return self._epoch(order)

    def _prepare(self, order):
        """Upload the epoch's order, its per-step hyper-parameters and the model's state; lower the flag."""
        opt, rule, steps = self.model.optimizer, self.rule, len(self.host_loss)
        lr = float(opt.learning_rate)
        step, inv_c2 = rule.step_sizes(lr, opt.iterations + 1 + np.arange(steps))
        self.host_hyper[:, 0], self.host_hyper[:, 1], self.host_hyper[:, 2] = lr, step, inv_c2
        self.host_order[:len(order)] = order
        copy, ptr = self.cp.cuda.runtime.memcpyAsync, self.stream.ptr
        copy(self.order.data.ptr, self.host_order.ctypes.data, self.host_order.nbytes, _H2D, ptr)
        copy(self.hyper.data.ptr, self.host_hyper.ctypes.data, self.host_hyper.nbytes, _H2D, ptr)
        self._push()
        with self.stream:
            self.flag.fill(0)

    def _epoch(self, order):
        opt, t0, launched = self.model.optimizer, self.model.optimizer.iterations, 0
        self._prepare(order)
        pending = deque()
        try:
            for first, k, rows in self.chunks:
                pending.append((first, k, rows, self._launch(first, k, rows)))
                launched = first + k
                if len(pending) > 1 and not (yield from self._report(*pending.popleft())):
                    return
            while pending:
                if not (yield from self._report(*pending.popleft())):
                    return
        finally:  # also when the caller stops early: count what the GPU applied, and bring the state home
            self.stream.synchronize()
            bad = np.flatnonzero(~np.isfinite(self.host_loss[:launched]))
            opt.iterations = t0 + (int(bad[0]) if bad.size else launched)
            self._pull()

    def _report(self, first, k, rows, done):
        """Yield the steps of a finished chunk; ``False`` after a step whose loss is not finite."""
        done.synchronize()
        for i in range(first, first + k):
            loss = float(self.host_loss[i])
            yield rows, loss, int(self.host_hits[i])
            if not math.isfinite(loss):
                return False
        return True

    def gradients(self):
        """The loss and every parameter's gradient for the whole training set as one batch, in order; no update.

        The engine must have been built with ``batch_size = len(x)``.
        """
        n = len(self._source[0])
        self._prepare(np.arange(n))
        rt, stream = self.cp.cuda.runtime, self.stream
        rt.memcpyAsync(self.order_stage.data.ptr, self.order.data.ptr, n * 8, _D2D, stream.ptr)
        with stream:
            self._enqueue_step(0, n, update=False)
            grads = []
            for w_grad, b_grad in zip(self.weight_grads, self.bias_grads):
                grads += [w_grad.get(), b_grad.get()]
            loss = float(self.loss_stage[0].get())
        return loss, grads


def loss_and_gradients(model, x, y):
    """``model.loss_and_gradients(x, y)`` computed on the GPU: the batch loss and every parameter's gradient."""
    model.require_compiled()
    x = model.check_inputs(x)
    y = model.check_targets(y, len(x))
    reason = unavailable() or unsupported(model, y)
    if reason:
        raise ValueError(f"the GPU cannot compute these gradients: {reason}")
    return CudaEngine(model, len(x), x, y, graphs=False).gradients()


def forward_batches(model, x, batch_size):
    """Yield ``(start, loss input, output)`` per batch of checked inputs ``x``, computed on the GPU and returned as
    NumPy arrays: what :meth:`fcnet.model.Sequential.forward` gives with ``training=False``."""
    reason = unavailable() or _unpredictable(model)
    if reason:
        raise ValueError(f"engine 'cuda' cannot run this model: {reason}")
    cp, dtype = _cupy(), model.dtype
    kern = _kernels(dtype, np.uint8)
    params = [cp.asarray(p) for p in model.parameters]
    last = len(model.layers) - 1
    for start in range(0, len(x), batch_size):
        a = cp.asarray(x[start:start + batch_size])
        a = a.astype(dtype) * dtype.type(1 / 255) if a.dtype == np.uint8 else a.astype(dtype)  # to_float
        for i, layer in enumerate(model.layers):
            z = a @ params[2 * i]
            rows, m = z.shape
            code = 0 if i == last else ACTIVATIONS[type(layer.activation)]
            kern["bias_act"](_grid2(rows, m), (_BLOCK,), (z, params[2 * i + 1], np.int32(rows), np.int32(m),
                                                          np.int32(code), dtype.type(getattr(layer.activation,
                                                                                           "alpha", 0.0))))
            a = z
        if model.layers[-1].activation.name == "softmax":  # fcnet.activations.Softmax.forward, in CuPy
            out = cp.exp(z - z.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        else:
            out = z
        yield start, (z if model.fuses_output else out).get(), out.get()


def _unpredictable(model):
    """Why the GPU cannot run ``model``'s forward pass, or ``None``."""
    if model.dtype not in (np.float32, np.float64):
        return f"dtype {model.dtype} is not compiled"
    for i, layer in enumerate(model.layers):
        last = i == len(model.layers) - 1
        kind = type(layer.activation)
        if type(layer) is not Dense:
            return f"layer type {type(layer).__name__} is not compiled"
        if layer.batch_norm is not None:
            return "batch normalization is not compiled"
        if last and layer.activation.name not in ("softmax", "linear") or not last and kind not in ACTIVATIONS:
            return f"activation {layer.activation.name!r} is not compiled"
    return None
