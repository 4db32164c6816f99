"""Losses as (value, gradient) pairs, reduced as a mean over the batch.

Convention (tested): the loss of a batch is the mean of the per-example
losses, each of which sums over classes (cross-entropy) or averages over
outputs (mean squared error, as Keras does). So every gradient carries a
``1 / n_batch`` factor.

Cross-entropy always works on logits. A model whose output layer is a softmax
and whose loss has ``from_logits=False`` hands the loss the pre-softmax
values ``z``, so softmax and cross-entropy are fused: the loss is
``logsumexp(z) - z_y`` and its gradient is ``(softmax(z) - y) / N``. Neither
``exp`` overflows nor ``log(0)`` can occur for finite logits.
"""

import numpy as np

from .registry import resolve

__all__ = [
    "Loss",
    "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy",
    "MeanSquaredError",
    "log_softmax",
    "get",
    "NAMES",
]


def log_softmax(z):
    """``z - logsumexp(z)`` over the last axis, computed as ``(z - m) - log(sum(exp(z - m)))``."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _one_hot(y, n_classes, dtype):
    """Dense targets of shape ``(n, n_classes)`` from integer labels (one batch at a time)."""
    out = np.zeros((len(y), n_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


class Loss:
    """Base class.

    ``per_example(out, y)`` returns shape ``(n_batch,)``; ``value_and_grad(out, y)``
    returns the batch mean and its gradient with respect to ``out``, shape
    ``(n_batch, n_out)``. ``out`` is the model output, or the logits of a
    softmax output for a cross-entropy with ``from_logits=False``.
    """

    name = ""
    from_logits = True
    sparse = False

    def per_example(self, out, y):
        raise NotImplementedError

    def value_and_grad(self, out, y):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """Mean loss of predictions ``y_pred`` (probabilities unless ``from_logits``), Keras' argument order."""
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if not self.from_logits:
            # log p is a logit vector whose softmax is p again: exact, no clipping.
            with np.errstate(divide="ignore"):
                y_pred = np.log(y_pred)
        return float(self.per_example(y_pred, np.asarray(y_true)).mean())

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


class _Crossentropy(Loss):
    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def per_example(self, z, y):
        logp = log_softmax(z)
        if y.ndim == 1:
            return -logp[np.arange(len(y)), y]
        return -(y * logp).sum(axis=-1)

    def value_and_grad(self, z, y):
        # Compiled twins for integer labels: fcnet.jit._crossentropy; the kernel softmax_ce in fcnet.cuda.
        n = z.shape[0]
        shifted = z - z.max(axis=-1, keepdims=True)  # every exponent <= 0: no overflow
        grad = np.exp(shifted)
        total = grad.sum(axis=-1, keepdims=True)  # >= 1: its log is finite
        grad /= total  # softmax(z)
        if y.ndim == 1:
            rows = np.arange(n)
            value = (np.log(total).sum() - shifted[rows, y].sum()) / n
            grad[rows, y] -= 1
        else:
            y = y.astype(z.dtype, copy=False)
            value = -(y * (shifted - np.log(total))).sum() / n
            # d/dz of -sum(y * log_softmax(z)) is p * sum(y) - y; sum(y) = 1 for one-hot rows.
            grad *= y.sum(axis=-1, keepdims=True)
            grad -= y
        grad *= 1 / n
        return float(value), grad


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy against integer labels ``y`` of shape ``(n_batch,)``: ``logsumexp(z) - z_y``."""

    name = "sparse_categorical_crossentropy"
    sparse = True


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy against one-hot (or soft) targets of shape ``(n_batch, n_classes)``: ``-sum(y log softmax(z))``.

    Integer labels of shape ``(n_batch,)`` are accepted too and one-hot
    encoded per batch, so a data set's targets are never materialised.
    """

    name = "categorical_crossentropy"


class MeanSquaredError(Loss):
    """``mean over outputs of (out - y)²`` per example; integer labels are one-hot encoded per batch."""

    name = "mse"

    def _targets(self, y, out):
        return _one_hot(y, out.shape[1], out.dtype) if y.ndim == 1 else y.astype(out.dtype, copy=False)

    def per_example(self, out, y):
        return ((out - self._targets(y, out)) ** 2).mean(axis=-1)

    def value_and_grad(self, out, y):
        # Compiled twin for float targets: fcnet.jit._squared_error.
        diff = out - self._targets(y, out)
        value = float((diff * diff).sum() / diff.size)
        return value, diff * (2.0 / diff.size)

    def __call__(self, y_true, y_pred):
        return float(self.per_example(np.asarray(y_pred, dtype=np.float64), np.asarray(y_true)).mean())

    def get_config(self):
        return {"name": self.name}


_CLASSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mse": MeanSquaredError,
}
_ALIASES = {"mean_squared_error": "mse", "crossentropy": "sparse_categorical_crossentropy"}
NAMES = tuple(_CLASSES)


def get(identifier):
    """Return a :class:`Loss` from a name, a config dict or an instance."""
    if isinstance(identifier, dict) and identifier.get("name") in ("mse", "mean_squared_error"):
        identifier = {k: v for k, v in identifier.items() if k != "from_logits"}  # the output is compared as is
    return resolve(identifier, Loss, _CLASSES, "loss", _ALIASES)
