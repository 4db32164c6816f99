"""The compiled engine: the NumPy engine's steps compiled with Numba, with no Python between them.

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
per element (each names its reference), and ``tests/test_engines.py`` runs the
contract of :mod:`fcnet.engines` on both and compares them (``float64`` to 1e-12).
Only what :mod:`fcnet.coverage` lists is compiled (the CUDA engine covers the
same), and :func:`unsupported` says why anything else runs on NumPy.
"""

import math

import numba
import numpy as np

from . import blas, coverage
from .blas import NO_TRANS, ROW_MAJOR, TRANS
from .coverage import ADAM, CPU_ACTIVATIONS, MOMENTUM, NESTEROV, SGD, STEP_ROWS, OptimizerRule, check_epoch

__all__ = ["unsupported", "NumbaEngine", "STEP_ROWS", "HYPER", "sample_bilinear"]



def unsupported(model, y):
    """Why ``model`` cannot train on targets ``y`` here (a short phrase), or ``None`` when it can."""
    if not blas.AVAILABLE:
        return "NumPy's OpenBLAS was not found"
    return coverage.unsupported(model, y)


def HYPER(dtype):
    """The record of an optimizer's hyper-parameters, in the model's float type (so float32 stays float32).

    ``one`` and ``zero`` (typed constants); ``tiny``, the smallest normal number; ``lr``; ``h1, h2`` and ``epsilon`` of
    :class:`fcnet.coverage.OptimizerRule`, with ``g1 = 1 − h1`` and ``g2 = 1 − h2``; and, rewritten
    every step, Adam's bias-corrected step size ``step`` and ``inv_c2 = 1 / (1 − beta_2^t)``; ``decay``, the factor
    ``1 − lr · weight_decay`` of decoupled weight decay (1 without).
    """
    names = ("one", "zero", "lr", "h1", "g1", "h2", "g2", "epsilon", "step", "inv_c2", "tiny", "decay")
    return np.dtype([(name, dtype) for name in names])


