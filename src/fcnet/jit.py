"""The training epoch compiled with Numba: the same steps as the NumPy loop, with no Python between them.

At batch 8 a step of the 784-300-10 network is ~100 µs in NumPy, and half of
that is the cost of ~30 Python-level NumPy calls, not arithmetic. This module
runs whole runs of steps in one compiled function: gather and scale a batch,
``z = x W`` (GEMM) then bias and activation in one pass, the fused softmax
cross-entropy, ``δ Wᵀ`` (GEMM) and the activation derivative, the weight
gradient (GEMM; for plain SGD straight into ``W`` with ``α = −lr, β = 1``),
and the optimizer's update as one element-wise pass per parameter.

The matrix products are made by NumPy's own OpenBLAS, through the ``ctypes``
functions of :mod:`fcnet.blas`, passed in as arguments so the compiled code
can be cached on disk. The NumPy classes (``layers``, ``losses``,
``optimizers``) stay the reference: the formulas here are theirs, written out
per element, and the tests train both ways and compare (``float64`` to 1e-10).
Only what it covers is compiled — Dense layers with linear, ReLU, leaky ReLU,
sigmoid or tanh hidden activations, a softmax (or logits) output with
cross-entropy against integer labels, SGD (plain, momentum, Nesterov), Adam
and RMSprop in both epsilon forms, float32 or float64 — and :func:`unsupported`
says why anything else runs on NumPy.
"""

import math

import numba
import numpy as np

from . import activations, blas, losses, optimizers
from .layers import Dense

