"""What a model checks of the data it is given: inputs as a 2-D array of finite numbers of its width, targets as
integer labels in range or a float matrix of its outputs. The training engines, ``evaluate`` and ``predict`` call
these (as :meth:`fcnet.model.Sequential.check_inputs` and ``check_targets``) before any arithmetic."""

import warnings

import numpy as np

__all__ = ["check_inputs", "check_targets"]


def check_inputs(model, x):
    """Return ``x`` as a 2-D array (trailing axes flattened), building the model from its width if needed.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions, the wrong width, a non-numeric dtype, or NaN/infinite values.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"inputs need shape (n_samples, n_features), got {x.shape}")
    x = x.reshape(len(x), -1)
    if not model.built:
        model.build(x.shape[1])
    if x.shape[1] != model.input_dim:
        raise ValueError(f"inputs have {x.shape[1]} features but the model expects {model.input_dim}")
    if x.dtype.kind not in "uif":
        raise ValueError(f"inputs must be numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError("inputs contain NaN or infinite values")
    if x.dtype.kind in "iu" and x.dtype != np.uint8 and x.size and x.max() > 1:
        warnings.warn(f"inputs are {x.dtype} integers up to {x.max()} and are used as they are: only uint8 "
                      "images are scaled to [0, 1]; pass np.asarray(x, dtype=np.uint8) for 8-bit pixels, or "
                      "floats", stacklevel=4)
    return x

def check_targets(model, y, n):
    """Return targets as integer labels ``(n,)`` or a float matrix ``(n, n_out)``, after range checks."""
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"{n} inputs but {len(y)} targets")
    n_out = model.output_dim
    if y.ndim == 2 and y.shape[1] == 1 and model.loss.sparse:
        y = y[:, 0]
    if y.ndim == 1 and not (model.loss.elementwise and n_out == 1):
        if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.array_equal(y, np.round(y))):
            raise ValueError("class labels must be integers")
        if n and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"labels must lie in 0..{n_out - 1}, found {y.min()}..{y.max()}")
        return y.astype(np.intp)
    if model.loss.sparse:
        raise ValueError(f"{model.loss.name} takes integer labels of shape (n,), got shape {y.shape}")
    y = y.reshape(n, -1).astype(model.dtype)
    if y.shape[1] != n_out:
        raise ValueError(f"targets have {y.shape[1]} columns but the model has {n_out} outputs")
    if not np.isfinite(y).all():
        raise ValueError("targets contain NaN or infinite values")
    if model.loss.fused == "sigmoid" and y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"{model.loss.name} targets must lie in [0, 1], found {y.min():g}..{y.max():g}")
    return y
