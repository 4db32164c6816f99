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
per element (each names its reference), and ``tests/engines/test_parity.py``
compares every registered formula with them (``float64`` to 1e-12). What is
compiled is :data:`SUPPORT`; :func:`unsupported` says why anything else runs on NumPy.
"""

import bisect
import collections
import math

import numba
import numpy as np

from .. import blas
from . import base
from .base import ADAM, SGD, STEP_ROWS, Engine, OptimizerRule, Support, check_epoch
from .numba_kernels import activate, clip, crossentropy, derivative, gemm, squared_error, update

__all__ = ["unsupported", "NumbaEngine", "SUPPORT", "HYPER"]

# The codes of _activate and _derivative (0: the output's logits, fused into the loss).
SUPPORT = Support(
    "numba",
    hidden={"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5, "swish": 6},
    outputs={"softmax": 0, "linear": 0},
    losses={"sparse_categorical_crossentropy": "labels", "categorical_crossentropy": "labels", "mse": "values"},
    optimizers=frozenset({"sgd", "adam", "adamw", "rmsprop"}),
    options=frozenset({"dropout", "l2", "weight_decay", "clipvalue", "clipnorm", "global_clipnorm", "schedule",
                       "label_smoothing"}),
)


def unsupported(model, y):
    """Why ``model`` cannot train on targets ``y`` here (a short phrase), or ``None`` when it can."""
    if not blas.AVAILABLE:
        return "NumPy's OpenBLAS was not found"
    return base.unsupported(model, y, SUPPORT)


def HYPER(dtype):
    """The record of an optimizer's hyper-parameters, in the model's float type (so float32 stays float32).

    ``one`` and ``zero`` (typed constants); ``tiny``, the smallest normal number; ``lr``; ``h1, h2`` and ``epsilon`` of
    :class:`fcnet.engines.base.OptimizerRule`, with ``g1 = 1 − h1`` and ``g2 = 1 − h2``; and, rewritten
    every step, Adam's bias-corrected step size ``step`` and ``inv_c2 = 1 / (1 − beta_2^t)``; ``decay``, the factor
    ``1 − lr · weight_decay`` of decoupled weight decay (1 without).
    """
    names = ("one", "zero", "lr", "h1", "g1", "h2", "g2", "epsilon", "step", "inv_c2", "tiny", "decay")
    return np.dtype([(name, dtype) for name in names])


class NumbaEngine(Engine):
    """The compiled engine: everything the compiled steps need, gathered once.

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
        self.codes = np.array([SUPPORT.hidden[layer.activation.name] if i < len(layers) - 1 else
                               SUPPORT.outputs[layer.activation.name] for i, layer in enumerate(layers)],
                              dtype=np.int64)
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
        self.network = Network(self.acts, self.deltas, self.weights, self.weight_grads, self.flat_params,
                               self.flat_grads, self.slots[0], self.slots[1], self.dropped, self.zs)
        self.layers = Layers(self.codes, self.alphas, self.rates, self.keep, self.l2s, self.penalties)
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
        optimizer = Update(self.rule, self.torch_form, self.hyper, self.decays, opt.iterations, lrs,
                           opt.weight_decay or 0.0, self.clip)
        done = _steps(self.gemm, x, y, order, first, last, self.batch_size, self.scale, self.network, self.layers,
                      optimizer, uniforms, self.smoothing, self._losses, self._hits)
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
        stops = sorted({s + 1 for s in self.sync if 0 <= s < steps}) + [steps]  # a call ends after each sync step
        first = 0
        while first < steps:
            last = min(first + self.per_call, stops[bisect.bisect_right(stops, first)])
            done = self._run(x, y, order, first, last)
            # A step whose loss is not finite is reported too (it updated nothing), and ends the epoch.
            for i in range(min(done + 1, last - first)):
                rows = min(self.batch_size, n - (first + i) * self.batch_size)
                yield rows, float(self._losses[i]), int(self._hits[i])
            if done < last - first:
                return
            first = last


# The arguments of _steps, bundled. Network: per layer, the activation and delta buffers, the weights and their
# gradients, the thinned inputs of dropout and the kept z of gelu and swish; per parameter (W1, b1, W2, ...), the
# flat parameters, gradients and the optimizer's two state arrays.
Network = collections.namedtuple("Network", "acts deltas weights weight_grads params grads slots1 slots2 dropped zs")
# Per layer: the activation codes and leaky ReLU's alphas, dropout's rates and kept scales, L2's 2λ and λ.
Layers = collections.namedtuple("Layers", "codes alphas rates keep l2s penalties")
# The optimizer: its rule, epsilon form, HYPER record, the betas for Adam's bias corrections (float64), the
# iterations done, each step's rate of a schedule (or none), decoupled weight decay, the clipping options.
Update = collections.namedtuple("Update", "rule torch_form hyper decays t0 lrs weight_decay limits")


