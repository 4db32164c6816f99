"""The ``fcnet`` command line: its flags, their checks, and the exit codes (the subcommands live in commands.py).

``fcnet train`` and ``fcnet compare`` take one flag per :class:`~fcnet.config.TrainConfig` field, built
from the dataclass (its check, its help, its default), and map them to a config and nothing else.

Results go to stdout, progress and messages to stderr. Exit codes: 0 success,
1 runtime error (one line: data not found offline, checksum mismatch, a bad
file, a diverged run), 2 usage error, 130 interrupted.
"""

import argparse
import dataclasses
import logging
import math
import os
import sqlite3
import sys
from pathlib import Path

from . import datasets
from .commands import COMMANDS, COMPARE_EPOCHS, UsageError
from .config import TrainConfig
from .errors import FcnetError, RunInterrupted
from .records import PREPARATIONS
from .report import FIGURES
from .run import RESUMABLE
from .runstore import METRICS
from .sweep import MAX_TRIALS, bundled_sweeps

__all__ = ["main", "build_parser"]

log = logging.getLogger("fcnet")


# -- argument types: each rejects a bad value with a one-line usage error (exit 2) ------------------------------

def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer ≥ 1")
positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a number > 0")


def _setting(field):
    """The argparse type of a :class:`TrainConfig` field (or its name): its check, its message as a usage error."""
    field = FIELDS.get(field, field)
    check = field.metadata["check"]

    def parse(text):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    parse.__name__ = field.name  # argparse names the type in some messages
    return parse


# -- the parser -----------------------------------------------------------------------------------------------

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _config_flags(parser, names, defaults=None):
    """``--name`` flags for the TrainConfig fields ``names``. Their default is None (= not given): the
    config's own defaults apply, and ``--resume`` can tell which flags were given."""
    defaults = {**TrainConfig().to_dict(), **(defaults or {})}
    for name in names:
        f, default = FIELDS[name], defaults[name]
        choices = getattr(f.metadata["check"], "choices", None)
        if isinstance(default, bool):  # a switch: --batch-norm; absent (not False) unless given
            parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                                action="store_const", const=True, help=f.metadata["help"])
            continue
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, choices=choices,
                            type=None if choices else _setting(f),
                            help=f.metadata["help"] if default is None else f"{f.metadata['help']} (default: {shown})")


