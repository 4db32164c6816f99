"""What each ``fcnet`` subcommand does, once :mod:`fcnet.cli` has parsed and checked its flags.

``train`` builds the data and the network from flags, checkpoints every epoch with ``--out``, resumes with
``--resume`` and writes the metrics and figures; the others load a model or a run folder and report on it.
Results go to stdout, messages to stderr; errors are raised as :class:`~fcnet.errors.FcnetError`,
:class:`UsageError` or :class:`Interrupted` and turned into exit codes by :func:`fcnet.cli.main`.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets
from .errors import FcnetError
from .images import DIGIT_SETS

__all__ = ["COMMANDS", "UsageError", "Interrupted", "build_model"]


class UsageError(Exception):
    """A combination of flags that argparse cannot check by itself (exit 2)."""


class Interrupted(Exception):
    """Ctrl-C, after what could be saved was saved (exit 130)."""


# -- commands -------------------------------------------------------------------------------------------------

def build_model(hidden, activation, n_in, n_classes, seed, dtype):
    """The network ``fcnet train`` trains: hidden ``Dense`` layers, then a softmax output."""
    from . import Dense, Sequential

    widths = [*hidden, n_classes]
    acts = [activation] * len(hidden) + ["softmax"]
    layers = [Dense(w, activation=a, input_dim=n_in if i == 0 else None) for i, (w, a) in enumerate(zip(widths, acts))]
    return Sequential(layers, seed=seed, dtype=dtype)


def _data_and_model(args, loss="sparse_categorical_crossentropy"):
    """The data set (``--limit`` applied) and the compiled network that ``train`` and ``compare`` build."""
    if args.momentum and args.optimizer != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only")
    (x_train, y_train), (x_test, y_test) = datasets.load(args.dataset, args.data_dir)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    split = getattr(args, "validation_split", 0.0)
    if split and int(len(x_train) * (1 - split)) in (0, len(x_train)):
        raise FcnetError(f"--validation-split {split} leaves no training or no validation data "
                         f"out of {len(x_train)} images")
    n_classes = len(datasets.class_names(args.dataset)) if args.dataset in datasets.NAMES else int(
        max(y_train.max(), y_test.max())) + 1
    n_in = int(np.prod(x_train.shape[1:]))
    model = build_model(args.hidden, args.activation, n_in, n_classes, args.seed, args.dtype)
    model.metadata = {"dataset": args.dataset, "class_names": list(datasets.class_names(args.dataset))[:n_classes],
                      "image_shape": list(x_train.shape[1:])}
    opt_config = {"name": args.optimizer, "learning_rate": args.lr}
    if args.momentum:
        opt_config["momentum"] = args.momentum
    model.compile(optimizer=opt_config, loss=loss, metrics=["accuracy"])
    return (x_train, y_train), (x_test, y_test), model


_RESUMABLE = {"epochs", "quiet", "resume", "command", "no_figures", "engine"}  # flags --resume may be combined with


def _settings(args):
    """The run's flags as JSON-able settings (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("resume",)}


def _resume(args):
    """Replace ``args`` by the checkpointed run's settings; returns ``(args, model, state)``."""
    from .checkpoint import load_checkpoint
    from .cli import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    given = sorted(k for k, v in vars(args).items() if k not in _RESUMABLE and v != defaults[k])
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"--resume continues a run with its own settings; drop {flags} (only --epochs may change)")
    model, state = load_checkpoint(args.resume)
    settings = dict(state["settings"])
    if args.epochs != defaults["epochs"]:
        settings["epochs"] = args.epochs
    if settings["epochs"] < state["epoch"]:
        raise UsageError(f"{args.resume} has already trained {state['epoch']} epochs; --epochs must be at least that")
    resumed = argparse.Namespace(**{**defaults, **settings, "quiet": args.quiet, "resume": args.resume,
                                    "no_figures": settings.get("no_figures", False) or args.no_figures})
    resumed.out = Path(settings["out"])
    resumed.metrics_json = settings["metrics_json"] and Path(settings["metrics_json"])
    return resumed, model, state