@numba.njit(cache=True, error_model="numpy")
def _steps(sgemm, x, y, order, first, last, batch, scale, network, layers, optimizer, uniforms, smoothing, losses,
           correct):
    """Training steps ``first .. last - 1`` of an epoch over ``x[order]``: the engine contract of
    :mod:`fcnet.engines.base`, step by step as :class:`fcnet.engines.numpy.NumpyEngine` takes them. Returns the
    number of steps that updated the parameters; the step after them (if any) had a loss that was not finite; each
    step's loss and hits go to ``losses`` and ``correct``. ``network``, ``layers`` and ``optimizer`` are the records
    :class:`Network`, :class:`Layers` and :class:`Update`.
    Layer ``l`` with dropout (``rates[l] > 0``) reads its input thinned into ``dropped[l]`` by the masks of
    ``uniforms``, consumed in the order they were drawn. ``lrs``: each step's learning rate (a schedule's),
    or empty for the one in ``hyper``; ``l2s``/``penalties``: each kernel's L2 ``2λ``/``λ`` (0: none);
    ``limits``: the clipping options of :func:`fcnet.engines.numba_kernels.clip`, which hold every update until
    the backward pass is done (global_clipnorm needs every gradient). With clipping the model's gradients are left
    clipped. ``smoothing``: the cross-entropy's label smoothing (0: none); ``zs``: each layer's kept ``z``.
    """
    acts, deltas, weights, weight_grads = network.acts, network.deltas, network.weights, network.weight_grads
    flat_params, flat_grads, slots1, slots2 = network.params, network.grads, network.slots1, network.slots2
    dropped, zs = network.dropped, network.zs
    codes, alphas, rates, keep, l2s, penalties = (layers.codes, layers.alphas, layers.rates, layers.keep, layers.l2s,
                                                  layers.penalties)
    rule, torch_form, hyper, decays = optimizer.rule, optimizer.torch_form, optimizer.hyper, optimizer.decays
    t0, lrs, weight_decay, limits = optimizer.t0, optimizer.lrs, optimizer.weight_decay, optimizer.limits
    n, depth = order.size, len(weights)
    h = hyper[0]
    one, zero, lr = h.one, h.zero, h.lr
    used = 0  # uniforms consumed
    offsets = np.zeros(depth, dtype=np.int64)  # where each layer's mask of the step starts in uniforms
    defer = limits[0] > 0 or limits[1] > 0 or limits[2] > 0
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
            gemm(sgemm, False, False, rows, m, k, one, a_in, k, w, m, zero, z, m)
            code = codes[layer] if layer < depth - 1 else 0  # the output stays logits: fused into the loss
            activate(z, rows, flat_params[2 * layer + 1], code, alphas[layer], one, zero, zs[layer])
        if y.ndim == 1:  # decided when compiling: a specialisation per kind of target
            loss, hits = crossentropy(acts[depth], deltas[depth - 1], y, rows_idx, rows, smoothing)
        else:
            loss, hits = squared_error(acts[depth], deltas[depth - 1], y, rows_idx, rows), 0
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
                gemm(sgemm, False, True, rows, k, m, one, d, m, w, m, zero, below, k)
                if rates[layer] > 0:  # dx ⊙ m/(1 − p): a dropped input gets no gradient
                    for r in range(rows):
                        for j in range(k):
                            kept = keep[layer] if uniforms[offsets[layer] + r * k + j] >= rates[layer] else zero
                            below[r, j] *= kept
                derivative(below, acts[layer], rows, codes[layer - 1], alphas[layer - 1], one, zero, zs[layer - 1])
            if rule == SGD and not defer and l2s[layer] == zero:  # W ← decay·W − lr xᵀδ as one GEMM: no dW
                gemm(sgemm, True, False, k, m, rows, -lr, a_in, k, d, m, h.decay, w, m)
            else:
                gemm(sgemm, True, False, k, m, rows, one, a_in, k, d, m, zero, weight_grads[layer], m)
                if l2s[layer] != zero:  # + 2λW: Dense.backward's kernel_regularizer.add_gradient
                    fw, fg = flat_params[2 * layer], flat_grads[2 * layer]
                    for i in range(fg.size):
                        fg[i] += l2s[layer] * fw[i]
                if not defer:
                    update(flat_params[2 * layer], flat_grads[2 * layer], slots1[2 * layer], slots2[2 * layer],
                            rule, torch_form, h)
            if not defer:
                update(flat_params[2 * layer + 1], gb, slots1[2 * layer + 1], slots2[2 * layer + 1], rule,
                        torch_form, h)
        if defer:
            clip(flat_grads, limits)
            for i in range(len(flat_params)):
                update(flat_params[i], flat_grads[i], slots1[i], slots2[i], rule, torch_form, h)
    return last - first
