"""Tables as training data: CSV, Parquet and NPZ files into a network's inputs and targets, and back.

``fcnet train --dataset csv:PATH --target COLUMN`` (also ``parquet:PATH``, ``npz:PATH``) reads a table with
:func:`read_table` (:mod:`fcnet.tablefiles`), holds out a random ``test_split`` of its rows (unless the file has its
own test part) and turns the columns into numbers with a :class:`TableSpec` learnt from the training rows only:

- a numeric column is standardised, ``(v - mean) / scale`` (scale 1 for a constant column, as scikit-learn's
  ``StandardScaler`` does);
- a column of strings is one-hot encoded over the categories of the training rows; a category it never saw
  encodes as all zeros (scikit-learn's ``handle_unknown="ignore"``), and :meth:`TableSpec.unknown` names it;
- the target is a class label (``task="classification"``: the classes of the training rows, sorted) or a number
  (``task="regression"``: standardised for training; :meth:`TableSpec.decode` gives back the original units).

The spec travels in the model's metadata (:class:`~fcnet.records.ModelInfo`), so ``fcnet predict``, ``fcnet
serve`` and the ONNX export (:mod:`fcnet.export`) prepare rows exactly as training did. A cell that is empty or
says NA/NaN/null/?, text in a numeric column, a missing target column, a single class: one-line
:class:`~fcnet.errors.DataError` naming the column and the line.
"""

import dataclasses
import math

import numpy as np

from .errors import DataError
from .tablefiles import KINDS, Table, is_table, read_table

__all__ = ["KINDS", "TASKS", "TableSpec", "Feature", "Table", "is_table", "read_table", "load", "spec_of",
           "regression_scores", "typed", "MAX_CATEGORIES"]

TASKS = ("classification", "regression")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MAX_CATEGORIES = 1000  # more distinct strings than this in one column is an identifier or free text, not a category