def build_parser():
    parser = argparse.ArgumentParser(prog="fcnet", description="Fully-connected networks with hand-written backprop.")
    parser.add_argument("--version", action="version", version=f"fcnet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.subcommands = sub.choices  # name → its parser, for errors in the subcommand's own words

    train = sub.add_parser("train", help="train a network (defaults: the seed 001 lab, 784-300-10 on MNIST)")
    _config_flags(train, FIELDS)
    train.add_argument("--out", type=Path, help="folder to save model.npz and metrics.json in")
    train.add_argument("--metrics-json", type=Path, help="write the run's metrics as JSON here")
    train.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    train.add_argument("--no-figures", action="store_true", help="with --out, skip the PNG figures")
    train.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue the run checkpointed in DIR with its own settings (only "
                            f"{', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} may change)")

    compare = sub.add_parser("compare", help="train the same network in fcnet and other frameworks, side by side")
    compare.add_argument("--framework", type=framework_list, default=["torch", "keras"], metavar="NAME[,NAME...]",
                         help="frameworks to compare with fcnet: torch, torch-compile, keras, jax, jax-eigen "
                         "(default: torch,keras)")
    _config_flags(compare, FIELDS, defaults={"epochs": COMPARE_EPOCHS})  # race() refuses what peers do not mirror

    evaluate = sub.add_parser("evaluate", help="test loss and accuracy of a saved model")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--dataset", type=_setting("dataset"),
                          help="data set to test on (default: the one the model was trained on); for a model "
                               "trained on a table, the table of rows to test on (csv:PATH, parquet:PATH, npz:PATH)")
    evaluate.add_argument("--data-dir")

    predict = sub.add_parser("predict", help="classify image files, or predict the rows of a table, with a saved model")
    predict.add_argument("model", type=Path)
    predict.add_argument("images", type=Path, nargs="+", metavar="FILE",
                         help="image files, or for a model trained on a table one table (csv, parquet, npz)")
    predict.add_argument("-o", "--output", type=Path, help="a table model's predictions as CSV (default: stdout)")
    predict.add_argument("--style", choices=["auto", *PREPARATIONS], default="auto",
                         help="digits: crop, scale to 20x20 and centre by mass like MNIST; fit: resize the whole "
                              "picture; auto: the model's own (digits for mnist and kmnist models, fit otherwise)")

    summary = sub.add_parser("summary", help="print a saved model's layers and parameter counts")
    summary.add_argument("model", type=Path)

    check = sub.add_parser("gradcheck", help="prove the backward pass: finite differences, and PyTorch if installed",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _config_flags(check, ("hidden", "activation", "seed", "loss", "label_smoothing", "batch_norm"))
    check.add_argument("--inputs", type=positive_int, default=784, help="input width")
    check.add_argument("--classes", type=positive_int, default=10)
    check.add_argument("--batch-size", type=positive_int, default=8)
    check.add_argument("--eps", type=positive_float, default=1e-6, help="finite-difference step")
    check.add_argument("--entries", type=positive_int, default=64, help="entries checked per parameter array")
    check.add_argument("--no-torch", action="store_true", help="skip the PyTorch cross-check")

    sweep = sub.add_parser("sweep", help="run a TOML sweep of training runs on Dask, recorded in SQLite")
    sweep.add_argument("spec", help="the sweep file, or the name of one shipped with fcnet: "
                                    f"{', '.join(bundled_sweeps())}")
    sweep.add_argument("--out", type=Path, required=True, help="the sweep folder: trials/, runs.sqlite, outputs")
    sweep.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask cluster (default: local)")
    sweep.add_argument("--workers", type=positive_int, help="local worker processes (default: one per core)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--max-trials", type=positive_int, default=MAX_TRIALS,
                       help=f"refuse a sweep of more trials than this (default {MAX_TRIALS:,}) unless --yes")
    sweep.add_argument("--yes", action="store_true", help="run however many trials the sweep has")

    runs = sub.add_parser("runs", help="read a run store: list, show ID, best")
    runs.add_argument("action", choices=["list", "show", "best"])
    runs.add_argument("id", nargs="?", help="run id (or a unique prefix) for show")
    runs.add_argument("--store", type=Path, default=Path("."), help="runs.sqlite or the folder that holds it")
    runs.add_argument("--metric", default="test_accuracy",
                      choices=METRICS)
    runs.add_argument("-n", type=positive_int, default=10, help="how many runs for best")

    serve = sub.add_parser("serve", help="a web page to draw a digit and see the model's prediction")
    serve.add_argument("model", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 exposes it to the network)")
    serve.add_argument("--port", type=_number(int, lambda v: 0 <= v < 65536, "a port number"), default=8000)

    plot = sub.add_parser("plot", help="draw one figure of a run folder")
    plot.add_argument("run", type=Path, help="a folder written by fcnet train --out")
    plot.add_argument("--kind", choices=list(FIGURES), default="curves",
                      help="regression: a table regression's predictions against the truth")
    plot.add_argument("-o", "--output", type=Path, required=True, help="PNG or SVG file to write")
    plot.add_argument("--data-dir")

    report = sub.add_parser("report", help="one self-contained HTML report of one or more runs")
    report.add_argument("runs", type=Path, nargs="+", help="folders written by fcnet train --out")
    report.add_argument("-o", "--output", type=Path,
                        help="the HTML file to write (default: report.html, which is never overwritten unasked)")

    export = sub.add_parser("export", help="write a model as an ONNX graph, to run where fcnet is not installed")
    export.add_argument("model", type=Path, help="a model file (model.npz)")
    export.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")

    download = sub.add_parser("download", help="find or download a data set and verify its checksums")
    download.add_argument("dataset", choices=datasets.NAMES)
    download.add_argument("--data-dir")
    download.add_argument("--offline", action="store_true", help="only look on disk; exit 1 if it is not there")
    return parser


def framework_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    from .compare import RUNNERS

    unknown = [name for name in names if name not in RUNNERS or name == "fcnet"]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(n for n in RUNNERS if n != 'fcnet')}")
    return names


def _version():
    from . import __version__

    return __version__


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # say it with the subcommand's usage, not the top-level one
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if not log.handlers:  # fcnet's own messages only; libraries' loggers are left as they are
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fcnet: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        parser.exit(2, f"fcnet {args.command}: error: {exc}\n")
    except (FcnetError, ValueError) as exc:
        print(f"fcnet: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder, a file where a folder goes, permission denied
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fcnet: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"fcnet: error: the run store: {exc}", file=sys.stderr)
        return 1
    except RunInterrupted as exc:
        print(f"fcnet: {exc}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as a killed pipeline member would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("fcnet: interrupted", file=sys.stderr)
        return 130
