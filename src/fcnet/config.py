"""``TrainConfig``: every setting of a training run, its default and its check, in one place.

The command line builds its ``fcnet train`` flags from these fields (``--batch-size`` is ``batch_size``),
sweep files name them as TOML keys, and Python users construct the dataclass directly; all three end in
:func:`fcnet.run.train_run`. Values may be given as text (flags, TOML strings) or as Python values and are
converted and checked once, when the config is made::

    >>> TrainConfig(dataset="fashion-mnist", hidden="256,128", optimizer="adam", lr=1e-3).hidden
    (256, 128)

A run's identity is :meth:`TrainConfig.identity`: the hash of the settings that differ from
``TrainConfig()`` (and change what is learned), so a field added later does not change the identity of
configs that never set it.
"""

import dataclasses
import hashlib
import json
import math

from . import activations, augment, datasets, losses, optimizers, schedules, tables
from .engines import ENGINES
from .records import PREPARATIONS

__all__ = ["TrainConfig", "varied", "trial_name", "NOT_LEARNED"]

NOT_LEARNED = ("data_dir", "preparation", "threads")  # where the data is read from, how pictures are prepared later,
# how many threads multiply


class _Check:
    """Convert a value (or its text) to ``kind`` and test it; ``what`` says what is allowed, for messages."""

    def __init__(self, kind, test, what):
        self.kind, self.test, self.what = kind, test, what

    def __call__(self, value):
        if isinstance(value, bool) or (self.kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"must be {self.what}")
        try:
            converted = self.kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be {self.what}") from None
        if not self.test(converted):
            raise ValueError(f"must be {self.what}")
        return converted


class _Choice:
    def __init__(self, choices):
        self.choices = tuple(choices)
        self.what = "one of " + ", ".join(self.choices)

    def __call__(self, value):
        if value not in self.choices:
            raise ValueError(f"must be {self.what}")
        return value


