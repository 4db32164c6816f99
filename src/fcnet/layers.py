"""The fully-connected layer as a forward/backward pair.

``Dense`` computes ``z = x W + b`` and ``a = f(z)``. ``forward`` caches ``x``
and ``a`` — only what ``backward`` needs — and ``backward`` fills ``grads``
(same keys as ``params``) and returns the gradient with respect to the input.
Training reuses per-layer scratch buffers (``out=`` everywhere), so a step
allocates no arrays. See ``docs/backprop.md`` for the derivation.

``Dropout(rate)`` is Keras' layer for :class:`~fcnet.model.Sequential`, which hands its rate to the Dense layer
after it: inverted dropout of that layer's input while training, ``x̃ = x ⊙ m / (1 − rate)`` with ``m`` Bernoulli
(keep probability ``1 − rate``) drawn from the model's generator, so a seed fixes the masks and a resumed run
draws the ones it would have drawn. The backward pass is ``dW = x̃ᵀ δ`` and ``dx = (δ Wᵀ) ⊙ m / (1 − rate)``.
At inference nothing is dropped or scaled.
"""

import numpy as np

from . import activations, initializers, regularizers

__all__ = ["Dense", "Dropout"]


class Dropout:
    """Keras' ``Dropout(rate)``: zero each input of the next Dense layer with probability ``rate`` while training,
    scaling the kept ones by ``1 / (1 − rate)``. :class:`~fcnet.model.Sequential` stores it as that layer's
    ``dropout``; it must be followed by a Dense layer."""

    def __init__(self, rate, name=None):
        self.rate = _rate(rate)
        self.name = name


def _rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