class NumbaEngine:
    """The compiled engine of :mod:`fcnet.engines` (its interface, :class:`fcnet.engines.Engine`, is not
    inherited: that module imports this one): everything the compiled steps need, gathered once.

    Parameters
    ----------
    model : Sequential
        Compiled, built, and accepted by :func:`unsupported`.
    batch_size : int
    x_dtype, y_dtype : numpy.dtype
    y_ndim : int
        1 for integer labels (cross-entropy), 2 for float targets (squared error).
        Of the inputs (``uint8`` ones are scaled by 1/255, as in :meth:`fcnet.model.Sequential.to_float`)
        and the labels: the code for them is loaded (or compiled) here, not in the first epoch.
    """

    name = "numba"

    def __init__(self, model, batch_size, x_dtype, y_dtype=np.intp, y_ndim=1):
        dtype, opt, layers = model.dtype, model.optimizer, model.layers
        self.model, self.batch_size = model, batch_size
        self.gemm = blas.function("gemm", dtype)
        self.scale = dtype.type(1 / 255 if x_dtype == np.uint8 else 1)
        # Activations: buffer l is the input of layer l, buffer l + 1 its output; deltas likewise per layer.
        widths = [layers[0].input_dim] + [layer.units for layer in layers]
        self.acts = tuple(np.empty((batch_size, w), dtype=dtype) for w in widths)
        self.deltas = tuple(np.empty((batch_size, w), dtype=dtype) for w in widths[1:])
        self.weights = tuple(layer.params["W"] for layer in layers)
        self.weight_grads = tuple(layer.grads["W"] for layer in layers)
        self.flat_params = tuple(p.reshape(-1) for p in model.parameters)
        self.flat_grads = tuple(g.reshape(-1) for g in model.gradients)
        # Dropout of layer l's input (Dense.forward_z): the rate, the kept inputs' scale in the model's dtype
        # (as Dense._draw_mask makes it), and a buffer for the thinned input (the layer below keeps its output,
        # which its derivative needs).
        self.rates = np.array([layer.dropout for layer in layers])
        self.keep = np.array([1 / (1 - layer.dropout) for layer in layers], dtype=dtype)
        self.dropped = tuple(np.empty((batch_size if layer.dropout else 0, w), dtype=dtype)
                             for layer, w in zip(layers, widths))
        self.codes = np.array([CPU_ACTIVATIONS.get(type(layer.activation), 0) for layer in layers], dtype=np.int64)
        # gelu's and swish's derivatives need z: their layers keep it (Dense's needs_z), the others an empty buffer
        self.zs = tuple(np.empty((batch_size if layer.activation.needs_z else 0, layer.units), dtype=dtype)
                        for layer in layers)
        self.alphas = np.array([getattr(layer.activation, "alpha", 0.0) for layer in layers], dtype=dtype)
        rule = OptimizerRule(opt)
        self.rule, self.torch_form, h1, h2 = rule.rule, rule.torch_form, rule.h1, rule.h2
        slots = [self.flat_grads if name is None else tuple(opt.slots(p)[name].reshape(-1) for p in model.parameters)
                 for name in rule.slots]  # a rule that keeps no state is handed the gradients: never written
        self.slots = (slots[0], slots[1] if rule.slots[1] else slots[0])
        self.hyper = np.zeros(1, dtype=HYPER(dtype))
        for name, value in (("one", 1), ("h1", h1), ("g1", 1 - h1), ("h2", h2), ("g2", 1 - h2),
                            ("epsilon", rule.epsilon), ("tiny", np.finfo(dtype).tiny)):
            self.hyper[name] = value
        self.decays = np.array([h1, h2])  # in float64, for Adam's bias corrections 1 − beta^t
        # L2 penalties: 2λ in the model's dtype (regularizers.L2.add_gradient's factor) and λ for the loss term;
        # the clipping options (0: off) in Optimizer.apply_gradients' order.
        lambdas = [layer.kernel_regularizer.l2 if layer.kernel_regularizer else 0.0 for layer in layers]
        self.l2s, self.penalties = np.array([2 * v for v in lambdas], dtype=dtype), np.array(lambdas)
        self.clip = np.array([opt.clipvalue or 0.0, opt.clipnorm or 0.0, opt.global_clipnorm or 0.0])
        self.smoothing = float(getattr(model.loss, "label_smoothing", 0.0))
        self._no_rates = np.zeros(0)
        self.per_call = max(1, STEP_ROWS // batch_size)
        self._losses, self._hits = np.empty(self.per_call), np.empty(self.per_call, dtype=np.int64)
        self._dropout_width = sum(w for layer, w in zip(layers, widths) if layer.dropout)
        self._no_uniforms = np.zeros(0)
        y_empty = np.zeros((0,) if y_ndim == 1 else (0, widths[-1]), y_dtype)
        self._run(np.zeros((0, widths[0]), dtype=x_dtype), y_empty, np.zeros(0, np.intp), 0, 0)

    def _run(self, x, y, order, first, last):
        """Steps ``first .. last - 1`` of the epoch; returns how many updated (fewer when a loss is not finite)."""
        opt = self.model.optimizer
        self.hyper["lr"] = opt.learning_rate  # a callback may have changed it since the last call
        self.hyper["decay"] = 1 - opt.learning_rate * (opt.weight_decay or 0.0)  # as Optimizer.apply_gradients
        lrs = self._no_rates  # a schedule's rate of every step, read as Optimizer.apply_gradients reads it
        if opt.schedule is not None:
            lrs = np.array([opt.schedule(opt.iterations + i) for i in range(last - first)], dtype=np.float64)
        uniforms = self._no_uniforms
        if self._dropout_width:  # the masks' uniforms, as Dense._draw_mask draws them: step by step, layer by layer
            rows = min(last * self.batch_size, len(order)) - first * self.batch_size
            uniforms = self.model.rng.random(rows * self._dropout_width)
        done = _steps(self.gemm, x, y, order, first, last, self.batch_size, self.scale, self.acts, self.deltas,
                      self.weights, self.weight_grads, self.flat_params, self.flat_grads, self.slots[0],
                      self.slots[1], self.codes, self.alphas, self.rule, self.torch_form, self.hyper,
                      self.decays, opt.iterations, self._losses, self._hits, self.rates, self.keep, self.dropped,
                      uniforms, lrs, opt.weight_decay or 0.0, self.l2s, self.penalties, self.clip, self.smoothing,
                      self.zs)
        opt.iterations += done
        if lrs.size and done:
            opt.learning_rate = float(lrs[done - 1])
        return done

    def epoch(self, x, y, order):
        """Train one epoch over ``x[order]``; yields ``(rows, loss, hits)`` per step, as ``engines.Step``."""
        check_epoch(self.model, x, y, order)  # compiled code does not check bounds
        return self._epoch(x, y, order)

    def _epoch(self, x, y, order):
        n, steps = len(x), math.ceil(len(x) / self.batch_size)
        for first in range(0, steps, self.per_call):
            last = min(first + self.per_call, steps)
            done = self._run(x, y, order, first, last)
            # A step whose loss is not finite is reported too (it updated nothing), and ends the epoch.
            for i in range(min(done + 1, last - first)):
                rows = min(self.batch_size, n - (first + i) * self.batch_size)
                yield rows, float(self._losses[i]), int(self._hits[i])
            if done < last - first:
                return


@numba.njit(cache=True, error_model="numpy")
def _gemm(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``C ← α op(A) op(B) + β C`` on the first rows of row-major buffers."""
    gemm(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, alpha,
         a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)


@numba.njit(cache=True, error_model="numpy")
def _erfc(x):
    """``math.erfc`` (the C library's): within 1e-13 of :func:`fcnet.activations.erfc`, Cephes' form in NumPy."""
    return math.erfc(x)


@numba.njit(cache=True, error_model="numpy")
def _activate(z, rows, bias, code, alpha, one, zero, keep_z):
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
                v = v * (0.5 * _erfc(-v * 0.7071067811865476))
            elif code == 6:  # z σ(z)
                keep_z[r, j] = v
                e = np.exp(-abs(v))
                v = v * ((one if v >= zero else e) / (one + e))
            z[r, j] = v


@numba.njit(cache=True, error_model="numpy")
def _derivative(d, a, rows, code, alpha, one, zero, z):
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
                d[r, j] *= u * (np.exp(-0.5 * u * u) * 0.3989422804014327) + 0.5 * _erfc(-u * 0.7071067811865476)
            elif code == 6:  # σ(z) + a (1 − σ(z))
                u = z[r, j]
                e = np.exp(-abs(u))
                s = (one if u >= zero else e) / (one + e)
                d[r, j] *= s + v * (one - s)


@numba.njit(cache=True, error_model="numpy")
def _crossentropy(z, delta, y, rows_idx, rows, eps):
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
def _flush(s, tiny, zero):
    """A state value below the smallest normal number becomes 0.

    Momentum and Adam's first moment decay geometrically wherever the gradient stays 0 (a dead ReLU unit),
    into subnormal numbers, on which x86 arithmetic runs ~100× slower: Adam's epoch of 784-100-10 went from
    0.28 s to 0.55 s once they appeared. Such a value moves no weight (its update is far below half an ulp
    of any weight it could touch), so flushing it changes the state by less than ``tiny`` and the weights
    not at all; the NumPy reference keeps them.
    """
    return zero if abs(s) < tiny else s


@numba.njit(cache=True, error_model="numpy")
def _squared_error(z, delta, y, rows_idx, rows):
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
def _clip(grads, clip):
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
def _update(p, g, s1, s2, rule, torch_form, h):
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
            s1[i] = _flush(h1 * s1[i] - lr * g[i], tiny, zero)
            p[i] += s1[i]
    elif rule == NESTEROV:
        for i in range(p.size):
            s1[i] = _flush(h1 * s1[i] - lr * g[i], tiny, zero)
            p[i] += h1 * s1[i] - lr * g[i]
    elif rule == ADAM:
        for i in range(p.size):
            s1[i] = _flush(g1 * g[i] + h1 * s1[i], tiny, zero)
            s2[i] = _flush(g2 * (g[i] * g[i]) + h2 * s2[i], tiny, zero)
            root = np.sqrt(s2[i] * inv_c2) if torch_form else np.sqrt(s2[i])
            p[i] -= step * (s1[i] / (root + eps))
    else:
        for i in range(p.size):
            s1[i] = _flush(g1 * (g[i] * g[i]) + h1 * s1[i], tiny, zero)
            root = np.sqrt(s1[i]) + eps if torch_form else np.sqrt(s1[i] + eps)
            p[i] -= lr * (g[i] / root)


@numba.njit(cache=True, error_model="numpy")
def _steps(gemm, x, y, order, first, last, batch, scale, acts, deltas, weights, weight_grads, flat_params,
           flat_grads, slots1, slots2, codes, alphas, rule, torch_form, hyper, decays, t0, losses, correct,
           rates, keep, dropped, uniforms, lrs, weight_decay, l2s, penalties, clip, smoothing, zs):
    """Training steps ``first .. last - 1`` of an epoch over ``x[order]``: the engine contract of
    :mod:`fcnet.engines`, step by step as :class:`fcnet.engines.NumpyEngine` takes them. Returns the number
    of steps that updated the parameters; the step after them (if any) had a loss that was not finite.
    Layer ``l`` with dropout (``rates[l] > 0``) reads its input thinned into ``dropped[l]`` by the masks of
    ``uniforms``, consumed in the order they were drawn. ``lrs``: each step's learning rate (a schedule's),
    or empty for the one in ``hyper``; ``l2s``/``penalties``: each kernel's L2 ``2λ``/``λ`` (0: none);
    ``clip``: the clipping options of :func:`_clip`, which hold every update until the backward pass is done
    (global_clipnorm needs every gradient). With clipping the model's gradients are left clipped.
    ``smoothing``: the cross-entropy's label smoothing (0: none); ``zs``: each layer's kept ``z`` (gelu, swish).
    """
    n, depth = order.size, len(weights)
    h = hyper[0]
    one, zero, lr = h.one, h.zero, h.lr
    used = 0  # uniforms consumed
    offsets = np.zeros(depth, dtype=np.int64)  # where each layer's mask of the step starts in uniforms
    defer = clip[0] > 0 or clip[1] > 0 or clip[2] > 0
    for step in range(first, last):
        lo = step * batch
        rows = min(batch, n - lo)
        rows_idx = order[lo:lo + rows]
        xb = acts[0]
        for r in range(rows):  # gather and scale: NumpyEngine._gather
            src = x[rows_idx[r]]
            for j in range(src.size):
                xb[r, j] = src[j]
            if scale != one:
                for j in range(src.size):
                    xb[r, j] *= scale
        masks = used
        for layer in range(depth):  # forward: Dense.forward_z
            w, z = weights[layer], acts[layer + 1]
            k, m = w.shape
            a_in = acts[layer]
            if rates[layer] > 0:  # x̃ = x ⊙ m/(1 − p): Dense._draw_mask, then the product
                a_in = dropped[layer]
                for r in range(rows):
                    for j in range(k):
                        kept = keep[layer] if uniforms[used + r * k + j] >= rates[layer] else zero
                        a_in[r, j] = acts[layer][r, j] * kept
                used += rows * k
            _gemm(gemm, False, False, rows, m, k, one, a_in, k, w, m, zero, z, m)
            code = codes[layer] if layer < depth - 1 else 0  # the output stays logits: fused into the loss
            _activate(z, rows, flat_params[2 * layer + 1], code, alphas[layer], one, zero, zs[layer])
        if y.ndim == 1:  # decided when compiling: a specialisation per kind of target
            loss, hits = _crossentropy(acts[depth], deltas[depth - 1], y, rows_idx, rows, smoothing)
        else:
            loss, hits = _squared_error(acts[depth], deltas[depth - 1], y, rows_idx, rows), 0
        for layer in range(depth):  # Sequential.penalty: λ ΣW² of each penalised kernel, before the update
            if penalties[layer] > 0:
                fw, s = flat_params[2 * layer], 0.0
                for i in range(fw.size):
                    s += float(fw[i]) * float(fw[i])
                loss += penalties[layer] * s
        losses[step - first], correct[step - first] = loss, hits
        if not math.isfinite(loss):  # the contract: check the loss before anything is updated
            return step - first
        if lrs.size:  # the schedule's rate for this step, and weight decay's factor from it
            h.lr = lrs[step - first]
            h.decay = 1 - lrs[step - first] * weight_decay
            lr = h.lr
        t = t0 + step - first + 1
        c1, c2 = 1 - decays[0]**t, 1 - decays[1]**t
        h.step = lr * math.sqrt(c2) / c1 if not torch_form else lr / c1  # Adam's step, in the model's dtype
        h.inv_c2 = 1 / c2 if rule == ADAM else 0
        for layer in range(depth):
            if rates[layer] > 0:
                offsets[layer] = masks
                masks += rows * weights[layer].shape[0]
        for layer in range(depth - 1, -1, -1):  # backward: Dense.backward, then the optimizer
            w, d = weights[layer], deltas[layer]
            a_in = dropped[layer] if rates[layer] > 0 else acts[layer]
            k, m = w.shape
            gb = flat_grads[2 * layer + 1]
            gb[:] = zero
            for r in range(rows):
                for j in range(m):
                    gb[j] += d[r, j]
            if layer > 0:
                below = deltas[layer - 1]
                _gemm(gemm, False, True, rows, k, m, one, d, m, w, m, zero, below, k)
                if rates[layer] > 0:  # dx ⊙ m/(1 − p): a dropped input gets no gradient
                    for r in range(rows):
                        for j in range(k):
                            kept = keep[layer] if uniforms[offsets[layer] + r * k + j] >= rates[layer] else zero
                            below[r, j] *= kept
                _derivative(below, acts[layer], rows, codes[layer - 1], alphas[layer - 1], one, zero, zs[layer - 1])
            if rule == SGD and not defer and l2s[layer] == zero:  # W ← decay·W − lr xᵀδ as one GEMM: no dW
                _gemm(gemm, True, False, k, m, rows, -lr, a_in, k, d, m, h.decay, w, m)
            else:
                _gemm(gemm, True, False, k, m, rows, one, a_in, k, d, m, zero, weight_grads[layer], m)
                if l2s[layer] != zero:  # + 2λW: Dense.backward's kernel_regularizer.add_gradient
                    fw, fg = flat_params[2 * layer], flat_grads[2 * layer]
                    for i in range(fg.size):
                        fg[i] += l2s[layer] * fw[i]
                if not defer:
                    _update(flat_params[2 * layer], flat_grads[2 * layer], slots1[2 * layer], slots2[2 * layer],
                            rule, torch_form, h)
            if not defer:
                _update(flat_params[2 * layer + 1], gb, slots1[2 * layer + 1], slots2[2 * layer + 1], rule,
                        torch_form, h)
        if defer:
            _clip(flat_grads, clip)
            for i in range(len(flat_params)):
                _update(flat_params[i], flat_grads[i], slots1[i], slots2[i], rule, torch_form, h)
    return last - first


@numba.njit(cache=True, parallel=True)
def sample_bilinear(images, affine, z, b_rows, b_cols_t, out):
    """``out[k, i, j]``: image ``k`` sampled bilinearly (0 outside) at ``(a i + b j + t, c i + d j + u)`` from its
    ``affine`` row plus, when ``z`` has entries, its elastic fields ``B_rows z[:, :, 2k] B_colsᵀ`` (row shift) and
    ``B_rows z[:, :, 2k + 1] B_colsᵀ`` (column shift), blurred here (the layout of
    :meth:`fcnet.augment.Augment._displacements`; ``b_cols_t`` is ``B_colsᵀ``), rounded to uint8 —
    :func:`fcnet.augment._sample_numpy` (the reference) as one loop, operation for operation: the blur's sums
    term by term in the same order, in float32 (coordinates are ≥ 0 in the padded frame, so ``int`` is
    ``floor`` there). Blocks of 64 images run on Numba's threads, each blurring its 128 fields at once (the
    larger product's innermost loop runs along all of them, which the compiler can vectorise) into a buffer that
    stays in cache; each value is computed alone, so the result does not depend on the number of threads."""
    n, rows, cols = images.shape
    k_rows, k_cols = z.shape[0], z.shape[1]
    for block in numba.prange((n + 63) // 64):
        first, last = block * 64, min(n, block * 64 + 64)
        padded = np.zeros((rows + 2, cols + 2))  # the picture in a frame of zeros: no test per read
        bj, dj = np.empty(cols), np.empty(cols)
        fields = 2 * (last - first) if k_rows else 0
        half = np.zeros((k_rows, fields * cols), dtype=np.float32)  # z B_colsᵀ of the block's fields: (e, m, j)
        field = np.zeros((rows, fields * cols), dtype=np.float32)  # B_rows z B_colsᵀ: (i, m, j)
        for e in range(k_rows):
            for m in range(fields):
                for g in range(k_cols):
                    weight = z[e, g, 2 * first + m]
                    for j in range(cols):
                        half[e, m * cols + j] += weight * b_cols_t[g, j]
        for i in range(rows):  # the long loop: along every field of the block at once
            for e in range(k_rows):
                weight = b_rows[i, e]
                for x in range(fields * cols):
                    field[i, x] += weight * half[e, x]
        for k in range(first, last):
            for i in range(rows):
                for j in range(cols):
                    padded[i + 1, j + 1] = images[k, i, j]
            a, b, t, c, d, u = affine[k, 0], affine[k, 1], affine[k, 2], affine[k, 3], affine[k, 4], affine[k, 5]
            for j in range(cols):  # the products of a i + b j + t, each rounded once as before: the same sums
                bj[j], dj[j] = b * j, d * j
            f = 2 * (k - first)
            for i in range(rows):
                ai, ci = a * i, c * i
                for j in range(cols):
                    r, s = ai + bj[j] + t, ci + dj[j] + u
                    if fields:
                        r, s = r + float(field[i, f * cols + j]), s + float(field[i, (f + 1) * cols + j])
                    r = max(min(r, rows), -1.0) + 1.0
                    s = max(min(s, cols), -1.0) + 1.0
                    r0, s0 = min(int(r), rows), min(int(s), cols)
                    fr, fs = r - r0, s - s0
                    p, q = padded[r0, s0], padded[r0, s0 + 1]
                    v, w = padded[r0 + 1, s0], padded[r0 + 1, s0 + 1]
                    value = (1 - fr) * ((1 - fs) * p + fs * q) + fr * ((1 - fs) * v + fs * w)
                    out[k, i, j] = min(int(value + 0.5), 255)
