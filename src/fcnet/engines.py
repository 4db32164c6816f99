"""Training engines: who runs the steps of an epoch. One contract, three implementations: the NumPy
reference here, :mod:`fcnet.jit` (compiled by Numba, CPU) and :mod:`fcnet.cuda` (CuPy, an NVIDIA GPU).

The contract, which every engine follows and ``tests/test_engines.py`` checks on each one present:

1. **Choice, once per fit.** :func:`make_engine` picks and builds the engine when ``fit`` starts
   (``"auto"``: the compiled CPU engine when Numba is installed and covers the model, else NumPy; the
   GPU only when asked for, as PyTorch's ``device``) and the same engine, with the same buffers, trains
   every epoch of that ``fit``.
2. **Batches.** :meth:`Engine.epoch` takes ``ceil(n / batch_size)`` steps over ``x[order]``: step ``i``
   trains rows ``order[i * batch_size:(i + 1) * batch_size]``, the last, partial batch included.
   ``uint8`` inputs are scaled by 1/255 batch by batch (:meth:`fcnet.model.Sequential.to_float`).
3. **A step** computes the forward pass and the batch loss (the mean over its rows), **checks that the
   loss is finite, then** runs the backward pass and one optimizer update (``optimizer.iterations``
   grows by one). A non-finite loss ends the epoch at that step *before* anything is updated: the
   parameters, the optimizer's state and its iteration count are those of the previous step, on both
   engines, and the caller (:func:`fcnet.training.train_epoch`) raises :class:`~fcnet.errors.DivergenceError`.
4. **Randomness.** Engines draw nothing: the only random numbers of training are the initial weights
   and one ``model.rng.permutation(n)`` per epoch, drawn by ``fit`` (none when ``shuffle=False``), so
   both engines consume the generator identically and a seed fixes a run on either.
5. **What is reported.** :meth:`Engine.epoch` yields one :class:`Step` per step, in order: its row count,
   its loss and its number of correct predictions (argmax of the output equals the label; 0 when the
   model has no metrics). ``fit`` calls every callback's ``on_batch_end(step, {"loss": loss})`` once per
   step, in order, on both engines; the epoch's ``loss`` and ``accuracy`` are the row-weighted means.
   After a step ``model.gradients`` holds that step's gradients on the NumPy engine; the compiled engine
   leaves the weight gradients of plain SGD unwritten (it adds ``−lr · xᵀδ`` into ``W`` with one GEMM),
   and the CUDA engine keeps its gradients on the GPU.
6. **When changes are seen.** The NumPy engine reads ``optimizer.learning_rate`` at every step; the
   compiled engine at every call of up to :data:`fcnet.coverage.STEP_ROWS` rows, and it runs a call's
   steps before their ``on_batch_end`` calls; the CUDA engine reads it at the start of each epoch, runs
   chunks of that many rows ahead of their ``on_batch_end`` calls, and holds the weights on the GPU until
   the epoch ends (or stops). So a callback that changes the learning rate or the weights in
   ``on_epoch_begin`` or ``on_epoch_end`` is seen identically by all; one that changes them (or reads
   the weights) inside ``on_batch_end`` is not, and a per-step schedule belongs in the optimizer.
"""

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Engine", "NumpyEngine", "Step", "make_engine", "choose_engine", "ENGINES"]

ENGINES = ("auto", "numpy", "numba", "cuda")


class Step(NamedTuple):
    """What one training step reports: rows trained, batch loss, correct predictions."""

    rows: int
    loss: float
    hits: int


class Engine:
    """The interface: ``name``, ``model``, ``batch_size`` and :meth:`epoch`; built by :func:`make_engine`."""

    name = ""
    model = None
    batch_size = 0

    def epoch(self, x, y, order):
        """Train one epoch over ``x[order]`` (checked inputs and targets); yield a :class:`Step` per step."""
        raise NotImplementedError


class NumpyEngine(Engine):
    """The reference: each step through the layers' own ``forward``/``backward`` and the optimizer.

    Parameters
    ----------
    model : Sequential
        Compiled and built.
    batch_size : int
    """

    name = "numpy"

    def __init__(self, model, batch_size, class_weights=None):
        self.model, self.batch_size, self.class_weights = model, batch_size, class_weights
        self._raw = self._float = None  # the batch as gathered, and as model floats: reused every step

    def _gather(self, x, idx):
        """Rows ``idx`` of ``x`` as model floats: one gather and one conversion, into reused buffers."""
        n = len(idx)
        if self._raw is None or self._raw.dtype != x.dtype or self._raw.shape[1] != x.shape[1]:
            self._raw = np.empty((self.batch_size, x.shape[1]), dtype=x.dtype)
            self._float = np.empty((self.batch_size, x.shape[1]), dtype=self.model.dtype)
        raw = np.take(x, idx, axis=0, out=self._raw[:n])
        return self.model.to_float(raw, out=self._float[:n])

    def epoch(self, x, y, order):
        model = self.model
        for start in range(0, len(x), self.batch_size):
            idx = order[start:start + self.batch_size]
            yb = y[idx]
            weights = None if self.class_weights is None else self.class_weights[yb]
            loss, out = model.forward_backward(self._gather(x, idx), yb, weights)
            hits = model.count_correct(out, yb, training=True) if model.metrics else 0
            if not math.isfinite(loss):  # contract, point 3: check before updating
                yield Step(len(idx), loss, hits)
                return
            model.apply_gradients()
            yield Step(len(idx), loss, hits)


def choose_engine(model, y, engine="auto", weighted=False):
    """The name of the engine that trains ``model`` on checked targets ``y``: ``"numba"``, ``"cuda"`` or ``"numpy"``.

    ``"auto"`` takes the compiled loop of :mod:`fcnet.jit` when Numba is installed and covers the model,
    else NumPy; ``"numba"`` and ``"cuda"`` insist (ValueError saying why they cannot); ``"numpy"`` is the
    reference. ``weighted``: the loss is weighted per example (class weights), which only NumPy does.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "numpy":
        return engine
    if engine == "cuda":
        from . import cuda

        reason = cuda.unavailable() or ("class weights are not compiled" if weighted else cuda.unsupported(model, y))
        if reason:
            raise ValueError(f"engine 'cuda' cannot train this model: {reason}")
        return engine
    try:
        from . import jit
    except ImportError:
        if engine == "numba":
            raise ValueError("engine 'numba' needs Numba: pip install 'fcnet[fast]'") from None
        return "numpy"
    reason = "class weights are not compiled" if weighted else jit.unsupported(model, y)
    if reason and engine == "numba":
        raise ValueError(f"engine 'numba' cannot train this model: {reason}")
    return "numpy" if reason else "numba"


def make_engine(model, x, y, batch_size, engine="auto", class_weights=None):
    """Choose (:func:`choose_engine`) and build the engine for ``model`` and checked inputs ``x``, targets ``y``.

    ``class_weights`` is an array of one weight per class (see ``fit(class_weight=...)``). The compiled
    engines load (or, the first time, compile) their code here, outside any timed epoch; the CUDA engine
    also uploads ``x`` and ``y`` and captures its graphs.
    """
    name = choose_engine(model, y, engine, weighted=class_weights is not None)
    if name == "numpy":
        return NumpyEngine(model, batch_size, class_weights)
    if name == "cuda":
        from .cuda import CudaEngine

        return CudaEngine(model, batch_size, x, y)
    from .jit import NumbaEngine

    return NumbaEngine(model, batch_size, x.dtype, y.dtype, y.ndim)
