"""Reading table files: CSV, Parquet and NPZ into columns (:class:`Table`), checked for size and shape.

What the columns mean (numbers, categories, the target) is :mod:`fcnet.tables`' :class:`~fcnet.tables.TableSpec`.
"""

import csv
import dataclasses
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError, FcnetError

__all__ = ["KINDS", "Table", "is_table", "read_table", "MAX_FILE_BYTES"]

KINDS = ("csv", "parquet", "npz")
MAX_FILE_BYTES = 4 << 30


def is_table(dataset):
    """Whether a data set name is a table (``csv:PATH``, ``parquet:PATH``, ``npz:PATH``)."""
    kind, sep, path = str(dataset).partition(":")
    return bool(sep) and kind in KINDS and bool(path)


# -- reading ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Table:
    """The columns of a table as read: ``{name: array}``, float64 for numbers, ``str`` arrays for text.

    ``where(i)`` says where row ``i`` is in the file (for messages); ``test`` is the file's own test part, if any.
    """

    columns: dict
    where: object
    test: "Table | None" = None

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def take(self, rows):
        """The table of ``rows`` (indices), with their places in the file kept for messages."""
        return Table({k: v[rows] for k, v in self.columns.items()}, lambda i, w=self.where: w(int(rows[i])))


def read_table(dataset):
    """Read ``csv:PATH``, ``parquet:PATH`` or ``npz:PATH`` (or a bare path, by its extension) into a :class:`Table`.

    Raises
    ------
    DataError
        Missing, unreadable or malformed file (a row with the wrong number of fields, duplicate column names,
        an unsupported column type), in one line.
    """
    kind, sep, name = str(dataset).partition(":")
    if not (sep and kind in KINDS):
        kind, name = Path(dataset).suffix.lower().lstrip("."), str(dataset)
        if kind not in KINDS:
            raise DataError(f"{dataset}: not a table file (.csv, .parquet or .npz, or say csv:PATH)")
    path = Path(name).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_FILE_BYTES:,} fcnet reads")
    table = {"csv": _read_csv, "parquet": _read_parquet, "npz": _read_npz}[kind](path)
    if not table.columns or not len(table):
        raise DataError(f"{path}: no data rows")
    return table


def _read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise DataError(f"{path}: empty file (the first line must name the columns)")
            header = [h.strip() for h in header]
            other = [d for d in ";\t|" if len(header) == 1 and d in header[0]]
            if other:
                raise DataError(f"{path}: one column named {header[0][:60]!r}: fcnet reads comma-separated files, "
                                f"and this one looks {other[0]!r}-separated")
            _check_names(header, path)
            numbers = _numeric_csv(f, len(header))
            if numbers is not None:  # every cell a finite number: nothing to report line by line
                return Table({name: numbers[:, j] for j, name in enumerate(header)}, lambda i: f"{path}, row {i + 1}")
            f.seek(0)
            reader = csv.reader(f)
            next(reader)
            rows, lines = [], []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):  # a blank line
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    columns = {name: np.array([r[j] for r in rows], dtype=str) for j, name in enumerate(header)}
    return Table(columns, lambda i: f"{path}, line {lines[i]}")


def _numeric_csv(f, width):
    """The rest of an all-numeric CSV file as a float64 array ``(n, width)`` (NumPy's C parser, several times
    faster than the csv module), or None for anything else: text, empty cells, NaN, ragged rows."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": the caller says it better
            numbers = np.loadtxt(f, delimiter=",", quotechar='"', comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    if numbers.shape[1:] != (width,) or not np.isfinite(numbers).all():
        return None
    return numbers


def _check_names(names, path):
    if any(not n for n in names):
        raise DataError(f"{path}: column {names.index('') + 1} has no name in the header")
    seen = set()
    for n in names:
        if n in seen:
            raise DataError(f"{path}: two columns are named {n!r}")
        seen.add(n)


def _read_parquet(path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise FcnetError("Parquet files need pyarrow: pip install 'fcnet[parquet]'") from None
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    _check_names(arrow.column_names, path)
    columns = {}
    for name, column in zip(arrow.column_names, arrow.columns):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if column.null_count:
            i = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path}, row {i + 1}: column {name!r} has a missing value (null); fill or drop it")
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            columns[name] = column.to_numpy().astype(np.float64)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns[name] = np.array(column.to_pylist(), dtype=str)
        else:
            raise DataError(f"{path}: column {name!r} is of type {kind}; fcnet reads numbers and strings")
    return Table(columns, lambda i: f"{path}, row {i + 1}")


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({str(exc)[:200]})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
    for names in (("x", "y"), ("x_train", "y_train")):
        if set(names) <= set(arrays):
            break
    else:
        raise DataError(f"{path}: an .npz table holds arrays x and y (or x_train, y_train, x_test, y_test); "
                        f"found {', '.join(sorted(arrays)) or 'none'}")
    train = _npz_part(arrays[names[0]], arrays[names[1]], path, names)
    if names[0] == "x_train" and {"x_test", "y_test"} <= set(arrays):
        train.test = _npz_part(arrays["x_test"], arrays["y_test"], path, ("x_test", "y_test"))
        if len(train.test.columns) != len(train.columns):
            raise DataError(f"{path}: x_test has {len(train.test.columns) - 1} columns, x_train "
                            f"{len(train.columns) - 1}")
    return train


def _npz_part(x, y, path, names):
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {names[0]} must be a 2-D array of numbers, got {x.dtype}{list(x.shape)}")
    if y.ndim != 1 or y.dtype.kind not in "biufU" or len(y) != len(x):
        raise DataError(f"{path}: {names[1]} must be a 1-D array of {len(x)} numbers or strings, got "
                        f"{y.dtype}{list(y.shape)}")
    columns = {f"x{j}": x[:, j].astype(np.float64) for j in range(x.shape[1])}
    columns["y"] = y.astype(np.float64) if y.dtype.kind != "U" else y
    return Table(columns, lambda i: f"{path}, {names[0]} row {i}")


# -- columns as numbers --------------------------------------------------------------------------------------
