"""Losses as (value, gradient) pairs, reduced as a mean over the batch.

Convention (tested): the loss of a batch is the mean of the per-example
losses, each of which sums over classes (cross-entropy) or averages over
outputs (squared, absolute and Huber errors, binary cross-entropy, as Keras
does). So every gradient carries a ``1 / n_batch`` factor.

Cross-entropy always works on logits. A model whose output layer is a softmax
and whose loss has ``from_logits=False`` hands the loss the pre-softmax
values ``z``, so softmax and cross-entropy are fused: the loss is
``logsumexp(z) - z_y`` and its gradient is ``(softmax(z) - y) / N``. Neither
``exp`` overflows nor ``log(0)`` can occur for finite logits. Binary
cross-entropy is fused with a sigmoid output the same way:
``max(z, 0) − z t + log(1 + exp(−|z|))``, gradient ``(σ(z) − t) / (N · n_out)``.
"""

import numpy as np

from .activations import Sigmoid
from .registry import Registry

__all__ = [
    "Loss",
    "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "log_softmax",
    "get",
    "NAMES",
    "REGRESSION",
    "REGISTRY",
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
    softmax (sigmoid) output for a (binary) cross-entropy with ``from_logits=False``.

    ``fused`` names the output activation whose logits the loss reads (None: it reads the output as it is);
    ``elementwise`` losses compare each output with a target of its own, so a model with one output takes
    targets of shape ``(n_batch,)`` as that column.
    """

    name = ""
    from_logits = True
    sparse = False
    fused = None
    elementwise = False

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
    """``label_smoothing`` ε (Keras' and PyTorch's): the targets become ``(1 − ε) y + ε / K`` over ``K`` classes
    (integer labels ``y`` taken as one-hot rows), so a row's loss is ``(1 − ε)(logsumexp(z) − z_y) +
    ε · mean_j(logsumexp(z) − z_j)`` and its gradient ``softmax(z) − (1 − ε) onehot(y) − ε/K`` (divided by n)."""

    fused = "softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0):
        self.from_logits = bool(from_logits)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not (
                0 <= label_smoothing < 1):
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def per_example(self, z, y):
        logp = log_softmax(z)
        eps = self.label_smoothing
        if y.ndim == 1:
            picked = -logp[np.arange(len(y)), y]
            return picked if not eps else (1 - eps) * picked - eps * logp.mean(axis=-1)
        return -(((1 - eps) * y + eps / z.shape[-1]) * logp).sum(axis=-1)

    def value_and_grad(self, z, y):
        # Compiled twins for integer labels: fcnet.engines.numba_kernels.crossentropy; the kernels head_forward (outputs
        # of at most 32 units) and softmax_ce in fcnet.engines.cuda.
        n, k = z.shape
        eps = self.label_smoothing
        shifted = z - z.max(axis=-1, keepdims=True)  # every exponent <= 0: no overflow
        grad = np.exp(shifted)
        total = grad.sum(axis=-1, keepdims=True)  # >= 1: its log is finite
        grad /= total  # softmax(z)
        if y.ndim == 1:
            rows = np.arange(n)
            picked = shifted[rows, y].sum()
            value = (np.log(total).sum() - (picked if not eps else (1 - eps) * picked + eps / k * shifted.sum())) / n
            grad[rows, y] -= 1 - eps
            if eps:
                grad -= eps / k
        else:
            y = y.astype(z.dtype, copy=False)
            if eps:
                y = (1 - eps) * y + eps / k
            value = -(y * (shifted - np.log(total))).sum() / n
            # d/dz of -sum(y * log_softmax(z)) is p * sum(y) - y; sum(y) = 1 for one-hot rows.
            grad *= y.sum(axis=-1, keepdims=True)
            grad -= y
        grad *= 1 / n
        return float(value), grad

    def get_config(self):
        return {**super().get_config(), **({"label_smoothing": self.label_smoothing} if self.label_smoothing else {})}


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


class _Elementwise(Loss):
    """A penalty per output, averaged over the outputs (Keras' reduction); integer labels are one-hot encoded per
    batch. Subclasses give the penalty ``f(out, t)`` and its derivative with respect to ``out``."""

    elementwise = True

    def _targets(self, y, out):
        return _one_hot(y, out.shape[1], out.dtype) if y.ndim == 1 else y.astype(out.dtype, copy=False)

    def per_example(self, out, y):
        return self.penalty(out, self._targets(y, out)).mean(axis=-1)

    def value_and_grad(self, out, y):
        t = self._targets(y, out)
        value = float(self.penalty(out, t).sum() / out.size)
        grad = self.derivative(out, t)
        grad *= 1 / out.size
        return value, grad

    def __call__(self, y_true, y_pred):
        y_pred, y_true = _columns(y_pred, y_true)
        return float(self.per_example(y_pred, y_true).mean())

    def get_config(self):
        return {"name": self.name}


def _columns(y_pred, y_true):
    """Float predictions, and targets of shape ``(n,)`` as the column of a one-output model's ``(n, 1)``."""
    y_pred, y_true = np.asarray(y_pred, dtype=np.float64), np.asarray(y_true)
    if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_true = y_true[:, None]
    return y_pred, y_true


class MeanSquaredError(_Elementwise):
    """``(out − t)²``; its derivative ``2 (out − t)``."""

    name = "mse"

    def penalty(self, out, t):
        diff = out - t
        return diff * diff

    def derivative(self, out, t):
        # Compiled twin for float targets: fcnet.engines.numba_kernels.squared_error.
        diff = out - t
        diff *= 2
        return diff


class MeanAbsoluteError(_Elementwise):
    """``|out − t|``; its derivative ``sign(out − t)``, 0 where they are equal (as torch and TensorFlow)."""

    name = "mae"

    def penalty(self, out, t):
        return np.abs(out - t)

    def derivative(self, out, t):
        return np.sign(out - t)


class Huber(_Elementwise):
    """Keras' Huber loss: ``½ d²`` for ``|d| ≤ delta``, else ``delta (|d| − ½ delta)``, with ``d = out − t``; its
    derivative is ``d`` clipped to ``[−delta, delta]`` (continuous, so no kink at ``|d| = delta``)."""

    name = "huber"

    def __init__(self, delta=1.0):
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < np.inf:
            raise ValueError(f"huber delta must be a number > 0, got {delta!r}")
        self.delta = float(delta)

    def penalty(self, out, t):
        d = np.abs(out - t)
        return np.where(d <= self.delta, 0.5 * d * d, self.delta * (d - 0.5 * self.delta))

    def derivative(self, out, t):
        return np.clip(out - t, -self.delta, self.delta)

    def get_config(self):
        return {"name": self.name, "delta": self.delta}


class BinaryCrossentropy(_Elementwise):
    """Keras' binary cross-entropy of targets ``t`` in [0, 1] (one column per independent yes/no output).

    On logits ``z`` (a sigmoid output fused into the loss, or ``from_logits=True``):
    ``max(z, 0) − z t + log(1 + exp(−|z|))``, which is ``−t log σ(z) − (1 − t) log(1 − σ(z))`` without ``exp``
    overflowing or ``log(0)``; its derivative is ``σ(z) − t``.
    """

    name = "binary_crossentropy"
    fused = "sigmoid"

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def penalty(self, z, t):
        return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))

    def derivative(self, z, t):
        grad = Sigmoid().forward(z)
        grad -= t
        return grad

    def __call__(self, y_true, y_pred):
        """Mean loss of probabilities ``y_pred`` (logits if ``from_logits``): ``−t log p − (1 − t) log(1 − p)``,
        exact (infinite for a confident wrong answer), not clipped."""
        y_pred, t = _columns(y_pred, y_true)
        t = self._targets(t, y_pred)
        if self.from_logits:
            return float(self.penalty(y_pred, t).mean())
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = -(np.where(t > 0, t * np.log(y_pred), 0) + np.where(t < 1, (1 - t) * np.log1p(-y_pred), 0))
        return float(loss.mean())

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


REGISTRY = Registry(
    "loss", (SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError,
             MeanAbsoluteError, Huber),
    aliases={"mean_squared_error": "mse", "mean_absolute_error": "mae", "huber_loss": "huber",
             "crossentropy": "sparse_categorical_crossentropy"})
REGRESSION = ("mse", "mae", "huber")  # the losses that read the output as it is
NAMES = tuple(REGISTRY)


def get(identifier):
    """Return a :class:`Loss` from a name, a config dict or an instance."""
    if isinstance(identifier, dict) and identifier.get("name") in ("mse", "mean_squared_error"):
        identifier = {k: v for k, v in identifier.items() if k != "from_logits"}  # the output is compared as is
    return REGISTRY.get(identifier, Loss)