def cmd_train(args):
    from .checkpoint import Checkpoint
    from .training import EpochLog, LearningRateDecay, ProgressBar

    model = state = None
    if args.resume:
        args, model, state = _resume(args)
    (x_train, y_train), (x_test, y_test), built = _data_and_model(args, args.loss)
    model = model or built
    n_train = int(len(x_train) * (1 - args.validation_split))
    steps = math.ceil(n_train / args.batch_size)
    callbacks = [LearningRateDecay(args.lr_decay)] if args.lr_decay != 1 else []
    callbacks += [] if args.quiet else [ProgressBar(args.epochs, steps), EpochLog(args.epochs)]
    checkpoint = None
    if args.out:
        checkpoint = Checkpoint(args.out, _settings(args), state and state["history"])
        callbacks.append(checkpoint)
    arch = "-".join(map(str, [model.input_dim, *args.hidden, model.output_dim]))
    start_epoch = state["epoch"] if state else 0
    print(f"fcnet: {arch} {args.activation}/softmax, {args.optimizer} lr {args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {n_train} {args.dataset} training images, seed {args.seed}"
          + (f"; resuming after epoch {start_epoch}" if state else ""), flush=True)
    start = time.perf_counter()
    try:
        history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                            validation_split=args.validation_split, verbose=0, callbacks=callbacks,
                            initial_epoch=start_epoch, engine=args.engine)
    except KeyboardInterrupt:
        done = len(checkpoint.history.get("loss", [])) if checkpoint else 0
        where = (f"epoch {done} is saved in {args.out}; resume with: fcnet train --resume {args.out}" if checkpoint
                 else "nothing saved (use --out DIR to keep checkpoints)")
        raise Interrupted(f"interrupted; {where}") from None
    total = time.perf_counter() - start
    engine, history = history.engine, history.history
    if checkpoint:
        history = checkpoint.history  # every epoch, those before a resume included
    test = model.evaluate(x_test, y_test)
    print(f"total time {total:.2f}s  steps per epoch {steps}  engine {engine}")
    print(f"test loss {test.loss:.4f}  test accuracy {test.accuracy:.4f}")

    metrics = {
        "config": _settings(args),
        "architecture": arch,
        "steps_per_epoch": steps,
        "epochs": [{"epoch": e + 1, "seconds": h["epoch_seconds"], "loss": h["loss"], "accuracy": h["accuracy"],
                    "val_loss": h.get("val_loss"), "val_accuracy": h.get("val_accuracy")}
                   for e, h in enumerate(_rows(history))],
        "total_seconds": total,
        "engine": engine,
        "test": {"loss": test.loss, "accuracy": test.accuracy},
    }
    model.metadata["test_accuracy"] = test.accuracy
    if args.out:
        model.save(args.out / "model.npz")
        figures = []
        try:
            if not args.no_figures:
                from .report import save_figures

                figures = save_figures(args.out, model, metrics, x_test, y_test)
        except FcnetError as exc:  # matplotlib missing: the model and metrics are saved all the same
            print(f"figures skipped: {exc}", file=sys.stderr)
        _write_json(args.out / "metrics.json", metrics)
        print(f"saved {args.out / 'model.npz'}, {args.out / 'metrics.json'}"
              + (f" and {len(figures)} figures ({', '.join(p.name for p in figures)})" if figures else ""))
    if args.metrics_json:
        _write_json(args.metrics_json, metrics)
    return 0


def _rows(history):
    """History's dict of lists as a list of per-epoch dicts."""
    n = len(history["loss"])
    return [{k: v[i] for k, v in history.items()} for i in range(n)]


def _write_json(path, data):
    from .files import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode()))


def _load(path):
    from .serialization import load_model

    return load_model(path)


def cmd_evaluate(args):
    model = _load(args.model)
    if model.loss is None:
        raise FcnetError(f"{args.model}: the model was saved without a loss; it cannot be evaluated")
    _, (x_test, y_test) = datasets.load(args.dataset, args.data_dir)
    _check_width(model, x_test, args.dataset)
    test = model.evaluate(x_test, y_test)
    print(f"test loss {test.loss:.4f}  test accuracy {test.accuracy:.4f}  ({len(x_test)} {args.dataset} images)")
    return 0


