"""The CUDA engine: the compiled engine's steps on an NVIDIA GPU, through CuPy (``pip install 'fcnet[cuda]'``).

The same steps as :mod:`fcnet.engines.numba` (and the NumPy reference it transcribes), for what :data:`SUPPORT`
lists: the training set lives on the GPU as it was given (``uint8`` images stay
``uint8``) and each batch is gathered and scaled there; the matrix products are cuBLAS GEMMs on a
handle of the engine's own (TF32 only where CuPy's own switch ``CUPY_TF32=1`` asks for it); the
element-wise work is fused kernels written out in ``kernels.cu`` beside this file — the batch gather, bias +
activation, the softmax cross-entropy with its gradient and the batch loss, the activation derivative with the
bias gradient, and one optimizer update of all the parameters. An output layer of at most :data:`HEAD_MAX` units (a
classifier's) takes no GEMM: its products are too small to fill a GPU, so two kernels do all its work, a
block per row forward (logits, softmax cross-entropy, its gradient) and a warp per input column backward
(the weight gradient, and the delta and bias gradient of the layer below, the activation derivative
applied). A layer's weight gradient is computed on a side stream while the main one carries the error
down to the layer below. A chunk of up to
:data:`fcnet.engines.base.STEP_ROWS` rows of steps is captured once in a CUDA graph and replayed, and the
next chunk is queued before the last one's losses are read, so the CPU does not pace the GPU.

The engine contract of :mod:`fcnet.engines.base` holds: the kernel that sums the batch loss (softmax_ce, or
head_backward) raises a flag on the GPU when a step's loss is not finite, and every update kernel of that step
and after it reads the flag and changes nothing. The epoch's order is drawn on the host from the model's
generator, as on the other engines (so a seed gives the same run everywhere), and is uploaded once per epoch.
The parameters and the optimizer's state are uploaded at the start of each epoch and copied back at its end,
so callbacks, checkpoints and ``save`` see the model as on any engine.
"""

import functools
import math
import warnings
from collections import deque
from pathlib import Path

import numpy as np

from .. import base
from ..base import STEP_ROWS, Engine, OptimizerRule, Support, check_epoch
from .cublas import Gemm

__all__ = ["unavailable", "unsupported", "CudaEngine", "forward_batches", "loss_and_gradients", "SUPPORT",
           "kernel_names", "SOURCE", "HEAD_MAX"]

# The codes of the kernels' activate and derive (0: the output's logits, fused into the loss).
SUPPORT = Support(
    "cuda",
    hidden={"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4},
    outputs={"softmax": 0, "linear": 0},
    losses={"sparse_categorical_crossentropy": "labels", "categorical_crossentropy": "labels"},
    optimizers=frozenset({"sgd", "adam", "rmsprop"}),
    options=frozenset(),
)

_BLOCK = 256
HEAD_MAX = 32  # outputs of at most this many units take the fused head kernels (HEAD_MAX in the source)
_H2D, _D2H, _D2D = 1, 2, 3  # cudaMemcpyKind
_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.uint8): "unsigned char"}

SOURCE = (Path(__file__).parent / "kernels.cu").read_text()  # the kernels, read when the engine loads


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
    """Why ``model`` cannot train on targets ``y`` on the GPU (a short phrase), or ``None``: :data:`SUPPORT`."""
    return base.unsupported(model, y, SUPPORT)


def kernel_names(dtype, x_dtype):
    """``{kernel: its instantiation in SOURCE}`` for model floats ``dtype`` and inputs ``x_dtype``."""
    t, x = _TYPES[np.dtype(dtype)], _TYPES[np.dtype(x_dtype)]
    return {"gather": f"gather<{t}, {x}>", "bias_act": f"bias_act<{t}>", "derivative": f"derivative<{t}>",
            "softmax_ce": f"softmax_ce<{t}>", "head_forward": f"head_forward<{t}>",
            "head_backward": f"head_backward<{t}>", "update": f"update<{t}>"}


@functools.cache
def _kernels(dtype, x_dtype):
    """The compiled kernels for model floats ``dtype`` and inputs ``x_dtype`` (NVRTC, cached by CuPy on disk)."""
    names = kernel_names(dtype, x_dtype)
    # No fused multiply-adds: each rounding is the one NumPy makes, so float64 agrees to the last bits.
    module = _cupy().RawModule(code=SOURCE, options=("--fmad=false",), name_expressions=tuple(names.values()))
    return {key: module.get_function(name) for key, name in names.items()}


def _blocks(size):
    return max(1, min(math.ceil(size / _BLOCK), 8192))


def _grid2(rows, cols):
    return (max(1, min(math.ceil(cols / _BLOCK), 64)), max(1, min(rows, 65535)))


class CudaEngine(Engine):
    """The CUDA engine.

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
        self.gemm, self.side_gemm = Gemm(dtype, self.stream), Gemm(dtype, self.side)
        self.fork, self.join = cp.cuda.Event(disable_timing=True), cp.cuda.Event(disable_timing=True)
        self.rule = OptimizerRule(model.optimizer)
        self.codes = [SUPPORT.hidden[layer.activation.name] if i < len(layers) - 1 else
                      SUPPORT.outputs[layer.activation.name] for i, layer in enumerate(layers)]
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
    reason = unavailable() or base.unsupported(model, None, SUPPORT, training=False)
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
            code = SUPPORT.outputs[layer.activation.name] if i == last else SUPPORT.hidden[layer.activation.name]
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
