"""Activations as forward/backward pairs whose derivative is written through the output.

Every activation here has a derivative that can be computed from its output
``a = f(z)`` alone — ``[a > 0]`` for the ReLUs, ``a (1 - a)``, ``1 - a²``, the
softmax Jacobian — so a layer keeps ``a`` only and, while training, applies
the activation in place over ``z`` (``forward(z, out=z)``), saving a buffer
and a pass over memory per layer. ``backward(da, a)`` returns
``dz = da ⊙ f'(z)`` (for softmax the Jacobian-vector product) and may
overwrite ``da``, which the layer owns. See ``docs/backprop.md``. The compiled
engine's copies of these formulas are ``fcnet.jit._activate`` (forward, for
linear, ReLU, leaky ReLU, sigmoid, tanh) and ``fcnet.jit._derivative`` (backward);
the GPU engine's are the kernels ``activate`` and ``derivative`` in ``fcnet.cuda``.
"""

import numpy as np

from .registry import resolve

__all__ = ["Activation", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "get", "NAMES"]


class Activation:
    """Base class: ``a = f(z)`` with ``z, a`` of shape ``(n_batch, units)``."""

    name = ""

    def forward(self, z, out=None):
        """``f(z)``, written into ``out`` when given (``out`` may be ``z`` itself)."""
        raise NotImplementedError

    def backward(self, da, a):
        """``dL/dz`` from ``dL/da`` and the output ``a``; may overwrite ``da``."""
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}


class Linear(Activation):
    """Identity, ``f(z) = z``: the output layer of a ``from_logits`` model."""

    name = "linear"

    def forward(self, z, out=None):
        if out is None or out is z:
            return z
        np.copyto(out, z)
        return out

    def backward(self, da, a):
        return da


class ReLU(Activation):
    """``f(z) = max(z, 0)``; ``f' = [a > 0]``, so ``f'(0) = 0`` as in PyTorch and Keras."""

    name = "relu"

    def forward(self, z, out=None):
        return np.maximum(z, 0, out=out)

    def backward(self, da, a):
        return np.multiply(da, a > 0, out=da)


class LeakyReLU(Activation):
    """``f(z) = z`` for ``z > 0`` else ``alpha z`` (Keras' default ``alpha = 0.2``); ``a > 0`` iff ``z > 0``."""

    name = "leaky_relu"

    def __init__(self, alpha=0.2):
        self.alpha = float(alpha)
        if not 0 < self.alpha < 1:
            raise ValueError(f"leaky_relu alpha must be in (0, 1), got {alpha}")

    def forward(self, z, out=None):
        # max(z, alpha z) is z for z > 0 and alpha z below, because 0 < alpha < 1.
        return np.maximum(z, self.alpha * z, out=out)

    def backward(self, da, a):
        da[a <= 0] *= self.alpha
        return da

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


class Sigmoid(Activation):
    """``f(z) = 1 / (1 + exp(-z))``, ``f' = a (1 - a)``; written so that ``exp`` never overflows."""

    name = "sigmoid"

    def forward(self, z, out=None):
        # exp of a non-positive number only: e = exp(-|z|) in (0, 1].
        e = np.exp(-np.abs(z))
        return np.divide(np.where(z >= 0, 1, e), 1 + e, out=out)

    def backward(self, da, a):
        da *= a * (1 - a)
        return da


class Tanh(Activation):
    """``f(z) = tanh(z)``, ``f' = 1 - a²``."""

    name = "tanh"

    def forward(self, z, out=None):
        return np.tanh(z, out=out)

    def backward(self, da, a):
        da *= 1 - a * a
        return da


class Softmax(Activation):
    """``a_i = exp(z_i - max z) / sum_j exp(z_j - max z)`` over the last axis.

    Subtracting the row maximum keeps ``exp`` in (0, 1]: no overflow for any
    finite logits. The backward is the Jacobian-vector product
    ``dz = a ⊙ (da - sum(da ⊙ a))``; a softmax output followed by cross-entropy
    never runs it, the model uses the fused ``(p - y) / N`` instead.
    """

    name = "softmax"

    def forward(self, z, out=None):
        e = np.subtract(z, z.max(axis=-1, keepdims=True), out=out)
        np.exp(e, out=e)
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, da, a):
        da -= (da * a).sum(axis=-1, keepdims=True)
        da *= a
        return da


_CLASSES = {cls.name: cls for cls in (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax)}
NAMES = tuple(_CLASSES)


def get(identifier):
    """Return an :class:`Activation` from a name, a config dict, ``None`` (linear) or an instance."""
    return resolve("linear" if identifier is None else identifier, Activation, _CLASSES, "activation")
