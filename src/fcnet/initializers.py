"""Weight initializers, drawn from an explicit ``np.random.Generator``.

Fan-in and fan-out are the kernel's shape ``(n_in, n_out)``, as in Keras.
The defaults follow the activation: He for the ReLU family (seed 001's first
layer), Glorot-uniform (Keras' default) for everything else.
"""

import numpy as np

__all__ = ["he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "lecun_normal", "zeros", "get",
           "default_for", "NAMES"]


def _truncated_normal(rng, stddev, shape):
    """Normal(0, stddev) redrawn outside two standard deviations, like Keras' ``TruncatedNormal``.

    The untruncated standard deviation is divided by 0.8796..., the standard
    deviation of a unit normal truncated at ±2, so the result has ``stddev``.
    """
    scale = stddev / 0.87962566103423978
    w = rng.standard_normal(shape)
    bad = np.abs(w) > 2
    while bad.any():
        w[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(w) > 2
    return w * scale


def he_normal(rng, shape):
    """Truncated normal with ``std = sqrt(2 / fan_in)`` (He et al., 2015)."""
    return _truncated_normal(rng, np.sqrt(2.0 / shape[0]), shape)


def he_uniform(rng, shape):
    """Uniform on ``±sqrt(6 / fan_in)``: variance ``2 / fan_in``, as :func:`he_normal` (Keras' ``HeUniform``)."""
    limit = np.sqrt(6.0 / shape[0])
    return rng.uniform(-limit, limit, shape)


def glorot_normal(rng, shape):
    """Truncated normal with ``std = sqrt(2 / (fan_in + fan_out))`` (Keras' ``GlorotNormal``)."""
    return _truncated_normal(rng, np.sqrt(2.0 / (shape[0] + shape[-1])), shape)


def lecun_normal(rng, shape):
    """Truncated normal with ``std = sqrt(1 / fan_in)`` (LeCun et al., 1998)."""
    return _truncated_normal(rng, np.sqrt(1.0 / shape[0]), shape)


def glorot_uniform(rng, shape):
    """Uniform on ``±sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010)."""
    limit = np.sqrt(6.0 / (shape[0] + shape[-1]))
    return rng.uniform(-limit, limit, shape)


def zeros(rng, shape):
    """All zeros (the bias default)."""
    return np.zeros(shape)


_FUNCTIONS = {f.__name__: f for f in (he_normal, he_uniform, glorot_uniform, glorot_normal, lecun_normal, zeros)}
NAMES = tuple(_FUNCTIONS)


def get(name):
    """Return the initializer function called ``name``."""
    try:
        return _FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initializer {name!r}; choose from {', '.join(NAMES)}") from None


def default_for(activation_name):
    """The kernel initializer used when none is given: He for ReLU-like units, Glorot otherwise."""
    return "he_normal" if activation_name in ("relu", "leaky_relu") else "glorot_uniform"
