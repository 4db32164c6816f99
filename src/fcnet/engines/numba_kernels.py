"""The per-element formulas of the compiled CPU engine (:mod:`fcnet.engines.numba`), compiled by Numba: each is
the twin of a NumPy reference it names, and ``tests/engines/test_parity.py`` proves them equal through the engine.
"""

import math

import numba
import numpy as np

from ..blas import NO_TRANS, ROW_MAJOR, TRANS
from .base import ADAM, MOMENTUM, NESTEROV, RMSPROP, SGD

__all__ = ["gemm", "erfc", "activate", "derivative", "crossentropy", "flush", "squared_error", "clip", "update"]


@numba.njit(cache=True, error_model="numpy")
def gemm(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``C ← α op(A) op(B) + β C`` on the first rows of row-major buffers."""
    gemm(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, alpha,
         a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)


@numba.njit(cache=True, error_model="numpy")
def erfc(x):
    """``math.erfc`` (the C library's): within 1e-13 of :func:`fcnet.activations.erfc`, Cephes' form in NumPy."""
    return math.erfc(x)


@numba.njit(cache=True, error_model="numpy")
def activate(z, rows, bias, code, alpha, one, zero, keep_z):
    """``z ← f(z + b)`` in place on ``z[:rows]``: ``Dense.forward_z``'s bias, then ``forward`` of
    :mod:`fcnet.activations`; gelu (5) and swish (6) keep ``z + b`` in ``keep_z`` for their derivatives."""
    for r in range(rows):
        for j in range(z.shape[1]):
            v = z[r, j] + bias[j]
            if code == 1:
                v = v if not v <= zero else zero  # keeps NaN, as np.maximum does
            elif code == 2:
                v = v if v > zero else alpha * v
            elif code == 3:
                e = np.exp(-abs(v))
                v = (one if v >= zero else e) / (one + e)
            elif code == 4:
                v = np.tanh(v)
            elif code == 5:  # z Φ(z), Φ(z) = erfc(−z/√2)/2
                keep_z[r, j] = v
                v = v * (0.5 * erfc(-v * 0.7071067811865476))
            elif code == 6:  # z σ(z)
                keep_z[r, j] = v
                e = np.exp(-abs(v))
                v = v * ((one if v >= zero else e) / (one + e))
            z[r, j] = v


@numba.njit(cache=True, error_model="numpy")
def derivative(d, a, rows, code, alpha, one, zero, z):
    """``d ← d ⊙ f'(z)`` from the layer's output ``a`` (and, for gelu and swish, its kept ``z``), in place on
    ``d[:rows]``: ``backward`` of :mod:`fcnet.activations`."""
    for r in range(rows):
        for j in range(d.shape[1]):
            v = a[r, j]
            if code == 1:
                d[r, j] = d[r, j] if v > zero else zero
            elif code == 2:
                d[r, j] = d[r, j] if v > zero else alpha * d[r, j]
            elif code == 3:
                d[r, j] *= v * (one - v)
            elif code == 4:
                d[r, j] *= one - v * v
            elif code == 5:  # Φ(z) + z φ(z)
                u = z[r, j]
                d[r, j] *= u * (np.exp(-0.5 * u * u) * 0.3989422804014327) + 0.5 * erfc(-u * 0.7071067811865476)
            elif code == 6:  # σ(z) + a (1 − σ(z))
                u = z[r, j]
                e = np.exp(-abs(u))
                s = (one if u >= zero else e) / (one + e)
                d[r, j] *= s + v * (one - s)


@numba.njit(cache=True, error_model="numpy")
def crossentropy(z, delta, y, rows_idx, rows, eps):
    """Mean ``logsumexp(z) − z_y`` over the batch, ``δ = (softmax(z) − onehot(y)) / n``, and the hits; with label
    smoothing ``eps`` > 0, against the targets ``(1 − eps) onehot(y) + eps / K``.

    ``value_and_grad`` of :mod:`fcnet.losses`' cross-entropies for integer labels. Sums run in float64;
    the row maximum is subtracted first, so ``exp`` never overflows.
    """
    total, hits, k = 0.0, 0, z.shape[1]
    for r in range(rows):
        label = y[rows_idx[r]]
        best = 0
        for j in range(k):
            if z[r, j] > z[r, best]:
                best = j
        top = z[r, 0] if math.isnan(z[r, 0]) else z[r, best]  # a NaN logit must make the loss NaN
        s = 0.0
        for j in range(k):
            e = math.exp(z[r, j] - top)
            delta[r, j] = e
            s += e
        if eps == 0.0:
            for j in range(k):
                delta[r, j] = (delta[r, j] / s - (1.0 if j == label else 0.0)) / rows
            total += math.log(s) - (z[r, label] - top)
        else:
            spread = 0.0
            for j in range(k):
                delta[r, j] = (delta[r, j] / s - ((1.0 - eps) if j == label else 0.0) - eps / k) / rows
                spread += z[r, j] - top
            total += math.log(s) - ((1.0 - eps) * (z[r, label] - top) + eps / k * spread)
        hits += best == label
    return total / rows, hits


@numba.njit(cache=True, error_model="numpy")
def flush(s, tiny, zero):
    """A state value below the smallest normal number becomes 0.

    Momentum and Adam's first moment decay geometrically wherever the gradient stays 0 (a dead ReLU unit),
    into subnormal numbers, on which x86 arithmetic runs ~100× slower: Adam's epoch of 784-100-10 went from
    0.28 s to 0.55 s once they appeared. Such a value moves no weight (its update is far below half an ulp
    of any weight it could touch), so flushing it changes the state by less than ``tiny`` and the weights
    not at all; the NumPy reference keeps them.
    """
    return zero if abs(s) < tiny else s


@numba.njit(cache=True, error_model="numpy")
def squared_error(z, delta, y, rows_idx, rows):
    """Mean ``(z − y)²`` over the batch's entries and ``δ = 2 (z − y) / entries``: ``value_and_grad`` of
    :class:`fcnet.losses.MeanSquaredError` for float targets. The sum runs in float64."""
    total, k = 0.0, z.shape[1]
    scale = 2.0 / (rows * k)
    for r in range(rows):
        target = y[rows_idx[r]]
        for j in range(k):
            d = z[r, j] - target[j]
            total += d * d
            delta[r, j] = d * scale
    return total / (rows * k)


@numba.njit(cache=True, error_model="numpy")
def clip(grads, clip):
    """The gradients clipped in place as ``Optimizer.apply_gradients`` clips them: each entry to
    ``±clip[0]`` (clipvalue), then each array (clipnorm, ``clip[1]``) or all of them together
    (global_clipnorm, ``clip[2]``) scaled by ``limit / norm`` where their L2 norm exceeds the limit
    (``tf.clip_by_norm``); 0 turns an option off. Norms are summed in float64."""
    if clip[0] > 0:
        for g in grads:
            for i in range(g.size):
                g[i] = min(max(g[i], -clip[0]), clip[0])
    total = 0.0
    for g in grads:
        s = 0.0
        for i in range(g.size):
            s += float(g[i]) * float(g[i])
        total += s
        if clip[1] > 0 and math.sqrt(s) > clip[1]:
            factor = clip[1] / math.sqrt(s)
            for i in range(g.size):
                g[i] *= factor
    if clip[2] > 0 and math.sqrt(total) > clip[2]:
        factor = clip[2] / math.sqrt(total)
        for g in grads:
            for i in range(g.size):
                g[i] *= factor


@numba.njit(cache=True, error_model="numpy")
def update(p, g, s1, s2, rule, torch_form, h):
    """One optimizer step on a flat parameter, with the rules of :mod:`fcnet.optimizers` (``_update`` of
    ``SGD``, ``Adam`` and ``RMSprop``); ``h`` is the :func:`HYPER` record of this step.
    """
    lr, h1, g1, h2, g2, eps, step, inv_c2 = h.lr, h.h1, h.g1, h.h2, h.g2, h.epsilon, h.step, h.inv_c2
    tiny, zero = h.tiny, h.zero
    if h.decay != h.one:  # decoupled weight decay, before the rule (Optimizer.apply_gradients)
        for i in range(p.size):
            p[i] *= h.decay
    if rule == SGD:
        for i in range(p.size):
            p[i] -= lr * g[i]
    elif rule == MOMENTUM:
        for i in range(p.size):
            s1[i] = flush(h1 * s1[i] - lr * g[i], tiny, zero)
            p[i] += s1[i]
    elif rule == NESTEROV:
        for i in range(p.size):
            s1[i] = flush(h1 * s1[i] - lr * g[i], tiny, zero)
            p[i] += h1 * s1[i] - lr * g[i]
    elif rule == ADAM:
        for i in range(p.size):
            s1[i] = flush(g1 * g[i] + h1 * s1[i], tiny, zero)
            s2[i] = flush(g2 * (g[i] * g[i]) + h2 * s2[i], tiny, zero)
            root = np.sqrt(s2[i] * inv_c2) if torch_form else np.sqrt(s2[i])
            p[i] -= step * (s1[i] / (root + eps))
    elif rule == RMSPROP:
        for i in range(p.size):
            s1[i] = flush(g1 * (g[i] * g[i]) + h1 * s1[i], tiny, zero)
            root = np.sqrt(s1[i]) + eps if torch_form else np.sqrt(s1[i] + eps)
            p[i] -= lr * (g[i] / root)
