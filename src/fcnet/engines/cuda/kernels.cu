// The CUDA engine's kernels (fcnet.engines.cuda), compiled at run time by CuPy's NVRTC and, in the tests,
// by nvcc (tests/engines/test_cuda_source.py). Each kernel names the reference formula it transcribes (and
// fcnet.engines.numba's twin of it).
template<typename T> __device__ __forceinline__ T activate(T v, int code, T alpha) {
    // fcnet.activations forward (fcnet.engines.numba_kernels.activate): 0 linear, 1 relu, 2 leaky relu, 3 sigmoid, 4 tanh
    switch (code) {
    case 0: return v;
    case 1: return v <= T(0) ? T(0) : v;  // keeps NaN, as np.maximum does
    case 2: return v > T(0) ? v : alpha * v;
    case 3: { T e = exp(-fabs(v)); return (v >= T(0) ? T(1) : e) / (T(1) + e); }
    case 4: return tanh(v);
    }
    __trap();  // a code no allow-list gives (fcnet.engines.cuda.SUPPORT): stop, never run as another formula
    return v;
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

// d * f'(z), from the layer's output v = f(z) (fcnet.activations backward; fcnet.engines.numba_kernels.derivative).
template<typename T> __device__ __forceinline__ T derive(T d, T v, int code, T alpha) {
    switch (code) {
    case 0: return d;
    case 1: return v > T(0) ? d : T(0);
    case 2: return v > T(0) ? d : alpha * d;
    case 3: return d * (v * (T(1) - v));
    case 4: return d * (T(1) - v * v);
    }
    __trap();
    return d;
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
// fcnet.engines.numba_kernels.crossentropy): delta = (softmax - onehot) / rows, the mean loss and the hits of the batch
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

// One optimizer step on every parameter (fcnet.optimizers SGD/Adam/RMSprop._update; fcnet.engines.numba_kernels.update): each
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
        } else if (rule == 4) {
            *s1 = g1 * (g * g) + h1 * *s1;
            T root = torch_form ? sqrt(*s1) + eps : sqrt(*s1 + eps);
            *p -= lr * (g / root);
        } else {
            __trap();  // a rule OptimizerRule does not give
        }
    }
}
