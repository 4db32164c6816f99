"""Reading a model file back into a :class:`~fcnet.model.Sequential` (``Sequential.save`` writes it).

The file format is :mod:`fcnet.serialization`'s; here every array is checked against the model that the
config describes — names, shapes, dtypes, finiteness, the optimizer's state — before it is used, and any
problem is a one-line :class:`~fcnet.errors.DataError`.
"""

import numpy as np

from . import serialization
from .errors import DataError
from .model import Sequential

__all__ = ["load_model"]


def load_model(path, with_extra=False):
    """Read a model written by :meth:`Sequential.save`; it predicts bit-identically to the saved one.

    With ``with_extra`` returns ``(model, extra)``, the JSON given to :meth:`Sequential.save`.

    Raises
    ------
    DataError
        The file is missing, truncated, not an fcnet model, of an unknown format
        version, or its arrays do not match its config.
    """
    config, arrays = serialization.read_model_file(path)
    try:
        _check_shapes(config["model"], arrays, path)  # before anything is allocated from the config's numbers
        model = Sequential.from_config(config["model"])
        if not model.built:
            raise DataError(f"{path}: the config describes no layers or no input width")
        params = model.weights
        opt_state = {n[len("opt_"):]: a for n, a in arrays.items() if n.startswith("opt_")}
        weights = {n: a for n, a in arrays.items() if not n.startswith("opt_")}
        expected = {f"param_{i}" for i in range(len(params))}
        if set(weights) != expected:
            missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise DataError(f"{path}: arrays do not match the config (missing {missing or 'none'}, "
                            f"unexpected {unexpected or 'none'})")
        for i, p in enumerate(params):
            w = weights[f"param_{i}"]
            if w.shape != p.shape or w.dtype != p.dtype:
                raise DataError(f"{path}: param_{i} is {w.dtype}{list(w.shape)}, the config needs "
                                f"{p.dtype}{list(p.shape)}")
            if not np.isfinite(w).all():
                raise DataError(f"{path}: param_{i} contains NaN or infinite values")
            p[...] = w
        for i, layer in enumerate(model.layers):
            if layer.state and (layer.state["moving_variance"] < 0).any():
                raise DataError(f"{path}: layer {i + 1}'s batch normalization has a negative moving variance")
        if config.get("loss"):
            model.compile(optimizer=config["optimizer"] or "rmsprop", loss=config["loss"],
                          metrics=config.get("metrics"))
            if opt_state:
                expected_state = model.optimizer.get_state(model.parameters)
                if set(opt_state) != set(expected_state):
                    raise DataError(f"{path}: optimizer state does not match the optimizer (arrays "
                                    f"{sorted(set(opt_state) ^ set(expected_state))})")
                for name, array in opt_state.items():
                    if array.shape != expected_state[name].shape or array.dtype.kind not in "iuf":
                        raise DataError(f"{path}: optimizer state opt_{name} is {array.dtype}{list(array.shape)}, "
                                        f"not {expected_state[name].dtype}{list(expected_state[name].shape)}")
                model.optimizer.set_state(model.parameters, opt_state)
        elif opt_state:
            raise DataError(f"{path}: optimizer state without an optimizer")
        model.metadata = dict(config.get("metadata") or {})
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"{path}: invalid model config ({type(exc).__name__}: {exc})") from None
    return (model, config.get("extra")) if with_extra else model


def _check_shapes(model_config, arrays, path):
    """The weight shapes the config implies must be those of the arrays in the file (which are small): per layer
    ``W`` and ``b``, then batch normalization's gamma, beta, moving mean and moving variance."""
    layers = model_config["layers"]
    if not isinstance(layers, list) or not layers or not all(isinstance(lc, dict) for lc in layers):
        raise DataError(f"{path}: the config describes no layers")
    widths = [layers[0].get("input_dim"), *(lc.get("units") for lc in layers)]
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise DataError(f"{path}: layer widths must be integers ≥ 1, got {widths}")
    shapes = [shape for lc, n_in, n_out in zip(layers, widths, widths[1:])
              for shape in [(n_in, n_out), (n_out,)] + [(n_out,)] * (4 if lc.get("batch_norm") else 0)]
    for j, shape in enumerate(shapes):
        found = arrays.get(f"param_{j}")
        if found is not None and found.shape != shape:
            raise DataError(f"{path}: param_{j} has shape {list(found.shape)}, the config needs {list(shape)}")
        if found is None:
            raise DataError(f"{path}: arrays do not match the config (missing ['param_{j}'])")
