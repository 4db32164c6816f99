"""The ``fcnet`` command line: its flags, their checks, and the exit codes (the subcommands live in commands.py).

Results go to stdout, progress and messages to stderr. Exit codes: 0 success,
1 runtime error (one line: data not found offline, checksum mismatch, a bad
file, a diverged run), 2 usage error, 130 interrupted.
"""

import argparse
import logging
import math
import sys
from pathlib import Path

from . import activations, datasets, losses, optimizers
from .commands import COMMANDS, Interrupted, UsageError
from .errors import FcnetError

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
fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
non_negative_int = _number(int, lambda v: v >= 0, "an integer ≥ 0")


def hidden_sizes(text):
    """``"256,128"`` → ``[256, 128]``; ``""`` or ``"none"`` → no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: hidden sizes are integers ≥ 1 separated by commas") from None


def dataset_name(text):
    if text in datasets.NAMES or (text.startswith("idx:") and len(text) > 4):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(datasets.NAMES)} or idx:DIR")


# -- the parser -----------------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="fcnet", description="Fully-connected networks with hand-written backprop.")
    parser.add_argument("--version", action="version", version=f"fcnet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a network (defaults: the seed 001 lab, 784-300-10 on MNIST)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _network_flags(train)
    _training_flags(train)
    train.add_argument("--loss", choices=losses.NAMES, default="sparse_categorical_crossentropy",
                       help="loss on a softmax output")
    train.add_argument("--lr-decay", type=_number(float, lambda v: 0 < v <= 1, "in (0, 1]"), default=1.0,
                       help="multiply the learning rate by this after every epoch")
    train.add_argument("--validation-split", type=fraction, default=0.0)
    train.add_argument("--out", type=Path, help="folder to save model.npz and metrics.json in")
    train.add_argument("--metrics-json", type=Path, help="write the run's metrics as JSON here")
    train.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    train.add_argument("--no-figures", action="store_true", help="with --out, skip the PNG figures")
    train.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue the run checkpointed in DIR (by --out) with its own settings")

    compare = sub.add_parser("compare", help="train the same network in fcnet and other frameworks, side by side",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    compare.add_argument("--framework", type=framework_list, default=["torch", "keras"], metavar="NAME[,NAME...]",
                         help="frameworks to compare with fcnet: torch, keras")
    _network_flags(compare)
    _training_flags(compare, epochs=5)

    evaluate = sub.add_parser("evaluate", help="test loss and accuracy of a saved model")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--dataset", type=dataset_name, default="mnist")
    evaluate.add_argument("--data-dir")

    predict = sub.add_parser("predict", help="classify image files with a saved model")
    predict.add_argument("model", type=Path)
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument("--style", choices=["auto", "digits", "fit"], default="auto",
                         help="digits: crop, scale to 20x20 and centre by mass like MNIST; fit: resize the whole "
                              "picture; auto: digits for mnist and kmnist models, fit otherwise")

    summary = sub.add_parser("summary", help="print a saved model's layers and parameter counts")
    summary.add_argument("model", type=Path)

    check = sub.add_parser("gradcheck", help="prove the backward pass: finite differences, and PyTorch if installed",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _network_flags(check)
    check.add_argument("--loss", choices=losses.NAMES, default="sparse_categorical_crossentropy")
    check.add_argument("--inputs", type=positive_int, default=784, help="input width")
    check.add_argument("--classes", type=positive_int, default=10)
    check.add_argument("--batch-size", type=positive_int, default=8)
    check.add_argument("--eps", type=positive_float, default=1e-6, help="finite-difference step")
    check.add_argument("--entries", type=positive_int, default=64, help="entries checked per parameter array")
    check.add_argument("--no-torch", action="store_true", help="skip the PyTorch cross-check")

    sweep = sub.add_parser("sweep", help="run a TOML sweep of training runs on Dask, recorded in SQLite")
    sweep.add_argument("spec", type=Path, help="the sweep file (see examples/sweeps/)")
    sweep.add_argument("--out", type=Path, required=True, help="the sweep folder: trials/, runs.sqlite, outputs")
    sweep.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask cluster (default: local)")
    sweep.add_argument("--workers", type=positive_int, help="local worker processes (default: one per core)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")

    runs = sub.add_parser("runs", help="read a run store: list, show ID, best")
    runs.add_argument("action", choices=["list", "show", "best"])
    runs.add_argument("id", nargs="?", help="run id (or a unique prefix) for show")
    runs.add_argument("--store", type=Path, default=Path("."), help="runs.sqlite or the folder that holds it")
    runs.add_argument("--metric", default="test_accuracy",
                      choices=["test_accuracy", "test_loss", "seconds_per_epoch", "total_seconds"])
    runs.add_argument("-n", type=positive_int, default=10, help="how many runs for best")

    serve = sub.add_parser("serve", help="a web page to draw a digit and see the model's prediction")
    serve.add_argument("model", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 exposes it to the network)")
    serve.add_argument("--port", type=_number(int, lambda v: 0 <= v < 65536, "a port number"), default=8000)

    plot = sub.add_parser("plot", help="draw one figure of a run folder")
    plot.add_argument("run", type=Path, help="a folder written by fcnet train --out")
    plot.add_argument("--kind", choices=["curves", "confusion", "predictions", "mistakes", "weights"],
                      default="curves")
    plot.add_argument("-o", "--output", type=Path, required=True, help="PNG or SVG file to write")
    plot.add_argument("--data-dir")

    report = sub.add_parser("report", help="one self-contained HTML report of one or more runs")
    report.add_argument("runs", type=Path, nargs="+", help="folders written by fcnet train --out")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"))

    download = sub.add_parser("download", help="find or download a data set and verify its checksums")
    download.add_argument("dataset", choices=datasets.NAMES)
    download.add_argument("--data-dir")
    download.add_argument("--offline", action="store_true", help="only look on disk; exit 1 if it is not there")
    return parser


def _network_flags(parser):
    parser.add_argument("--hidden", type=hidden_sizes, default=[300], metavar="N[,N...]",
                        help="hidden layer widths, e.g. 256,128,64,64")
    parser.add_argument("--activation", choices=activations.NAMES, default="relu", help="hidden-layer activation")
    parser.add_argument("--seed", type=non_negative_int, default=0)


def _training_flags(parser, epochs=20):
    parser.add_argument("--dataset", type=dataset_name, default="mnist", help="data set name or idx:DIR")
    parser.add_argument("--optimizer", choices=optimizers.NAMES, default="sgd")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="learning rate")
    parser.add_argument("--momentum", type=fraction, default=0.0, help="SGD momentum")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--data-dir", help="folder searched first for the data set (default $FCNET_DATA)")
    parser.add_argument("--limit", type=positive_int, help="use only the first N training images")
    parser.add_argument("--engine", choices=["auto", "numpy", "numba"], default="auto",
                        help="numba: the compiled training loop (fcnet[fast]); numpy: the reference; auto: numba "
                             "when installed and it covers the model")


def framework_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    from .compare import RUNNERS

    unknown = [name for name in names if name not in RUNNERS or name == "fcnet"]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from torch, keras")
    return names


def _version():
    from . import __version__

    return __version__


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except Interrupted as exc:
        print(f"fcnet: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("fcnet: interrupted", file=sys.stderr)
        return 130
