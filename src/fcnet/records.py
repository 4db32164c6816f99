"""The records modules share: a run's results (``metrics.json``) and the facts saved with a model.

Each is a dataclass read and written here only: :class:`RunMetrics` is what ``fcnet train --out`` writes
to ``metrics.json`` and what plots, reports, the run store and sweeps read back; :class:`ModelInfo` is
what a model file's ``metadata`` says about its data (data set, class names, image shape, how a
picture is prepared for it), with one set of defaults for models saved without it.
"""

import dataclasses
import json
import math
import statistics
from pathlib import Path

from .errors import DataError
from .files import atomic_write

__all__ = ["RunMetrics", "ModelInfo", "DIGIT_SETS", "PREPARATIONS", "TEST_NAMES"]

DIGIT_SETS = ("mnist", "kmnist")  # drawn characters: pictures are prepared the MNIST way
PREPARATIONS = ("digits", "fit")
TEST_NAMES = {"loss": "loss", "accuracy": "accuracy", "r2": "R²", "mae": "MAE"}  # RunMetrics.test's keys, shown
EPOCH_KEYS = ("epoch", "seconds", "loss", "accuracy", "val_loss", "val_accuracy", "lr")


@dataclasses.dataclass
class RunMetrics:
    """A finished run's results, as stored in ``metrics.json``.

    Attributes
    ----------
    config : dict
        The run's :class:`~fcnet.config.TrainConfig` as a dict.
    architecture : str
        Layer widths, e.g. ``"784-300-10"``.
    steps_per_epoch : int
    epochs : list of dict
        One dict per epoch with the keys ``epoch, seconds, loss, accuracy, val_loss, val_accuracy, lr``
        (``None`` where a metric was not computed; ``lr`` is the rate the epoch trained at, its last step's).
    total_seconds : float
        Wall time of ``fit`` (this session's part of a resumed run).
    engine : str
        The engine that trained it (``numpy`` or ``numba``).
    test : dict
        ``{"loss": float, "accuracy": float}`` on the test set; a table regression's has ``r2`` and ``mae``
        instead of ``accuracy`` (see :func:`fcnet.run.test_metrics`).
    per_class, confusion : list, optional
        A classifier's per-class precision/recall/F1/support and confusion counts on the test set (``None``
        for a regression).
    """

    config: dict
    architecture: str
    steps_per_epoch: int
    epochs: list
    total_seconds: float
    engine: str
    test: dict
    per_class: list | None = None
    confusion: list | None = None

    @classmethod
    def from_history(cls, history, **fields):
        """Build the ``epochs`` list from a ``History.history`` dict of lists (``epoch_seconds`` → ``seconds``).
        A history without rates (no callback changed the rate) trained at ``config["lr"]`` throughout."""
        names = {"seconds": "epoch_seconds"}
        n = len(history.get("loss", []))
        if "lr" not in history and "lr" in fields.get("config", {}):
            history = {**history, "lr": [fields["config"]["lr"]] * n}
        epochs = [{k: (history.get(names.get(k, k)) or [None] * n)[i] for k in EPOCH_KEYS[1:]} for i in range(n)]
        return cls(epochs=[{"epoch": i + 1, **e} for i, e in enumerate(epochs)], **fields)

    @property
    def history(self):
        """The per-epoch metrics as a dict of lists, like ``History.history``."""
        return {k: [e.get(k) for e in self.epochs] for k in EPOCH_KEYS[2:]}

    @property
    def seconds_per_epoch(self):
        """The median epoch time, or ``None`` for a run with no timed epoch."""
        seconds = [e["seconds"] for e in self.epochs if e.get("seconds") is not None]
        return statistics.median(seconds) if seconds else None

    def to_dict(self):
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None or k not in ("per_class", "confusion")}

    def write(self, path):
        """Write ``metrics.json`` (atomically)."""
        atomic_write(path, lambda f: f.write(json.dumps(self.to_dict(), indent=2).encode()))

    @classmethod
    def read(cls, folder):
        """``folder/metrics.json`` of a run folder, with a one-line :class:`~fcnet.errors.DataError` if it is
        missing or not a metrics file."""
        path = Path(folder) / "metrics.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path.parent}: no metrics.json (not a folder written by fcnet train --out)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if not isinstance(data, dict) or not required <= set(data):
            missing = sorted(required - set(data)) if isinstance(data, dict) else ["everything"]
            raise DataError(f"{path}: not an fcnet metrics file (missing {', '.join(missing)})")
        if not isinstance(data["epochs"], list) or not all(isinstance(e, dict) for e in data["epochs"]):
            raise DataError(f"{path}: epochs must be a list of objects")
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model knows about its data, from ``model.metadata`` with defaults filled in.

    Attributes
    ----------
    dataset : str or None
        The data set it was trained on (``None``: not recorded).
    class_names : tuple of str
        One per output; default ``"0"``, ``"1"``, ...
    image_shape : tuple of int or None
        ``(rows, cols)`` of its input pictures; default square when the input width is a square number.
    preparation : {"digits", "fit"}
        How a picture becomes an input: ``digits`` crops, scales and centres the ink like MNIST,
        ``fit`` resizes the whole picture. Default: ``digits`` for MNIST and KMNIST models and for
        models with no recorded data set (fcnet's drawing page and the seeds' models are digits),
        ``fit`` otherwise.
    test_accuracy : float or None
    table : dict or None
        A model trained on a table: how rows become its inputs (:meth:`fcnet.tables.TableSpec.to_metadata`;
        :func:`fcnet.tables.spec_of` reads and checks it). Such a model has no image shape.
    """

    dataset: str | None
    class_names: tuple
    image_shape: tuple | None
    preparation: str
    test_accuracy: float | None = None
    table: dict | None = None

    @classmethod
    def of(cls, model):
        """The info of a built model; wrong-typed entries in its metadata fall back to the defaults."""
        meta = model.metadata if isinstance(model.metadata, dict) else {}
        dataset = meta.get("dataset") if isinstance(meta.get("dataset"), str) else None
        names = meta.get("class_names")
        if not (isinstance(names, list) and len(names) == model.output_dim):
            names = [str(i) for i in range(model.output_dim)]
        table = meta.get("table") if isinstance(meta.get("table"), dict) else None
        shape = meta.get("image_shape")
        if table is not None:
            shape = None
        elif not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s > 0 for s in shape)
                and shape[0] * shape[1] == model.input_dim):
            side = math.isqrt(model.input_dim)
            shape = (side, side) if side * side == model.input_dim else None
        preparation = meta.get("preparation")
        if preparation not in PREPARATIONS:
            preparation = "digits" if dataset is None or dataset in DIGIT_SETS else "fit"
        accuracy = meta.get("test_accuracy")
        accuracy = float(accuracy) if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) else None
        return cls(dataset, tuple(map(str, names)), shape and tuple(shape), preparation, accuracy, table)

    def to_metadata(self):
        """The JSON dict to store as ``model.metadata``."""
        return {"dataset": self.dataset, "class_names": list(self.class_names),
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "preparation": self.preparation, "test_accuracy": self.test_accuracy,
                **({"table": self.table} if self.table is not None else {})}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
