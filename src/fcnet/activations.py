"""Element-wise activations as forward/backward pairs.

Each activation is stateless: ``forward(z)`` returns ``a = f(z)`` and
``backward(da, z, a)`` returns ``dz = da * f'(z)`` (for softmax, the
Jacobian-vector product), using whichever of ``z`` or ``a`` is cheaper.
The owning layer caches ``z`` and ``a``. See ``docs/backprop.md``.
"""

import numpy as np

__all__ = ["Activation", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "get", "NAMES"]


class Activation:
    """Base class: ``a = f(z)`` with ``z, a`` of shape ``(n_batch, units)``."""

    name = ""

    def forward(self, z):
        raise NotImplementedError

    def backward(self, da, z, a):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}


class Linear(Activation):
    """Identity, ``f(z) = z``: the output layer of a ``from_logits`` model."""

    name = "linear"

    def forward(self, z):
        return z

    def backward(self, da, z, a):
        return da


class ReLU(Activation):
    """``f(z) = max(z, 0)``; ``f'(0)`` is taken as 0, like PyTorch and Keras."""

    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, da, z, a):
        return da * (z > 0)


class LeakyReLU(Activation):
    """``f(z) = z`` for ``z > 0`` else ``alpha * z`` (Keras' default ``alpha = 0.2``)."""

    name = "leaky_relu"

    def __init__(self, alpha=0.2):
        self.alpha = float(alpha)

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def backward(self, da, z, a):
        return np.where(z > 0, da, self.alpha * da)

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


class Sigmoid(Activation):
    """``f(z) = 1 / (1 + exp(-z))``, ``f' = a (1 - a)``; written to never overflow exp."""

    name = "sigmoid"

    def forward(self, z):
        # exp of a non-positive number only: exp(-|z|) in (0, 1].
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, da, z, a):
        return da * a * (1 - a)


class Tanh(Activation):
    """``f(z) = tanh(z)``, ``f' = 1 - a²``."""

    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, da, z, a):
        return da * (1 - a * a)


class Softmax(Activation):
    """``a_i = exp(z_i - max z) / sum_j exp(z_j - max z)`` over the last axis.

    Subtracting the row maximum keeps ``exp`` in (0, 1]: no overflow for any
    finite logits. The backward is the Jacobian-vector product
    ``dz = a * (da - sum(da * a))``; a softmax output followed by cross-entropy
    never runs it, the model uses the fused ``(p - y) / N`` instead.
    """

    name = "softmax"

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, da, z, a):
        return a * (da - (da * a).sum(axis=-1, keepdims=True))


_CLASSES = {cls.name: cls for cls in (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax)}
NAMES = tuple(_CLASSES)


def get(identifier):
    """Return an :class:`Activation` from a name, a config dict, ``None`` (linear) or an instance."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        return _lookup(config.pop("name"))(**config)
    return _lookup(identifier)()


def _lookup(name):
    try:
        return _CLASSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(NAMES)}") from None
