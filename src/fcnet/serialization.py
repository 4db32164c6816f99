"""The model file format: one ``.npz`` holding the arrays and a JSON config, read without running code.

Arrays are read with ``allow_pickle=False`` and the config is plain JSON stored
as a string array, checked here for its format name and version; the model
checks the arrays against the config (:func:`fcnet.saving.load_model`: names,
shapes, dtypes, finiteness). Any problem is a one-line
:class:`~fcnet.errors.DataError`. Files are written atomically (temporary
file, fsync, rename), so a crash leaves the old file or the new.
"""

import json
import zipfile

import numpy as np

from .errors import DataError
from .files import atomic_write

__all__ = ["write_model_file", "read_model_file", "write_weights", "read_weights", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fcnet-model"
FORMAT_VERSION = 1


def write_model_file(path, config, arrays):
    """Write ``arrays`` (name → ndarray) and the JSON ``config`` (format and version added) to ``path``."""
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    atomic_write(path, lambda f: np.savez(f, **arrays, config=np.array(json.dumps(config))))


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such model file") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # np.load raises ValueError for pickled objects when allow_pickle=False.
        raise DataError(f"{path}: not a readable fcnet model file ({exc})") from None


def read_model_file(path):
    """``(config, arrays)`` of a model file whose format and version this fcnet reads.

    Raises
    ------
    DataError
        Missing, truncated, not an fcnet model file, or of an unknown format version.
    """
    arrays = _read(path)
    if "config" not in arrays or arrays["config"].dtype.kind != "U" or arrays["config"].ndim != 0:
        raise DataError(f"{path}: no model config in the file")
    try:
        config = json.loads(str(arrays.pop("config")))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise DataError(f"{path}: invalid model config ({type(exc).__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{path}: not an fcnet model file")
    if config.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: unknown model format version {config.get('format_version')!r} "
                        f"(this fcnet reads version {FORMAT_VERSION})")
    return config, arrays


def write_weights(path, weights):
    """Only the weight arrays, as ``param_0, param_1, ...`` in an ``.npz`` file (Keras' ``save_weights``)."""
    arrays = {f"param_{i}": p for i, p in enumerate(weights)}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_weights(path):
    """The arrays :func:`write_weights` wrote, in order.

    Raises
    ------
    DataError
        Not such a file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return [data[f"param_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{path}: cannot load these weights into this model ({exc})") from None
