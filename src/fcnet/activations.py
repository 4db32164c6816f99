"""Activations as forward/backward pairs whose derivative is written through the output.

Most activations here have a derivative that can be computed from their output
``a = f(z)`` alone — ``[a > 0]`` for the ReLUs, ``a (1 - a)``, ``1 - a²``, the
softmax Jacobian — so a layer keeps ``a`` only and, while training, applies
the activation in place over ``z`` (``forward(z, out=z)``), saving a buffer
and a pass over memory per layer. ``backward(da, a, z)`` returns
``dz = da ⊙ f'(z)`` (for softmax the Jacobian-vector product) and may
overwrite ``da``, which the layer owns. GELU and swish are not monotonic, so
their derivatives need ``z`` itself (``needs_z``): a layer keeps it apart for
them. See ``docs/backprop.md``. The compiled
engine's copies of these formulas are ``fcnet.engines.numba_kernels.activate`` (forward, for
linear, ReLU, leaky ReLU, sigmoid, tanh) and ``fcnet.engines.numba_kernels.derivative`` (backward);
the GPU engine's are the kernels ``activate`` and ``derivative`` in ``fcnet.engines.cuda``.
"""

import numpy as np

from .registry import Registry

__all__ = ["Activation", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "GELU", "Swish", "get", "NAMES",
           "REGISTRY", "erfc"]


class Activation:
    """Base class: ``a = f(z)`` with ``z, a`` of shape ``(n_batch, units)``."""

    name = ""
    needs_z = False  # True: backward needs z, so forward must not overwrite it

    def forward(self, z, out=None):
        """``f(z)``, written into ``out`` when given (``out`` may be ``z`` itself unless ``needs_z``)."""
        raise NotImplementedError

    def backward(self, da, a, z=None):
        """``dL/dz`` from ``dL/da`` and the output ``a`` (and ``z``, when ``needs_z``); may overwrite ``da``."""
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

    def backward(self, da, a, z=None):
        return da


class ReLU(Activation):
    """``f(z) = max(z, 0)``; ``f' = [a > 0]``, so ``f'(0) = 0`` as in PyTorch and Keras."""

    name = "relu"

    def forward(self, z, out=None):
        return np.maximum(z, 0, out=out)

    def backward(self, da, a, z=None):
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

    def backward(self, da, a, z=None):
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

    def backward(self, da, a, z=None):
        da *= a * (1 - a)
        return da


class Tanh(Activation):
    """``f(z) = tanh(z)``, ``f' = 1 - a²``."""

    name = "tanh"

    def forward(self, z, out=None):
        return np.tanh(z, out=out)

    def backward(self, da, a, z=None):
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

    def backward(self, da, a, z=None):
        da -= (da * a).sum(axis=-1, keepdims=True)
        da *= a
        return da


class GELU(Activation):
    """Keras' and PyTorch's default (exact) GELU: ``f(z) = z Φ(z)``, ``Φ`` the standard normal distribution
    function; ``f'(z) = Φ(z) + z φ(z)`` with the density ``φ(z) = exp(−z²/2) / √(2π)`` (needs ``z``)."""

    name = "gelu"
    needs_z = True

    def forward(self, z, out=None):
        return np.multiply(z, _normal_cdf(z), out=out)

    def backward(self, da, a, z=None):
        density = np.exp(-0.5 * z * z)
        density *= 1 / np.sqrt(2 * np.pi)
        density *= z
        density += _normal_cdf(z)
        da *= density
        return da


class Swish(Activation):
    """Keras' swish (PyTorch's SiLU): ``f(z) = z σ(z)``; ``f'(z) = σ(z) + a (1 − σ(z))`` (needs ``z``)."""

    name = "swish"
    needs_z = True

    def forward(self, z, out=None):
        return np.multiply(z, Sigmoid().forward(z), out=out)

    def backward(self, da, a, z=None):
        s = Sigmoid().forward(z)
        derivative = np.subtract(1, s)
        derivative *= a
        derivative += s
        da *= derivative
        return da


# erfc(x) = exp(−x²) P(x) / Q(x) for 1 ≤ x < 8 and R(x) / S(x) beyond, erf(x) = x T(x²) / U(x²) for |x| < 1: the
# rational approximations of Cephes (S. L. Moshier, public domain; SciPy's ndtr uses them), relative error about
# 1e-16 in double precision. Highest power first; Q, S and U have a leading 1.
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
      1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
      5.57535335369399327526e2)
_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
      1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3, 5.57535340817727675546e2)
_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0, 6.16021097993053585195e0,
      7.40974269950448939160e0, 2.97886665372100240670e0)
_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1, 1.70814450747565897222e1,
      9.60896809063285878198e0, 3.36907645100081516050e0)
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
      5.55923013010394962768e4)
_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4,
      4.92673942608635921086e4)


def _poly(coefficients, x):
    """Horner's rule, in the precision of ``x``."""
    total = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        total *= x
        total += c
    return total


def erfc(x):
    """The complementary error function ``1 − erf(x)``, element-wise, accurate in both tails (NumPy has none)."""
    x = np.asarray(x)
    out = np.empty_like(x, dtype=np.result_type(x, np.float32))
    ax = np.abs(x)
    inner = ax < 1
    xi = x[inner]
    out[inner] = 1 - xi * _poly(_T, xi * xi) / _poly(_U, xi * xi)
    for rows, p, q in ((~inner & (ax < 8), _P, _Q), (ax >= 8, _R, _S)):
        xo = ax[rows]
        tail = np.exp(-xo * xo) * _poly(p, xo) / _poly(q, xo)
        out[rows] = np.where(x[rows] < 0, 2 - tail, tail)
    return out


def _normal_cdf(z):
    """``Φ(z) = erfc(−z / √2) / 2``: the lower tail keeps its relative precision (GELU of very negative z)."""
    return 0.5 * erfc(z * (-1 / np.sqrt(2)))


REGISTRY = Registry("activation", (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, GELU, Swish),
                    aliases={"silu": "swish"})  # silu: PyTorch's name for swish
NAMES = tuple(REGISTRY)


def get(identifier):
    """Return an :class:`Activation` from a name, a config dict, ``None`` (linear) or an instance."""
    return REGISTRY.get("linear" if identifier is None else identifier, Activation)
