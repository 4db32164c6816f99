"""The reference engine: each step through the layers' own ``forward``/``backward`` and the optimizer.

It covers every registered formula and option by definition (they are its code), so it declares no
:class:`~fcnet.engines.base.Support`; the compiled engines are proven equal to it.
"""

import math

import numpy as np

from .base import Engine, Step

__all__ = ["NumpyEngine"]


class NumpyEngine(Engine):
    """The reference: each step through the layers' own ``forward``/``backward`` and the optimizer.

    Parameters
    ----------
    model : Sequential
        Compiled and built.
    batch_size : int
    class_weights : ndarray, shape (n_classes,), optional
        Each example's loss multiplied by its class's weight.
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