def _missing(values):
    """Mask of the cells that are missing: empty, NA, NaN, null, ? (strings), or NaN (numbers)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.isin(np.char.lower(np.char.strip(values)), list(MISSING))


def _numbers(values, name, where):
    """A column as finite float64, or a DataError naming its first missing or non-numeric cell."""
    numbers = values
    if values.dtype.kind != "f":
        try:
            numbers = values.astype(np.float64)  # NumPy's parser; the cells it refuses are found one by one below
        except ValueError:
            for i, v in enumerate(values):
                if v.strip().lower() in MISSING:
                    raise DataError(f"{where(i)}: column {name!r} has a missing value ({str(v)!r}); fill or drop "
                                    "the row") from None
                if not _is_number(v):
                    raise DataError(f"{where(i)}: column {name!r} holds numbers, but this row has {str(v)!r}") from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if np.isnan(numbers[i]):
            raise DataError(f"{where(i)}: column {name!r} has a missing value ({str(values[i])!r}); fill or drop "
                            "the row")
        raise DataError(f"{where(i)}: column {name!r} has the infinite value {str(values[i])!r}")
    return numbers


def typed(table, target, task):
    """``table`` with each column converted once to what it holds: float64 numbers (numeric columns, and a
    regression's target), stripped strings (categories, class labels); DataError at the first bad cell."""
    columns = {}
    for name, values in table.columns.items():
        number = _is_numeric(values) if name != target else task == "regression" or _is_numeric(values)
        columns[name] = _numbers(values, name, table.where) if number else _strings(values, name, table.where)
    return Table(columns, table.where, table.test)


def _standard(values, name, where):
    """``(mean, scale)`` of a numeric column: its mean and standard deviation (1 for a constant column)."""
    v = _numbers(values, name, where)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(v.mean()), float(v.std())
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise DataError(f"column {name!r}: its values are too large to standardise (mean {mean}, std {std})")
    return mean, std if std > 0 else 1.0


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _strings(values, name, where):
    """A column of categories as stripped strings, or a DataError naming its first missing cell."""
    missing = _missing(values)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{where(i)}: column {name!r} has a missing value ({str(values[i])!r}); fill or drop the row")
    return np.char.strip(values.astype(str)) if values.dtype.kind != "f" else np.array([_name(v) for v in values])


def _is_numeric(values):
    """Whether a column read as text holds numbers: most of its cells parse as numbers."""
    if values.dtype.kind == "f":
        return True
    cells = [v for v in values[:1000] if v.strip().lower() not in MISSING]
    return bool(cells) and sum(map(_is_number, cells)) * 2 >= len(cells)


def _name(value):
    """A class name for a number: ``3`` for 3.0, else its shortest repr."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# -- the spec a model keeps ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column: numeric (``mean``, ``scale``) or categorical (``categories``, one input each)."""

    name: str
    mean: float | None = None
    scale: float | None = None
    categories: tuple | None = None

    @property
    def width(self):
        return 1 if self.categories is None else len(self.categories)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """How rows of a table become a network's inputs, and what its outputs mean.

    Attributes
    ----------
    features : tuple of Feature
        The input columns in order; numeric ones standardised, categorical ones one-hot.
    target : str
        The target column's name.
    task : {"classification", "regression"}
    classes : tuple of str
        Classification: the class names, one per output. Regression: ``(target,)``.
    target_mean, target_scale : float
        Regression: the network predicts ``(y - target_mean) / target_scale``.
    """

    features: tuple
    target: str
    task: str
    classes: tuple
    target_mean: float = 0.0
    target_scale: float = 1.0

    @property
    def width(self):
        """The number of network inputs."""
        return sum(f.width for f in self.features)

    @classmethod
    def fit(cls, table, target, task, rows=None):
        """Learn the spec from the training rows of ``table`` (a :class:`Table` that holds ``target``).

        ``rows`` (indices, default all) are the rows the statistics, categories and classes come from; every
        row is checked, so a bad cell is reported wherever the split put it.
        """
        fit = table if rows is None else table.take(np.asarray(rows))
        features = []
        for name, values in table.columns.items():
            if name == target:
                continue
            if _is_numeric(values):
                _numbers(values, name, table.where)
                features.append(Feature(name, *_standard(fit.columns[name], name, fit.where)))
            else:
                _strings(values, name, table.where)
                categories = np.unique(_strings(fit.columns[name], name, fit.where))
                if len(categories) > MAX_CATEGORIES:
                    raise DataError(f"column {name!r} has {len(categories):,} distinct strings, more than the "
                                    f"{MAX_CATEGORIES} categories fcnet one-hot encodes (an identifier or free "
                                    "text? drop the column)")
                features.append(Feature(name, categories=tuple(map(str, categories))))
        if not features:
            raise DataError(f"the table has no column besides the target {target!r}")
        y = table.columns[target]
        if task == "regression":
            _numbers(y, target, table.where)
            return cls(tuple(features), target, task, (target,), *_standard(fit.columns[target], target, fit.where))
        if _is_numeric(y) and not np.array_equal(numbers := _numbers(y, target, table.where), np.round(numbers)):
            raise DataError(f"the target {target!r} holds fractional numbers, not class labels: for numbers to "
                            "predict, train with --task regression")
        _labels(y, target, table.where)  # every row's label is checked, not only the training rows'
        classes = _labels(fit.columns[target], target, fit.where)[1]
        if len(classes) > MAX_CATEGORIES:
            raise DataError(f"the target {target!r} has {len(classes):,} classes, more than {MAX_CATEGORIES}: for "
                            "numbers to predict, train with --task regression")
        if len(classes) < 2:
            raise DataError(f"the target {target!r} has a single class ({str(classes[0])!r}) in the training rows: "
                            "nothing to learn")
        return cls(tuple(features), target, task, tuple(map(str, classes)))

    def transform(self, table, dtype=np.float64):
        """The network inputs of ``table``'s rows, shape ``(n, width)``; extra columns are ignored.

        Raises
        ------
        DataError
            A feature column missing from the table, a missing or non-numeric cell.
        """
        n = len(table)
        x = np.zeros((n, self.width), dtype=dtype)
        at = 0
        for f in self.features:
            values = self._column(table, f.name)
            if f.categories is None:
                x[:, at] = (_numbers(values, f.name, table.where) - f.mean) / f.scale
            else:
                names = _strings(values, f.name, table.where)
                codes = _index(names, f.categories)
                known = np.flatnonzero(codes >= 0)
                x[known, at + codes[known]] = 1
            at += f.width
        return x

    def unknown(self, table):
        """``[(row, column, value)]`` of the categories in ``table`` that training never saw (they encode as 0)."""
        found = []
        for f in self.features:
            if f.categories is not None:
                values = _strings(self._column(table, f.name), f.name, table.where)
                for i in np.flatnonzero(~np.isin(values, f.categories)):
                    found.append((int(i), f.name, str(values[i])))
        return sorted(found)

    def targets(self, table, dtype=np.float64):
        """The training targets of ``table``: class indices ``(n,)``, or standardised numbers ``(n, 1)``."""
        values = self._column(table, self.target)
        if self.task == "regression":
            return ((_numbers(values, self.target, table.where) - self.target_mean) / self.target_scale).astype(
                dtype)[:, None]
        names = _labels(values, self.target, table.where)[0]
        index = _index(names, self.classes)
        if (index < 0).any():
            i = int(np.flatnonzero(index < 0)[0])
            raise DataError(f"{table.where(i)}: class {str(names[i])!r} of {self.target!r} is not one of the "
                            f"{len(self.classes)} classes the training rows have")
        return index

    def decode(self, outputs):
        """Regression: the network's outputs ``(n, 1)`` in the target's units, shape ``(n,)``."""
        return np.asarray(outputs, dtype=np.float64)[:, 0] * self.target_scale + self.target_mean

    def _column(self, table, name):
        if name not in table.columns:
            raise DataError(f"the table has no column {name!r} (its columns: {', '.join(table.columns)})")
        return table.columns[name]

    def to_metadata(self):
        """The JSON dict stored in a model's metadata."""
        return {"features": [{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(f).items()
                              if v is not None} for f in self.features],
                "target": self.target, "task": self.task, "classes": list(self.classes),
                "target_mean": self.target_mean, "target_scale": self.target_scale}

    @classmethod
    def from_metadata(cls, meta, n_inputs, n_outputs):
        """The spec stored by :meth:`to_metadata`, checked against the model's widths; DataError if malformed."""
        try:
            features = []
            for f in meta["features"]:
                if "categories" in f:
                    cats = tuple(f["categories"])
                    if not cats or not all(isinstance(c, str) for c in cats) or list(cats) != sorted(set(cats)):
                        raise ValueError(f"categories of {f['name']!r} must be sorted distinct strings")
                    features.append(Feature(str(f["name"]), categories=cats))
                else:
                    mean, scale = float(f["mean"]), float(f["scale"])
                    if not (math.isfinite(mean) and math.isfinite(scale) and scale > 0):
                        raise ValueError(f"mean and scale of {f['name']!r} must be finite, scale > 0")
                    features.append(Feature(str(f["name"]), mean, scale))
            spec = cls(tuple(features), str(meta["target"]), meta["task"], tuple(map(str, meta["classes"])),
                       float(meta["target_mean"]), float(meta["target_scale"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the model's table description is malformed ({type(exc).__name__}: {exc})") from None
        n_classes = 1 if spec.task == "regression" else len(spec.classes)
        if (spec.task not in TASKS or spec.width != n_inputs or n_classes != n_outputs or len(spec.classes) != n_classes
                or not (math.isfinite(spec.target_mean) and spec.target_scale > 0)):
            raise DataError(f"the model's table description does not fit its {n_inputs} inputs and {n_outputs} outputs")
        return spec


def _labels(values, name, where):
    """Class labels as ``(names, classes)``: the label of each row and the sorted distinct ones (numbers sort
    as numbers, text as text)."""
    if _is_numeric(values):
        unique, inverse = np.unique(_numbers(values, name, where), return_inverse=True)
        classes = np.array([_name(v) for v in unique], dtype=str)
        return classes[inverse.reshape(-1)], classes
    names = _strings(values, name, where)
    return names, np.unique(names)


def _index(names, choices):
    """The position of each of ``names`` in ``choices``, -1 for one not there."""
    lookup = {c: i for i, c in enumerate(choices)}
    return np.fromiter((lookup.get(str(n), -1) for n in names), dtype=np.intp, count=len(names))


# -- a training run's data ------------------------------------------------------------------------------------

def load(dataset, target, task, test_split, seed, limit=None, fit_rows=1.0, dtype=np.float32):
    """Read a table and make it training data, as ``fcnet train --dataset csv:...`` does.

    Parameters
    ----------
    dataset : str
        ``csv:PATH``, ``parquet:PATH`` or ``npz:PATH`` (see :func:`read_table`).
    target : str or None
        The target column (``y`` for ``npz:``, which is the default there).
    task : {"classification", "regression"}
    test_split : float in (0, 1)
        The fraction of rows held out at random (drawn from ``seed``) as the test part, unless the file has
        its own (``x_test``/``y_test`` in an ``.npz``).
    limit : int, optional
        Keep only the first ``limit`` training rows.
    fit_rows : float in (0, 1]
        The leading fraction of the training rows the spec is learnt from (``1 - validation_split``: the
        validation rows are the last ones, as in Keras, and are not looked at).

    Returns
    -------
    (x_train, y_train), (x_test, y_test), TableSpec
    """
    table = read_table(dataset)
    target = target or ("y" if dataset.startswith("npz:") else None)
    if target is None:
        raise ValueError(f"{dataset}: name the target column (--target COLUMN); the columns are "
                         f"{', '.join(table.columns)}")
    if target not in table.columns:
        raise DataError(f"{dataset}: no column {target!r} to predict (the columns are "
                        f"{', '.join(list(table.columns)[:30])}{', ...' if len(table.columns) > 30 else ''})")
    table = typed(table, target, task)
    if table.test is not None:
        rows, test = np.arange(len(table)), table.test
    else:
        n = len(table)
        n_test = round(n * test_split)
        if not 0 < n_test < n:
            raise DataError(f"{dataset}: test_split {test_split} of {n} rows leaves no test or no training rows")
        order = np.random.default_rng(seed).permutation(n)
        rows, test = np.sort(order[n_test:]), table.take(np.sort(order[:n_test]))
    rows = rows[:limit] if limit else rows
    n_fit = int(len(rows) * fit_rows)
    if n_fit == 0:
        raise DataError(f"{dataset}: no training rows left to learn from")
    spec = TableSpec.fit(table, target, task, rows[:n_fit])
    train = table.take(rows)
    return ((spec.transform(train, dtype), spec.targets(train, dtype)),
            (spec.transform(test, dtype), spec.targets(test, dtype)), spec)


def spec_of(model):
    """The :class:`TableSpec` a model trained on a table keeps in its metadata, or None for other models.

    Raises
    ------
    DataError
        The metadata holds a table description that is malformed or does not fit the model.
    """
    meta = model.metadata if isinstance(model.metadata, dict) else {}
    table = meta.get("table")
    return None if table is None else TableSpec.from_metadata(table, model.input_dim, model.output_dim)


def regression_scores(true, pred):
    """``{"r2": coefficient of determination, "mae": mean absolute error}`` of predictions ``pred`` of ``true``."""
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    residual, total = float(((true - pred) ** 2).sum()), float(((true - true.mean()) ** 2).sum())
    return {"r2": 1 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0),
            "mae": float(np.abs(true - pred).mean())}