__all__ = ["unsupported", "Plan", "STEP_ROWS"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_ACTIVATIONS = {activations.Linear: 0, activations.ReLU: 1, activations.LeakyReLU: 2, activations.Sigmoid: 3,
                activations.Tanh: 4}
_SGD, _MOMENTUM, _NESTEROV, _ADAM, _RMSPROP = range(5)
STEP_ROWS = 8192  # rows per compiled call: progress callbacks run between calls


def unsupported(model, y):
    """Why ``model`` cannot train on targets ``y`` here (a short phrase), or ``None`` when it can.

    Classes are matched exactly: a subclass may override the formulas this module transcribes.
    """
    if not blas.AVAILABLE:
        return "NumPy's OpenBLAS was not found"
    if model.dtype not in (np.float32, np.float64):
        return f"dtype {model.dtype} is not compiled"
    if type(model.loss) not in (losses.SparseCategoricalCrossentropy, losses.CategoricalCrossentropy) or y.ndim != 1:
        return "only cross-entropy against integer labels is compiled"
    for i, layer in enumerate(model.layers):
        act, last = layer.activation, i == len(model.layers) - 1
        if type(layer) is not Dense:
            return f"layer type {type(layer).__name__} is not compiled"
        if last and type(act) not in (activations.Softmax, activations.Linear):
            return f"output activation {act.name!r} is not compiled"
        if not last and type(act) not in _ACTIVATIONS:
            return f"hidden activation {act.name!r} is not compiled"
    if type(model.optimizer) not in (optimizers.SGD, optimizers.Adam, optimizers.RMSprop):
        return f"optimizer {type(model.optimizer).__name__} is not compiled"
    return None


class Plan:
    """Everything the compiled steps need for one model and batch size, gathered once per epoch.

    Parameters
    ----------
    model : Sequential
        Compiled, built, and accepted by :func:`unsupported`.
    batch_size : int
    x_dtype : numpy.dtype
        ``uint8`` inputs are scaled by 1/255, as in ``Sequential._to_float``.
    """

    def __init__(self, model, batch_size, x_dtype):
        dtype, opt, layers = model.dtype, model.optimizer, model.layers
        self.model, self.batch_size = model, batch_size
        self.gemm = blas._FUNCTIONS[("gemm", dtype)]
        self.scale = dtype.type(1 / 255 if x_dtype == np.uint8 else 1)
        # Activations: buffer l is the input of layer l, buffer l + 1 its output; deltas likewise per layer.
        widths = [layers[0].input_dim] + [layer.units for layer in layers]
        self.acts = tuple(np.empty((batch_size, w), dtype=dtype) for w in widths)
        self.deltas = tuple(np.empty((batch_size, w), dtype=dtype) for w in widths[1:])
        self.weights = tuple(layer.params["W"] for layer in layers)
        self.weight_grads = tuple(layer.grads["W"] for layer in layers)
        self.flat_params = tuple(p.reshape(-1) for p in model.parameters)
        self.flat_grads = tuple(layer.grads[k].reshape(-1) for layer in layers for k in ("W", "b"))
        self.codes = np.array([_ACTIVATIONS.get(type(layer.activation), 0) for layer in layers], dtype=np.int64)
        self.alphas = np.array([getattr(layer.activation, "alpha", 0.0) for layer in layers], dtype=dtype)
        c = opt.get_config()
        if opt.name == "sgd":
            self.rule = _NESTEROV if opt.nesterov else _MOMENTUM if opt.momentum else _SGD
            h1, h2 = c["momentum"], 0.0
            velocity = self.flat_grads if self.rule == _SGD else tuple(
                opt._state(p)["velocity"].reshape(-1) for p in model.parameters)
            self.slots = (velocity, velocity)  # the second is not used
        else:
            self.rule = _ADAM if opt.name == "adam" else _RMSPROP
            h1, h2 = (c["beta_1"], c["beta_2"]) if opt.name == "adam" else (c["rho"], 0.0)
            names = ("m", "v") if opt.name == "adam" else ("velocity", "velocity")
            self.slots = tuple(tuple(opt._state(p)[n].reshape(-1) for p in model.parameters) for n in names)
        self.torch_form = c.get("epsilon_form", "keras") == "torch"
        # Scalars in the model's float type, so the compiled loops do not widen float32 to float64.
        self.consts = np.array([1, 0, opt.learning_rate, h1, 1 - h1, h2, 1 - h2, c.get("epsilon", 0), 0, 0],
                               dtype=dtype)
        self.decays = np.array([h1, h2])  # in float64, for Adam's bias corrections 1 − beta^t

    def run(self, x, y, order, first, last, losses, correct):
        """Steps ``first .. last - 1`` of the epoch over ``x[order]``; per-step losses and hits into the arrays.

        Returns the number of steps taken: fewer than asked when a loss is not finite, in which case
        ``losses`` ends with that loss and no parameter was updated by that step.
        """
        opt = self.model.optimizer
        self.consts[2] = opt.learning_rate  # a callback may have changed it since the last epoch
        done = _steps(self.gemm, x, y, order, first, last, self.batch_size, self.scale, self.acts, self.deltas,
                      self.weights, self.weight_grads, self.flat_params, self.flat_grads, self.slots[0],
                      self.slots[1], self.codes, self.alphas, self.rule, self.torch_form, self.consts,
                      self.decays, opt.iterations, losses, correct)
        opt.iterations += done
        return done


@numba.njit(cache=True, error_model="numpy")
def _gemm(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``C ← α op(A) op(B) + β C`` on the first rows of row-major buffers."""
    gemm(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k, alpha,
         a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)


@numba.njit(cache=True, error_model="numpy")
def _activate(z, rows, bias, code, alpha, one, zero):
    """``z ← f(z + b)`` in place on ``z[:rows]``, with the formulas of :mod:`fcnet.activations`."""
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
            z[r, j] = v


@numba.njit(cache=True, error_model="numpy")
def _derivative(d, a, rows, code, alpha, one, zero):
    """``d ← d ⊙ f'(z)`` from the layer's output ``a``, in place on ``d[:rows]``."""
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


@numba.njit(cache=True, error_model="numpy")
def _crossentropy(z, delta, y, rows_idx, rows):
    """Mean ``logsumexp(z) − z_y`` over the batch, ``δ = (softmax(z) − onehot(y)) / n``, and the hits.

    Sums run in float64; the row maximum is subtracted first, so ``exp`` never overflows.
    """
    total, hits = 0.0, 0
    for r in range(rows):
        label = y[rows_idx[r]]
        best = 0
        for j in range(z.shape[1]):
            if z[r, j] > z[r, best]:
                best = j
        top = z[r, 0] if math.isnan(z[r, 0]) else z[r, best]  # a NaN logit must make the loss NaN
        s = 0.0
        for j in range(z.shape[1]):
            e = math.exp(z[r, j] - top)
            delta[r, j] = e
            s += e
        for j in range(z.shape[1]):
            delta[r, j] = (delta[r, j] / s - (1.0 if j == label else 0.0)) / rows
        total += math.log(s) - (z[r, label] - top)
        hits += best == label
    return total / rows, hits


@numba.njit(cache=True, error_model="numpy")
def _update(p, g, s1, s2, rule, torch_form, c, step, inv_c2):
    """One optimizer step on a flat parameter, with the rules of :mod:`fcnet.optimizers`.

    ``c`` holds (1, 0, lr, h1, 1 − h1, h2, 1 − h2, epsilon) where h1, h2 are momentum or beta_1, beta_2
    or rho; ``step`` and ``inv_c2`` are Adam's bias-corrected step size and ``1 / (1 − beta_2^t)``.
    """
    lr, h1, g1, h2, g2, eps = c[2], c[3], c[4], c[5], c[6], c[7]
    if rule == _SGD:
        for i in range(p.size):
            p[i] -= lr * g[i]
    elif rule == _MOMENTUM:
        for i in range(p.size):
            s1[i] = h1 * s1[i] - lr * g[i]
            p[i] += s1[i]
    elif rule == _NESTEROV:
        for i in range(p.size):
            s1[i] = h1 * s1[i] - lr * g[i]
            p[i] += h1 * s1[i] - lr * g[i]
    elif rule == _ADAM:
        for i in range(p.size):
            s1[i] = g1 * g[i] + h1 * s1[i]
            s2[i] = g2 * (g[i] * g[i]) + h2 * s2[i]
            root = np.sqrt(s2[i] * inv_c2) if torch_form else np.sqrt(s2[i])
            p[i] -= step * (s1[i] / (root + eps))
    else:
        for i in range(p.size):
            s1[i] = g1 * (g[i] * g[i]) + h1 * s1[i]
            root = np.sqrt(s1[i]) + eps if torch_form else np.sqrt(s1[i] + eps)
            p[i] -= lr * (g[i] / root)


@numba.njit(cache=True, error_model="numpy")
def _steps(gemm, x, y, order, first, last, batch, scale, acts, deltas, weights, weight_grads, flat_params,
           flat_grads, slots1, slots2, codes, alphas, rule, torch_form, c, decays, t0, losses, correct):
    n, depth = order.size, len(weights)
    one, zero, lr = c[0], c[1], c[2]
    for step in range(first, last):
        lo = step * batch
        rows = min(batch, n - lo)
        rows_idx = order[lo:lo + rows]
        xb = acts[0]
        for r in range(rows):  # gather and scale: Sequential._gather
            src = x[rows_idx[r]]
            for j in range(src.size):
                xb[r, j] = src[j]
            if scale != one:
                for j in range(src.size):
                    xb[r, j] *= scale
        for layer in range(depth):  # forward: Dense.forward_z
            w, z = weights[layer], acts[layer + 1]
            k, m = w.shape
            _gemm(gemm, False, False, rows, m, k, one, acts[layer], k, w, m, zero, z, m)
            code = codes[layer] if layer < depth - 1 else 0  # the output stays logits: fused into the loss
            _activate(z, rows, flat_params[2 * layer + 1], code, alphas[layer], one, zero)
        loss, hits = _crossentropy(acts[depth], deltas[depth - 1], y, rows_idx, rows)
        losses[step - first], correct[step - first] = loss, hits
        if not math.isfinite(loss):
            return step - first
        t = t0 + step - first + 1
        c1, c2 = 1 - decays[0]**t, 1 - decays[1]**t
        c[8] = lr * math.sqrt(c2) / c1 if not torch_form else lr / c1  # Adam's step, in the model's dtype
        c[9] = 1 / c2 if rule == _ADAM else 0
        for layer in range(depth - 1, -1, -1):  # backward: Dense.backward, then the optimizer
            w, a_in, d = weights[layer], acts[layer], deltas[layer]
            k, m = w.shape
            gb = flat_grads[2 * layer + 1]
            gb[:] = zero
            for r in range(rows):
                for j in range(m):
                    gb[j] += d[r, j]
            if layer > 0:
                _gemm(gemm, False, True, rows, k, m, one, d, m, w, m, zero, deltas[layer - 1], k)
                _derivative(deltas[layer - 1], a_in, rows, codes[layer - 1], alphas[layer - 1], one, zero)
            if rule == _SGD:  # W −= lr xᵀδ as one GEMM: dW is never written
                _gemm(gemm, True, False, k, m, rows, -lr, a_in, k, d, m, one, w, m)
            else:
                _gemm(gemm, True, False, k, m, rows, one, a_in, k, d, m, zero, weight_grads[layer], m)
                _update(flat_params[2 * layer], flat_grads[2 * layer], slots1[2 * layer], slots2[2 * layer], rule,
                        torch_form, c, c[8], c[9])
            _update(flat_params[2 * layer + 1], gb, slots1[2 * layer + 1], slots2[2 * layer + 1], rule, torch_form,
                    c, c[8], c[9])
    return last - first