class Dense:
    """Fully-connected layer ``a = activation(x W + b)``, Keras-shaped.

    Parameters
    ----------
    units : int
        Number of outputs ``n_out``.
    activation : str or Activation, optional
        One of ``activations.NAMES``; ``None`` means linear (logits).
    input_dim : int, optional
        ``n_in``; needed on the first layer unless the model is built from data.
    kernel_initializer : str, optional
        One of ``initializers.NAMES``; by default He-normal for ReLU-like
        activations and Glorot-uniform otherwise.
    kernel_regularizer : regularizers.L2 or "l2", optional
        A penalty on ``W`` added to the loss (and its gradient to ``dW``); see :mod:`fcnet.regularizers`.
    name : str, optional
    dropout : float in [0, 1)
        Inverted dropout of this layer's input while training (what a :class:`Dropout` before it sets).

    Attributes
    ----------
    params, grads : dict
        ``"W"``, shape ``(n_in, n_out)``, and ``"b"``, shape ``(n_out,)``.
    mask : ndarray or None
        The scaled dropout mask ``m / (1 − rate)`` of the last training forward pass (None without dropout).
    fixed_mask : ndarray or None
        Set it to use this mask instead of drawing one (``gradcheck`` pins the masks this way, so that finite
        differences see the same thinned network).
    """

    def __init__(self, units, activation=None, input_dim=None, kernel_initializer=None, name=None,
                 kernel_regularizer=None, dropout=0.0):
        if int(units) != units or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        if input_dim is not None and (int(input_dim) != input_dim or input_dim < 1):
            raise ValueError(f"input_dim must be a positive integer, got {input_dim!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.input_dim = None if input_dim is None else int(input_dim)
        self.kernel_initializer = kernel_initializer or initializers.default_for(self.activation.name)
        initializers.get(self.kernel_initializer)  # fail early on an unknown name
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.dropout = _rate(dropout)
        self.name = name
        self.mask = self.fixed_mask = self._rng = None
        self.params = {}
        self.grads = {}
        self._buffers = {}
        self._cache = None

    def build(self, input_dim, rng, dtype):
        """Create ``W`` from the kernel initializer and ``b = 0`` (draws from ``rng``)."""
        self.input_dim = int(input_dim)
        self._rng = rng  # the model's generator: dropout masks come from it
        shape = (self.input_dim, self.units)
        self.params = {
            "W": initializers.get(self.kernel_initializer)(rng, shape).astype(dtype),
            "b": np.zeros(self.units, dtype=dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self._buffers = {}

    def _buffer(self, name, n, width):
        """Rows ``[:n]`` of a per-layer scratch array, grown as needed: training allocates nothing per step."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) < n:
            buf = self._buffers[name] = np.empty((n, width), dtype=self.params["W"].dtype)
        return buf[:n]

    def forward(self, x, training=False):
        """Return ``a = f(x W + b)``, shape ``(n_batch, n_out)``; see :meth:`forward_z`."""
        return self.forward_z(x, training)[1]

    def forward_z(self, x, training=False, activate=True):
        """Return the pre-activation ``z = x W + b`` and ``a = f(z)``.

        While training, ``z`` and ``a`` live in the layer's scratch buffers and
        an element-wise activation overwrites ``z`` (its derivative needs only
        ``a``), so the returned ``z`` is ``a``; a softmax keeps its logits ``z``
        apart, for the fused cross-entropy. Both are valid until the next call.

        Parameters
        ----------
        x : ndarray, shape (n_batch, n_in)
        training : bool
            Cache ``x`` and ``a`` for :meth:`backward`.
        activate : bool
            ``False`` returns ``a = z``: a softmax output fused into the loss need not be computed.

        Returns
        -------
        z, a : ndarray, shape (n_batch, n_out)
        """
        n = len(x)
        self.mask = None
        if training and self.dropout:
            self.mask = self.fixed_mask if self.fixed_mask is not None else self._draw_mask(n)
            x = np.multiply(x, self.mask, out=self._buffer("dropped", n, self.input_dim))
        # The compiled twin (fcnet.jit): the forward GEMM in _steps, then bias and activation in _activate.
        z = np.matmul(x, self.params["W"], out=self._buffer("z", n, self.units) if training else None)
        z += self.params["b"]
        if activate:
            separate = self.activation.name == "softmax"
            out = (self._buffer("a", n, self.units) if training else None) if separate else z
            a = self.activation.forward(z, out=out)
        else:
            a = z
        self._cache = (x, a) if training else None
        return z, a

    def _draw_mask(self, n):
        """``m / (1 − rate)`` for ``n`` rows, ``m`` Bernoulli(1 − rate) from the model's generator (drawn in
        float64 whatever the model's dtype, so float32 and float64 runs of one seed drop the same inputs)."""
        mask = self._buffer("mask", n, self.input_dim)
        np.greater_equal(self._rng.random((n, self.input_dim)), self.dropout, out=mask)
        mask *= 1 / (1 - self.dropout)
        return mask

    def backward(self, dout, wrt_z=False, need_dx=True):
        """Fill ``grads`` and return the gradient with respect to the input.

        ``dW = xᵀ δ``, ``db = Σ_batch δ``, ``dx = δ Wᵀ`` with ``δ = dL/dz``.

        Parameters
        ----------
        dout : ndarray, shape (n_batch, n_out)
            ``dL/da``, or ``dL/dz`` itself when ``wrt_z`` (a softmax fused into the loss).
            It may be overwritten.
        wrt_z : bool
            Skip the activation's derivative.
        need_dx : bool
            The first layer's input gradient is never used; skipping it saves a GEMM.

        Returns
        -------
        dx : ndarray, shape (n_batch, n_in), or None
            A scratch buffer of this layer, valid until its next backward pass.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward(x, training=True) first")
        x, a = self._cache
        # The compiled twin (fcnet.jit): _derivative, then the bias loop and the three GEMMs in _steps.
        delta = dout if wrt_z else self.activation.backward(dout, a)
        np.matmul(x.T, delta, out=self.grads["W"])
        if self.kernel_regularizer is not None:
            self.kernel_regularizer.add_gradient(self.params["W"], self.grads["W"])
        np.add.reduce(delta, axis=0, out=self.grads["b"])
        if not need_dx:
            return None
        dx = np.matmul(delta, self.params["W"].T, out=self._buffer("dx", len(delta), self.input_dim))
        if self.mask is not None:
            dx *= self.mask  # the dropped inputs had no effect on the loss
        return dx

    def get_weights(self):
        """Copies of ``[W, b]``, as Keras' ``layer.get_weights()``."""
        return [p.copy() for p in self.params.values()]

    def set_weights(self, weights):
        """Copy ``[W, b]`` (shapes as :meth:`get_weights` returns) into the layer, in place."""
        params = list(self.params.values())
        if len(weights) != len(params):
            raise ValueError(f"expected {len(params)} arrays ([W, b]), got {len(weights)}")
        for p, w in zip(params, weights):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"weight of shape {w.shape}, expected {p.shape}")
            p[...] = w

    def get_config(self):
        config = {"units": self.units, "activation": self.activation.get_config(), "input_dim": self.input_dim,
                  "kernel_initializer": self.kernel_initializer, "name": self.name}
        if self.kernel_regularizer is not None:
            config["kernel_regularizer"] = self.kernel_regularizer.get_config()
        if self.dropout:
            config["dropout"] = self.dropout
        return config
