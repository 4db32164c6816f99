"""Model files: one ``.npz`` holding the weights, the optimizer state and a JSON config.

Loading never runs code: arrays are read with ``allow_pickle=False`` and the
config is plain JSON stored as a string array. Everything read is checked
against the config (names, shapes, dtypes, finiteness) and any problem is a
one-line :class:`~fcnet.errors.DataError`. Files are written atomically
(temporary file, fsync, rename), so a crash leaves the old file or the new.
"""

import json
import zipfile

import numpy as np

from .errors import DataError
from .files import atomic_write
from .model import Sequential

__all__ = ["save_model", "load_model", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fcnet-model"
FORMAT_VERSION = 1


def save_model(model, path, extra=None):
    """Write ``model`` (built; compiled or not) to ``path``; ``extra`` is JSON kept under ``config["extra"]``."""
    if not model.built:
        raise ValueError("cannot save a model that is not built")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.get_config(),
        "loss": model.loss.get_config() if model.loss else None,
        "optimizer": model.optimizer.get_config() if model.optimizer else None,
        "metrics": model.metrics,
        "metadata": model.metadata,
        "extra": extra,
    }
    arrays = {f"param_{i}": p for i, p in enumerate(model.parameters)}
    if model.optimizer is not None:
        arrays.update({f"opt_{k}": v for k, v in model.optimizer.get_state(model.parameters).items()})
    arrays["config"] = np.array(json.dumps(config))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such model file") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # np.load raises ValueError for pickled objects when allow_pickle=False.
        raise DataError(f"{path}: not a readable fcnet model file ({exc})") from None


def load_model(path, with_extra=False):
    """Read a model written by :meth:`Sequential.save`; it predicts bit-identically to the saved one.

    With ``with_extra`` returns ``(model, extra)``, the JSON given to :func:`save_model`.

    Raises
    ------
    DataError
        The file is missing, truncated, not an fcnet model, of an unknown format
        version, or its arrays do not match its config.
    """
    arrays = _read(path)
    if "config" not in arrays or arrays["config"].dtype.kind != "U" or arrays["config"].ndim != 0:
        raise DataError(f"{path}: no model config in the file")
    try:
        config = json.loads(str(arrays.pop("config")))
        if config.get("format") != FORMAT:
            raise DataError(f"{path}: not an fcnet model file")
        if config.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{path}: unknown model format version {config.get('format_version')!r} "
                            f"(this fcnet reads version {FORMAT_VERSION})")
        model = _build(config, arrays, path)
        return (model, config.get("extra")) if with_extra else model
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"{path}: invalid model config ({type(exc).__name__}: {exc})") from None


def _build(config, arrays, path):
    model = Sequential.from_config(config["model"])
    if not model.built:
        raise DataError(f"{path}: the config describes no layers or no input width")
    params = model.parameters
    expected = {f"param_{i}" for i in range(len(params))}
    names = set(arrays)
    opt_names = {n for n in names if n.startswith("opt_")}
    if names - opt_names != expected:
        missing, extra = sorted(expected - names), sorted(names - opt_names - expected)
        raise DataError(f"{path}: arrays do not match the config (missing {missing or 'none'}, "
                        f"unexpected {extra or 'none'})")
    for i, p in enumerate(params):
        w = arrays[f"param_{i}"]
        if w.shape != p.shape or w.dtype != p.dtype:
            raise DataError(f"{path}: param_{i} is {w.dtype}{list(w.shape)}, the config needs {p.dtype}{list(p.shape)}")
        if not np.isfinite(w).all():
            raise DataError(f"{path}: param_{i} contains NaN or infinite values")
        p[...] = w
    if config.get("loss"):
        model.compile(optimizer=config["optimizer"] or "rmsprop", loss=config["loss"], metrics=config.get("metrics"))
        if opt_names:
            state = {n[len("opt_"):]: arrays[n] for n in opt_names}
            try:
                model.optimizer.set_state(params, state)
            except (KeyError, ValueError) as exc:
                raise DataError(f"{path}: optimizer state does not match the optimizer ({exc})") from None
    model.metadata = dict(config.get("metadata") or {})
    return model