def _hidden(value):
    """``"256,128"``, ``[256, 128]``, ``256``, ``""`` or ``"none"`` → a tuple of widths."""
    if isinstance(value, str):
        value = [] if value.strip().lower() in ("", "none") else value.split(",")
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    try:
        return tuple(_positive_int(v.strip() if isinstance(v, str) else v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("must be integers ≥ 1 separated by commas") from None


def _dataset(value):
    if value in datasets.NAMES or (isinstance(value, str) and value.startswith("idx:") and len(value) > 4) or (
            tables.is_table(value)):
        return value
    raise ValueError(f"must be one of {', '.join(datasets.NAMES)}, idx:DIR, or a table: csv:PATH, parquet:PATH, "
                     "npz:PATH")


def _augment(value):
    augment.parse(value)  # checks it
    return ",".join(p.strip() for p in str(value).split(",") if p.strip())


def _flag(value):
    """A switch: ``True``/``False`` (TOML, Python) or their words in text."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError("must be true or false")


_flag.what = "true or false"


def _optional(check):
    def optional(value):
        return None if value is None else check(value)
    optional.choices = getattr(check, "choices", None)
    return optional


_positive_int = _Check(int, lambda v: v >= 1, "an integer ≥ 1")
_positive_float = _Check(float, lambda v: v > 0 and math.isfinite(v), "a number > 0")


def _field(default, check, help):
    return dataclasses.field(default=default, metadata={"check": check, "help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: data, network, optimizer and schedule. The defaults are the seed 001 lab.

    Parameters
    ----------
    dataset : str
        ``mnist``, ``fashion-mnist``, ``kmnist``, ``idx:DIR`` (any folder of the four IDX files), or a table:
        ``csv:PATH``, ``parquet:PATH``, ``npz:PATH`` (:mod:`fcnet.tables`).
    target : str, optional
        A table's target column (``y`` in an ``.npz``); tables only.
    task : {"classification", "regression"}
        What a table's target is: class labels (softmax output) or numbers (one linear output, loss ``mse``).
    test_split : float in (0, 1)
        The fraction of a table's rows held out at random as its test set, when the file has none.
    data_dir : str, optional
        Folder searched first for the data set (default ``$FCNET_DATA``); not part of the identity.
    limit : int, optional
        Train on the first ``limit`` training images only.
    hidden : tuple of int
        Hidden layer widths; the output layer is a softmax over the data set's classes.
    activation, loss, optimizer : str
        Names from :mod:`fcnet.activations`, :mod:`fcnet.losses`, :mod:`fcnet.optimizers`.
    lr, momentum, lr_decay : float
        Learning rate; SGD momentum (SGD only); the factor applied to ``lr`` after every epoch.
    lr_schedule : {"cosine", "step", "exp", "onecycle"}, optional
        The learning rate of each epoch, from ``lr`` (:func:`fcnet.schedules.per_epoch`); not with ``lr_decay``.
    warmup : int
        Epochs of linear warm-up (``cosine`` only).
    label_smoothing : float in [0, 1)
        The cross-entropy's label smoothing (:mod:`fcnet.losses`).
    weight_decay, clipnorm : float
        The optimizer's decoupled weight decay and per-array gradient clipping (:mod:`fcnet.optimizers`).
    l2 : float
        An L2 penalty on every Dense layer's weights (:mod:`fcnet.regularizers`).
    augment : str, optional
        Distortions of the training images, e.g. ``"shift,rotate,elastic"`` (:func:`fcnet.augment.parse`).
    dropout : float in [0, 1)
        A :class:`~fcnet.layers.Dropout` of this rate after every hidden layer.
    input_dropout : float in [0, 1)
        A :class:`~fcnet.layers.Dropout` of the inputs, before the first layer (Hinton et al. 2012 drop 20 %).
    batch_norm : bool
        A :class:`~fcnet.layers.BatchNormalization` after every hidden layer (before its dropout).
    batch_size, epochs : int
    validation_split : float in [0, 1)
        Fraction held out from the end of the training set, as in Keras.
    early_stopping : int, optional
        Patience, in epochs, of :class:`~fcnet.callbacks.EarlyStopping` on the validation loss, restoring the
        best epoch's weights; a resumed run carries on its watch (and its best weights, kept in the run folder).
    reduce_lr : int, optional
        Patience, in epochs, of :class:`~fcnet.callbacks.ReduceLROnPlateau` on the validation loss (Keras'
        factor 0.1); a resumed run carries on its counters (replayed from the checkpoint's history).
    dtype : {"float32", "float64"}
    seed : int
        Seeds the weights and every epoch's shuffle.
    engine : {"auto", "numpy", "numba", "cuda"}
        Who runs the training steps (:mod:`fcnet.engines`).
    threads : int, optional
        OpenBLAS threads (:mod:`fcnet.threads`); default ``$FCNET_THREADS``, else the cores the rest of the
        machine leaves free when training starts; the count used is recorded with the run (checkpoint,
        metrics.json), so a resumed run uses it too. Not part of the identity.
    preparation : {"digits", "fit"}, optional
        How ``fcnet predict`` and ``fcnet serve`` will turn a picture into an input for the trained model
        (recorded with it; see :class:`~fcnet.records.ModelInfo`); default: ``digits`` for MNIST and KMNIST,
        ``fit`` otherwise. Not part of the identity.

    Raises
    ------
    ValueError
        A value that fails its check, in one line naming the field.
    """

    dataset: str = _field("mnist", _dataset, "a data set (mnist, fashion-mnist, kmnist), idx:DIR, or a table: "
                          "csv:PATH, parquet:PATH, npz:PATH (with --target)")
    target: str | None = _field(None, _optional(str), "the table column to predict (tables only)")
    task: str = _field("classification", _Choice(tables.TASKS), "a table's target: class labels, or numbers "
                       "(regression: a linear output and loss mse)")
    test_split: float = _field(0.2, _Check(float, lambda v: 0 < v < 1, "in (0, 1)"),
                               "fraction of a table's rows held out as its test set (when it has none)")
    data_dir: str | None = _field(None, _optional(str), "folder searched first for the data set ($FCNET_DATA)")
    limit: int | None = _field(None, _optional(_positive_int), "use only the first N training images")
    hidden: tuple = _field((300,), _hidden, "hidden layer widths, e.g. 256,128,64,64")
    activation: str = _field("relu", _Choice(activations.NAMES), "hidden-layer activation")
    loss: str = _field("sparse_categorical_crossentropy", _Choice(losses.NAMES),
                       "the loss: a cross-entropy, or mse, mae, huber (which regression takes)")
    label_smoothing: float = _field(0.0, _Check(float, lambda v: 0 <= v < 1, "in [0, 1)"),
                                    "cross-entropy against (1 − ε)·onehot + ε/classes (Keras' label_smoothing)")
    optimizer: str = _field("sgd", _Choice(optimizers.NAMES), "optimizer")
    lr: float = _field(0.1, _positive_float, "learning rate")
    momentum: float = _field(0.0, _Check(float, lambda v: 0 <= v < 1, "in [0, 1)"), "SGD momentum")
    weight_decay: float = _field(0.0, _Check(float, lambda v: 0 <= v < math.inf, "a number ≥ 0"),
                                 "decoupled weight decay: p ← p·(1 − lr·weight_decay) every step (AdamW's)")
    clipnorm: float | None = _field(None, _optional(_positive_float), "scale each gradient array to at most this "
                                    "L2 norm (Keras' clipnorm)")
    dropout: float = _field(0.0, _Check(float, lambda v: 0 <= v < 1, "in [0, 1)"),
                            "dropout rate after every hidden layer (fcnet.Dropout)")
    input_dropout: float = _field(0.0, _Check(float, lambda v: 0 <= v < 1, "in [0, 1)"),
                                  "dropout rate of the inputs, before the first layer")
    batch_norm: bool = _field(False, _flag, "batch normalization after every hidden layer (fcnet.BatchNormalization;"
                              " numpy engine)")
    augment: str | None = _field(None, _optional(_augment), "distort the training images afresh every epoch: "
                                 "shift, rotate, scale, elastic (Simard's), flip, erase (random erasing), each with a "
                                 "default strength or as name=value, e.g. shift=2,rotate=10,elastic=34,sigma=4")
    l2: float = _field(0.0, _Check(float, lambda v: 0 <= v < math.inf, "a number ≥ 0"),
                       "L2 penalty l2·ΣW² on every layer's weights, added to the loss (Keras' kernel_regularizer)")
    lr_decay: float = _field(1.0, _Check(float, lambda v: 0 < v <= 1, "in (0, 1]"),
                             "multiply the learning rate by this after every epoch")
    lr_schedule: str | None = _field(None, _optional(_Choice(schedules.NAMES)),
                                     "the learning rate per epoch: cosine (with --warmup), step (/10 at 50 %% and "
                                     "75 %% of the epochs), exp (to lr/100), onecycle (peaking at lr)")
    warmup: int = _field(0, _Check(int, lambda v: v >= 0, "an integer ≥ 0"),
                         "epochs of linear warm-up before the cosine schedule")
    batch_size: int = _field(64, _positive_int, "examples per gradient step")
    epochs: int = _field(20, _positive_int, "passes over the training set")
    early_stopping: int | None = _field(None, _optional(_positive_int),
                                        "stop after this many epochs without a lower validation loss and keep the "
                                        "best epoch's weights (needs validation_split)")
    reduce_lr: int | None = _field(None, _optional(_positive_int),
                                   "divide the learning rate by 10 after this many epochs without a lower "
                                   "validation loss (Keras' ReduceLROnPlateau; needs validation_split)")
    validation_split: float = _field(0.0, _Check(float, lambda v: 0 <= v < 1, "in [0, 1)"),
                                     "fraction of the training set held out for validation")
    dtype: str = _field("float32", _Choice(("float32", "float64")), "parameter and computation precision")
    seed: int = _field(0, _Check(int, lambda v: v >= 0, "an integer ≥ 0"), "seeds the weights and the shuffles")
    engine: str = _field("auto", _Choice(ENGINES), "numba: the compiled training loop (fcnet[fast]); numpy: the "
                         "reference; cuda: an NVIDIA GPU (fcnet[cuda]); auto: numba when installed and it covers "
                         "the model")
    threads: int | None = _field(None, _optional(_positive_int), "threads for the matrix products (default: "
                                 "$FCNET_THREADS, else the cores other processes leave free when training starts; "
                                 "recorded with the run)")
    preparation: str | None = _field(None, _optional(_Choice(PREPARATIONS)),
                                     "how predict and serve prepare a picture for the model: digits (crop, "
                                     "centre like MNIST) or fit (resize); default: digits for mnist and kmnist")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            try:
                object.__setattr__(self, f.name, f.metadata["check"](getattr(self, f.name)))
            except ValueError as exc:
                raise ValueError(f"{f.name} {exc}, got {getattr(self, f.name)!r}") from None
        if self.momentum and self.optimizer != "sgd":
            raise ValueError("momentum applies to optimizer sgd only")
        if self.lr_schedule is not None or self.warmup:
            if self.lr_decay != 1:
                raise ValueError("lr_decay and lr_schedule both set the learning rate per epoch: choose one")
            schedules.per_epoch(self.lr_schedule, self.lr, self.epochs, self.warmup)  # warmup fits, or says why
        for name in ("early_stopping", "reduce_lr"):
            if getattr(self, name) and not self.validation_split:
                raise ValueError(f"{name} watches the validation loss: give validation_split too")
        if self.reduce_lr and (self.lr_schedule or self.lr_decay != 1):
            raise ValueError("reduce_lr and lr_schedule/lr_decay all set the learning rate per epoch: choose one")
        if self.label_smoothing and self.loss not in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
            raise ValueError(f"label_smoothing applies to the categorical cross-entropies, not {self.loss}")
        if self.augment and self.is_table:
            raise ValueError("augment distorts images; a table's rows are not")
        if not self.is_table and (self.target is not None or self.task != "classification" or self.test_split != 0.2):
            raise ValueError("target, task and test_split apply to tables (csv:, parquet:, npz:) only; "
                             f"{self.dataset} has its own labels and test set")
        if self.is_table and self.target is None and not self.dataset.startswith("npz:"):
            raise ValueError(f"name the target column of {self.dataset} (target, --target COLUMN)")
        if self.task == "regression" and self.loss not in losses.REGRESSION:
            if self.loss != TrainConfig.loss:
                raise ValueError(f"regression trains with loss {', '.join(losses.REGRESSION)}, not {self.loss}")
            object.__setattr__(self, "loss", "mse")  # the loss left at its default follows the task


    @property
    def is_table(self):
        """Whether the data set is a table (:mod:`fcnet.tables`)."""
        return tables.is_table(self.dataset)

    @classmethod
    def from_dict(cls, settings):
        """A config from a dict of settings (a sweep trial, a checkpoint); an unknown key is a ValueError."""
        unknown = sorted(set(settings) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(cls.field_names())}")
        return cls(**settings)

    @staticmethod
    def field_names():
        return [f.name for f in dataclasses.fields(TrainConfig)]

    @property
    def loss_identifier(self):
        """The loss as :func:`fcnet.losses.get` takes it: its name, with its label smoothing when set."""
        return {"name": self.loss, "label_smoothing": self.label_smoothing} if self.label_smoothing else self.loss

    def to_dict(self):
        """Every setting as JSON-able values (``hidden`` as a list)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def changes(self):
        """The settings that differ from ``TrainConfig()``, as JSON-able values."""
        default = TrainConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != default[k]}

    def identity(self):
        """A 12-hex-digit hash of :meth:`changes` that change what is learned (``data_dir`` does not)."""
        learned = {k: v for k, v in self.changes().items() if k not in NOT_LEARNED}
        return hashlib.sha256(json.dumps(learned, sort_keys=True).encode()).hexdigest()[:12]

    def replace(self, **changes):
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)


def varied(configs):
    """The setting names whose values differ between ``configs`` (dicts), sorted."""
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def trial_name(config, configs):
    """A run named by the settings in which it differs from the others, e.g. ``hidden=512 optimizer=adam``."""
    keys = varied(configs) or [k for k in ("hidden", "optimizer", "lr") if k in config]
    return " ".join(f"{k}={_show(config.get(k))}" for k in keys)
