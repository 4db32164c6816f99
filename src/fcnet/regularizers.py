"""Weight penalties, Keras-shaped: ``Dense(..., kernel_regularizer=fcnet.regularizers.l2(1e-4))``.

:class:`L2` adds ``λ Σ W²`` to the loss and ``2 λ W`` to the kernel's gradient (the biases are not
penalised, as in Keras and scikit-learn). Only the NumPy engine applies it; the compiled engines leave a
regularised model to it (:mod:`fcnet.engines.base`).
"""

import math

import numpy as np

__all__ = ["L2", "l2", "get"]


class L2:
    """``λ Σ W²``: the loss term, and its gradient ``2 λ W``.

    Parameters
    ----------
    l2 : float
        ``λ`` ≥ 0 (Keras' default: 0.01).
    """

    name = "l2"

    def __init__(self, l2=0.01):
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number ≥ 0, got {l2!r}")
        self.l2 = float(l2)

    def __call__(self, w):
        """The penalty for a kernel ``w``, a scalar in ``w``'s precision."""
        return self.l2 * np.vdot(w, w)

    def add_gradient(self, w, grad):
        """``grad += 2 λ w`` in place."""
        grad += (2 * self.l2) * w

    def get_config(self):
        return {"name": self.name, "l2": self.l2}


l2 = L2  # Keras' lower-case alias


def get(spec):
    """``None``, an :class:`L2`, ``"l2"`` (λ = 0.01) or ``{"name": "l2", "l2": λ}`` as a regularizer or ``None``."""
    if spec is None or isinstance(spec, L2):
        return spec
    if spec == "l2":
        return L2()
    if isinstance(spec, dict) and spec.get("name") == "l2" and set(spec) <= {"name", "l2"}:
        return L2(spec.get("l2", 0.01))
    raise ValueError(f"unknown kernel regularizer {spec!r}; use None, 'l2' or fcnet.regularizers.l2(value)")
