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

``BatchNormalization()`` is Keras' layer after a Dense layer, stored as that layer's ``batch_norm``: it
normalises the layer's output ``a`` per unit over the batch while training, ``â = (a − μ_B) / √(σ²_B + ε)``,
``y = γ ⊙ â + β`` (biased batch variance, as Keras), and with the moving averages at inference. Its backward
pass, derived in docs/backprop.md: ``dγ = Σ dy ⊙ â``, ``dβ = Σ dy``,
``da = γ / √(σ²_B + ε) ⊙ (dy − dβ / n − â ⊙ dγ / n)``.
"""

import numpy as np

from . import activations, initializers, regularizers

__all__ = ["Dense", "Dropout", "BatchNormalization"]


class Dropout:
    """Keras' ``Dropout(rate)``: zero each input of the next Dense layer with probability ``rate`` while training,
    scaling the kept ones by ``1 / (1 − rate)``. :class:`~fcnet.model.Sequential` stores it as that layer's
    ``dropout``; it must be followed by a Dense layer."""

    def __init__(self, rate, name=None):
        self.rate = _rate(rate)
        self.name = name


class BatchNormalization:
    """Keras' ``BatchNormalization(momentum=0.99, epsilon=1e-3)`` of a Dense layer's output (its activations).

    While training it normalises each unit with the batch's mean and biased variance and updates the moving
    averages ``m ← momentum · m + (1 − momentum) · batch statistic``; at inference it uses the moving averages.
    :class:`~fcnet.model.Sequential` stores it as the preceding Dense layer's ``batch_norm``, whose ``params``
    and ``grads`` then hold ``"gamma"`` and ``"beta"`` too, and whose ``state`` holds ``"moving_mean"`` and
    ``"moving_variance"`` (saved with the model, not trained).

    Parameters
    ----------
    momentum : float in [0, 1)
    epsilon : float > 0
        Added to the variance: keeps ``1 / √(σ² + ε)`` finite for a unit that is constant over the batch.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, name=None):
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"batch normalization momentum must be a number in [0, 1), got {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < np.inf:
            raise ValueError(f"batch normalization epsilon must be a number > 0, got {epsilon!r}")
        self.momentum, self.epsilon, self.name = float(momentum), float(epsilon), name
        self.params, self.grads, self.state = {}, {}, {}
        self._cache = None

    def build(self, units, dtype):
        """``gamma = 1``, ``beta = 0``, moving mean 0 and moving variance 1 (Keras' initial values)."""
        self.params = {"gamma": np.ones(units, dtype=dtype), "beta": np.zeros(units, dtype=dtype)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.state = {"moving_mean": np.zeros(units, dtype=dtype), "moving_variance": np.ones(units, dtype=dtype)}

    def forward(self, a, training=False, out=None, normalized=None):
        """``y = γ ⊙ (a − μ) / √(σ² + ε) + β`` per column of ``a``, shape ``(n_batch, units)``.

        ``μ, σ²`` are the batch's (and the moving averages move towards them) when ``training``, the moving
        averages otherwise. ``out`` and ``normalized`` (for ``â``, cached for :meth:`backward`) are optional
        scratch arrays shaped like ``a``.
        """
        if not training:
            scale, shift = self.affine()
            y = np.multiply(a, scale, out=out)
            y += shift
            return y
        mean = a.mean(axis=0)
        xhat = np.subtract(a, mean, out=normalized)
        var = np.einsum("ij,ij->j", xhat, xhat) / len(a)  # the biased variance, without a squared copy of a
        inv_std = 1 / np.sqrt(var + self.epsilon)
        xhat *= inv_std
        for key, stat in (("moving_mean", mean), ("moving_variance", var)):
            moving = self.state[key]
            moving *= self.momentum
            moving += (1 - self.momentum) * stat
        self._cache = (xhat, inv_std)
        y = np.multiply(xhat, self.params["gamma"], out=out)
        y += self.params["beta"]
        return y

    def affine(self):
        """``(scale, shift)`` of inference, ``y = a ⊙ scale + shift``: ``scale = γ / √(moving variance + ε)``,
        ``shift = β − moving mean ⊙ scale`` (what ONNX export writes as Mul and Add)."""
        scale = self.params["gamma"] / np.sqrt(self.state["moving_variance"] + self.epsilon)
        return scale, self.params["beta"] - self.state["moving_mean"] * scale

    def backward(self, dy):
        """Fill ``grads`` and return ``dL/da`` (written over ``dy``), from the last training forward pass."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward(a, training=True) first")
        xhat, inv_std = self._cache
        n = len(dy)
        # Compiled twin: none (batch normalization runs on the NumPy engine).
        np.add.reduce(dy, axis=0, out=self.grads["beta"])
        np.einsum("ij,ij->j", dy, xhat, out=self.grads["gamma"])
        # da = γ/σ ⊙ (dy − mean(dy) − â ⊙ mean(dy ⊙ â)): the mean term and the variance term of the chain rule.
        dy -= self.grads["beta"] / n
        dy -= xhat * (self.grads["gamma"] / n)
        dy *= self.params["gamma"] * inv_std
        return dy

    def get_config(self):
        return {"momentum": self.momentum, "epsilon": self.epsilon}


def _batch_norm(value):
    """A Dense layer's ``batch_norm`` argument (None, True, a config dict or a layer) as a layer or None."""
    if value is None or value is False:
        return None
    if value is True:
        return BatchNormalization()
    if isinstance(value, dict):
        return BatchNormalization(**value)
    if isinstance(value, BatchNormalization):
        return value
    raise TypeError(f"batch_norm must be a BatchNormalization, a dict of its settings or True, got {value!r}")


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
    batch_norm : BatchNormalization, dict or True, optional
        Batch normalization of this layer's output (what a :class:`BatchNormalization` after it sets).

    Attributes
    ----------
    params, grads : dict
        ``"W"``, shape ``(n_in, n_out)``, and ``"b"``, shape ``(n_out,)``; with batch normalization also
        ``"gamma"`` and ``"beta"``, shape ``(n_out,)``.
    state : dict
        Weights that are saved but not trained: batch normalization's ``"moving_mean"`` and
        ``"moving_variance"``, shape ``(n_out,)``; empty without it.
    mask : ndarray or None
        The scaled dropout mask ``m / (1 − rate)`` of the last training forward pass (None without dropout).
    fixed_mask : ndarray or None
        Set it to use this mask instead of drawing one (``gradcheck`` pins the masks this way, so that finite
        differences see the same thinned network).
    """

    def __init__(self, units, activation=None, input_dim=None, kernel_initializer=None, name=None,
                 kernel_regularizer=None, dropout=0.0, batch_norm=None):
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
        self.batch_norm = _batch_norm(batch_norm)
        self.name = name
        self.mask = self.fixed_mask = self._rng = None
        self.params = {}
        self.grads = {}
        self.state = {}
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
        self.state = {}
        self._buffers = {}
        if self.batch_norm is not None:
            self.normalize(self.batch_norm)

    def normalize(self, batch_norm):
        """Follow this (built or not) layer with ``batch_norm``, a :class:`BatchNormalization`."""
        self.batch_norm = batch_norm
        if self.params:
            dtype = self.params["W"].dtype
            batch_norm.build(self.units, dtype)
            self.params.update(batch_norm.params)  # the same arrays: the optimizer updates the normalization's
            self.grads.update(batch_norm.grads)
            self.state = batch_norm.state

    @property
    def weights(self):
        """The live arrays saved with the layer: ``params`` then ``state``, in Keras' order."""
        return [*self.params.values(), *self.state.values()]

    def _buffer(self, name, n, width):
        """Rows ``[:n]`` of a per-layer scratch array, grown as needed: training allocates nothing per step."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) < n:
            buf = self._buffers[name] = np.empty((n, width), dtype=self.params["W"].dtype)
        return buf[:n]

    def __call__(self, x):
        """``layer(x)``: the output ``f(x W + b)`` for a batch ``(n_batch, n_in)`` or one example ``(n_in,)``, at
        inference, as Keras' call (floats as they are: a model scales ``uint8`` images before its first layer)."""
        if not self.params:
            raise ValueError("the layer is not built: add it to a model with an input width first")
        x = np.asarray(x, dtype=self.params["W"].dtype)
        return self.forward(x[None] if x.ndim == 1 else x)[0 if x.ndim == 1 else slice(None)]

    def forward(self, x, training=False):
        """Return ``a = f(x W + b)``, shape ``(n_batch, n_out)``; see :meth:`forward_z`."""
        return self.forward_z(x, training)[1]

    def forward_z(self, x, training=False, activate=True):
        """Return the pre-activation ``z = x W + b`` and ``a = f(z)`` (batch-normalised when the layer has it).

        While training, ``z`` and ``a`` live in the layer's scratch buffers and
        an element-wise activation overwrites ``z`` (its derivative needs only
        ``a``), so the returned ``z`` is ``a``; a softmax keeps its logits ``z``
        apart, for the fused cross-entropy, and GELU and swish for their
        derivatives. Both are valid until the next call. At inference both are
        new arrays.

        Parameters
        ----------
        x : ndarray, shape (n_batch, n_in)
        training : bool
            Cache ``x`` and ``a`` for :meth:`backward`.
        activate : bool
            ``False`` returns ``a = z`` (not normalised): a softmax output fused into the loss need not be
            computed.

        Returns
        -------
        z, a : ndarray, shape (n_batch, n_out)
        """
        n = len(x)
        self.mask = None
        if training and self.dropout:
            self.mask = self.fixed_mask if self.fixed_mask is not None else self._draw_mask(n)
            x = np.multiply(x, self.mask, out=self._buffer("dropped", n, self.input_dim))
        # The compiled twin (fcnet.engines.numba): the forward GEMM in _steps, then bias and activation in _activate.
        z = np.matmul(x, self.params["W"], out=self._buffer("z", n, self.units) if training else None)
        z += self.params["b"]
        if activate:  # at inference z is kept too: a fused loss (evaluate) reads the logits
            separate = self.activation.name == "softmax" or self.activation.needs_z
            out = (self._buffer("a", n, self.units) if separate else z) if training else None
            a = self.activation.forward(z, out=out)
        else:
            a = z
        self._cache = (x, a, z if self.activation.needs_z else None) if training else None
        if self.batch_norm is not None and activate:
            out = self._buffer("normed", n, self.units) if training else None
            a = self.batch_norm.forward(a, training, out, self._buffer("xhat", n, self.units) if training else None)
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
        x, a, z = self._cache
        if self.batch_norm is not None:
            dout = self.batch_norm.backward(dout)
        # The compiled twin (fcnet.engines.numba): _derivative, then the bias loop and the three GEMMs in _steps.
        delta = dout if wrt_z else self.activation.backward(dout, a, z)
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
        """Copies of :attr:`weights` (``[W, b]``, and batch normalization's four), as Keras' ``get_weights()``."""
        return [p.copy() for p in self.weights]

    def set_weights(self, weights):
        """Copy arrays shaped as :meth:`get_weights` returns into the layer, in place."""
        params = self.weights
        if len(weights) != len(params):
            raise ValueError(f"expected {len(params)} arrays ({', '.join([*self.params, *self.state])}), "
                             f"got {len(weights)}")
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
        if self.batch_norm is not None:
            config["batch_norm"] = self.batch_norm.get_config()
        return config