def _check_width(model, x, source):
    width = int(np.prod(x.shape[1:]))
    if width != model.input_dim:
        raise FcnetError(f"{source}: images have {width} pixels but the model expects {model.input_dim} inputs")


def cmd_predict(args):
    from .images import load_image

    model = _load(args.model)
    shape = tuple(model.metadata.get("image_shape") or (28, 28))
    if int(np.prod(shape)) != model.input_dim:
        raise FcnetError(f"{args.model}: the model's {model.input_dim} inputs are not a {shape} image")
    names = model.metadata.get("class_names") or [str(i) for i in range(model.output_dim)]
    digits = args.style == "digits" or (args.style == "auto" and model.metadata.get("dataset") in DIGIT_SETS)
    x = np.stack([load_image(path, shape, digits) for path in args.images])
    probs = model.predict_proba(x)
    for path, p in zip(args.images, probs):
        k = int(p.argmax())
        print(f"{path}: {names[k]} ({p[k]:.3f})")
    return 0


def cmd_summary(args):
    _load(args.model).summary()
    return 0


def cmd_compare(args):
    from .compare import FcnetRunner, NotInstalled, make_runner

    (x_train, y_train), (x_test, y_test), model = _data_and_model(args)
    x_train = x_train.reshape(len(x_train), -1)
    runners = [FcnetRunner(model, args.batch_size, args.engine)]
    for name in args.framework:  # built before any training: every runner starts from the same weights
        try:
            runners.append(make_runner(name, model, args.batch_size))
        except NotInstalled:
            print(f"{name}: not installed (pip install 'fcnet[{name}]')")
    arch = "-".join(map(str, [model.input_dim, *args.hidden, model.output_dim]))
    print(f"{arch} {args.activation}/softmax, {args.optimizer} lr {args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {len(x_train)} {args.dataset} training images, seed {args.seed}; same initial "
          "weights and data order for all")
    print(f"{'epoch':>5}  {'framework':<9} {'seconds':>8} {'loss':>8} {'train acc':>9} {'test acc':>8}")
    orders = np.random.default_rng(args.seed)
    seconds = {r.name: [] for r in runners}
    for epoch in range(args.epochs):
        order = orders.permutation(len(x_train))
        turn = runners[epoch % len(runners):] + runners[:epoch % len(runners)]  # alternate who goes first
        results = {r.name: r.train_epoch(x_train, y_train, order) for r in turn}
        for r in runners:
            secs, loss = results[r.name]
            seconds[r.name].append(secs)
            train_acc, test_acc = r.evaluate(x_train, y_train)[1], r.evaluate(x_test, y_test)[1]
            print(f"{epoch + 1:>5}  {r.name:<9} {secs:>8.3f} {loss:>8.4f} {train_acc:>9.4f} {test_acc:>8.4f}",
                  flush=True)
    mine = float(np.median(seconds["fcnet"]))
    for r in runners[1:]:
        theirs = float(np.median(seconds[r.name]))
        print(f"median seconds per epoch: fcnet {mine:.3f}, {r.name} {theirs:.3f}; fcnet / {r.name} = "
              f"{mine / theirs:.2f}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import TOLERANCE, gradcheck

    model = build_model(args.hidden, args.activation, args.inputs, args.classes, args.seed, "float64")
    model.compile("sgd", args.loss)
    rng = np.random.default_rng(args.seed)
    for layer in model.layers:  # non-zero biases keep every unit off ReLU's kink at z = 0
        layer.params["b"][:] = rng.normal(0, 0.1, layer.units)
    x, y = rng.random((args.batch_size, args.inputs)), rng.integers(0, args.classes, args.batch_size)
    arch = "-".join(map(str, [args.inputs, *args.hidden, args.classes]))
    print(f"{arch} {args.activation}/softmax, {args.loss}, batch {args.batch_size}, seed {args.seed}")
    checks = [(f"finite differences (eps {args.eps:g}, tolerance {TOLERANCE:g})",
               gradcheck(model, x, y, eps=args.eps, max_entries=args.entries, seed=args.seed))]
    if not args.no_torch:
        try:
            from .torchcheck import TORCH_TOLERANCE, torch_check

            checks.append((f"torch autograd (float64, tolerance {TORCH_TOLERANCE:g})", torch_check(model, x, y)))
        except FcnetError as exc:
            print(f"torch autograd: skipped ({exc})")
    failed = []
    for title, result in checks:
        print(f"\n{title}\n{result.table()}")
        failed += [f"{row.name} ({title.split(' (')[0]})" for row in result if not row.passed]
    if failed:
        print(f"fcnet: error: gradient check failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\nevery gradient agrees")
    return 0


def cmd_sweep(args):
    from .sweep import run_sweep, write_outputs

    ranked, failed = run_sweep(args.spec, args.out, args.scheduler, args.workers, progress=not args.quiet)
    print(write_outputs(args.out, ranked))
    for run in failed:
        print(f"failed: {run['id']} {run['error']}", file=sys.stderr)
    print(f"{len(ranked)} finished, {len(failed)} failed; store {args.out / 'runs.sqlite'}, table "
          f"{args.out / 'sweep.csv'}" + (f", figures {args.out / 'sweep_axes.png'} and "
                                          f"{args.out / 'sweep_curves.png'}" if ranked else ""))
    return 1 if failed else 0


def cmd_runs(args):
    from .runstore import RunStore

    path = args.store / "runs.sqlite" if args.store.is_dir() else args.store
    if not path.is_file():
        raise FcnetError(f"{path}: no run store (fcnet sweep --out DIR writes DIR/runs.sqlite)")
    store = RunStore(path)
    try:
        if args.action == "show":
            run = store.get(args.id or "")
            if run is None:
                raise FcnetError(f"no single run matches {args.id!r}")
            print(json.dumps(run, indent=2))
            return 0
        rows = store.best(args.metric, args.n) if args.action == "best" else store.runs()
        for r in rows:
            acc = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "—"
            spe = f"{r['seconds_per_epoch']:.3f}s/epoch" if r["seconds_per_epoch"] is not None else ""
            settings = " ".join(f"{k}={v}" for k, v in r["config"].items() if k in ("hidden", "activation",
                                                                                     "optimizer", "lr", "seed"))
            print(f"{r['id']}  {r['status']:<7} {acc:>7} {spe:>14}  {settings}")
    finally:
        store.close()
    return 0


def cmd_serve(args):
    try:
        import uvicorn
    except ImportError:
        raise FcnetError("serving needs FastAPI and uvicorn: pip install 'fcnet[serve]'") from None
    import socket

    from .serve import create_app

    app = create_app(_load(args.model), args.model)
    with socket.socket() as probe:  # say so in one line, before uvicorn logs its own failure
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise FcnetError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                             "pick another --port") from None
    print(f"serving {args.model} on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_plot(args):
    from . import plots
    from .report import figure, read_run

    metrics = read_run(args.run)
    model = x_test = y_test = None
    if args.kind != "curves":
        model = _load(args.run / "model.npz")
        dataset = model.metadata.get("dataset")
        if dataset is None:
            raise FcnetError(f"{args.run / 'model.npz'}: no data set recorded with the model")
        _, (x_test, y_test) = datasets.load(dataset, args.data_dir)
        _check_width(model, x_test, dataset)
    plots.save(figure(args.kind, model, metrics, x_test, y_test), args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_report(args):
    from .report import write_report

    path = write_report(args.runs, args.output)
    print(f"report: {path.resolve()}")
    return 0


def cmd_download(args):
    folder = datasets.download(args.dataset, args.data_dir, fetch=not args.offline)
    print(f"{args.dataset}: verified in {folder}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "summary": cmd_summary,
            "gradcheck": cmd_gradcheck, "compare": cmd_compare, "sweep": cmd_sweep, "runs": cmd_runs,
            "serve": cmd_serve, "plot": cmd_plot, "report": cmd_report,
            "download": cmd_download}
