"""What each ``fcnet`` subcommand does, once :mod:`fcnet.cli` has parsed and checked its flags.

``train`` maps its flags to a :class:`~fcnet.config.TrainConfig` and calls :func:`~fcnet.run.train_run`, which
checkpoints, resumes and writes the run folder; the others load a model or a run folder and report on it.
Results go to stdout, messages to stderr; errors are raised as :class:`~fcnet.errors.FcnetError`,
:class:`UsageError` or :class:`~fcnet.errors.RunInterrupted` and turned into exit codes by :func:`fcnet.cli.main`.
"""

import json
import sys
from pathlib import Path

import numpy as np

from . import datasets, tables
from .builder import build_model
from .config import TrainConfig, trial_name
from .errors import FcnetError
from .records import TEST_NAMES, ModelInfo, RunMetrics
from .run import checkpoint_config, load_data, test_metrics, train_run

__all__ = ["COMMANDS", "UsageError", "COMPARE_EPOCHS"]

COMPARE_EPOCHS = 5  # fcnet compare's default: enough to see the curves meet, short enough to wait for


class UsageError(Exception):
    """A combination of flags that argparse cannot check by itself (exit 2)."""


# -- commands -------------------------------------------------------------------------------------------------

def _config(args, **defaults):
    """The TrainConfig of the flags given (those left at None take ``defaults``, then the config's own)."""
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names() and v is not None}
    try:
        return TrainConfig(**{**defaults, **given})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_train(args):
    if args.resume:
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise UsageError("--resume DIR writes to DIR; drop --out or give the same folder")
        try:
            config = checkpoint_config(args.resume)
            config = config.replace(**{k: v for k, v in vars(args).items()
                                       if k in TrainConfig.field_names() and v is not None})
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        out = args.resume
    else:
        config, out = _config(args), args.out
    try:
        result = train_run(config, out=out, resume=bool(args.resume), verbose=1 if args.quiet else 2,
                           figures=not args.no_figures)
    except ValueError as exc:
        if args.resume:  # a flag that a resumed run cannot change
            raise UsageError(str(exc)) from None
        raise
    if args.metrics_json:
        result.metrics.write(args.metrics_json)
    return 0


def _load(path):
    from .saving import load_model

    return load_model(path)


def _dataset_of(model, path, given):
    """The data set a command tests ``model`` on: the one given, else the one it was trained on."""
    dataset = given or ModelInfo.of(model).dataset
    if dataset is None:
        raise FcnetError(f"{path}: no data set recorded with the model; pass --dataset")
    return dataset


def cmd_evaluate(args):
    model = _load(args.model)
    if model.loss is None:
        raise FcnetError(f"{args.model}: the model was saved without a loss; it cannot be evaluated")
    spec = tables.spec_of(model)
    if spec is not None:
        if args.dataset is None or not tables.is_table(args.dataset):
            raise UsageError(f"{args.model} was trained on a table: give the rows to evaluate it on, with their "
                             f"{spec.target!r} column, as --dataset csv:PATH (or parquet:, npz:)")
        table = tables.read_table(args.dataset)
        x, y, source = spec.transform(table, model.dtype), spec.targets(table, model.dtype), f"{args.dataset} rows"
    else:
        dataset = _dataset_of(model, args.model, args.dataset)
        _, (x, y) = datasets.load(dataset, args.data_dir)
        _check_width(model, x, dataset)
        source = f"{dataset} images"
    results = test_metrics(model, x, y)
    print("  ".join(f"test {TEST_NAMES.get(k, k)} {v:.4f}" for k, v in results.items()) + f"  ({len(x)} {source})")
    return 0


def _check_width(model, x, source):
    width = int(np.prod(x.shape[1:]))
    if width != model.input_dim:
        raise FcnetError(f"{source}: images have {width} pixels but the model expects {model.input_dim} inputs")


def cmd_predict(args):
    model = _load(args.model)
    spec = tables.spec_of(model)
    if spec is not None:
        return _predict_table(model, spec, args)
    if args.output is not None:
        raise UsageError("-o/--output writes a table's predictions; this model classifies pictures")
    from .images import is_blank, load_image

    info = ModelInfo.of(model)
    if info.image_shape is None:
        raise FcnetError(f"{args.model}: the model's {model.input_dim} inputs are not an image")
    digits = (info.preparation if args.style == "auto" else args.style) == "digits"
    x = np.stack([load_image(path, info.image_shape, digits) for path in args.images])
    for path, picture in zip(args.images, x):
        if is_blank(picture):
            print(f"fcnet: warning: {path}: the prepared picture is blank; its prediction means nothing",
                  file=sys.stderr)
    probs = model.predict_proba(x)
    for path, p in zip(args.images, probs):
        k = int(p.argmax())
        print(f"{path}: {info.class_names[k]} ({p[k]:.3f})")
    return 0


def _predict_table(model, spec, args):
    """``fcnet predict MODEL rows.csv [-o predictions.csv]``: one output row per input row."""
    import csv
    import io

    if len(args.images) != 1:
        raise UsageError(f"{args.model} was trained on a table: give one table of rows to predict (csv, parquet "
                         "or npz), not several files")
    table = tables.read_table(str(args.images[0]))
    x = spec.transform(table, model.dtype)
    unknown = spec.unknown(table)
    for i, column, value in unknown[:5]:
        print(f"fcnet: warning: {table.where(i)}: {column!r} is {value!r}, a category training never saw "
              "(encoded as none of them)", file=sys.stderr)
    if len(unknown) > 5:
        print(f"fcnet: warning: {len(unknown) - 5} more cells hold categories training never saw", file=sys.stderr)
    out = model.predict(x)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if spec.task == "regression":
        writer.writerow([spec.target])
        writer.writerows([f"{v:.10g}"] for v in spec.decode(out))
    else:
        writer.writerow([spec.target, *(f"p_{c}" for c in spec.classes)])
        probs = model.predict_proba(x)
        writer.writerows([spec.classes[int(p.argmax())], *(f"{q:.6f}" for q in p)] for p in probs)
    if args.output is None:
        sys.stdout.write(text.getvalue())
    else:
        from .files import atomic_write

        atomic_write(args.output, lambda f: f.write(text.getvalue().encode()))
        print(f"wrote {args.output}: {len(x)} predictions of {spec.target!r}", file=sys.stderr)
    return 0


def cmd_summary(args):
    _load(args.model).summary()
    return 0


def cmd_compare(args):
    from .compare import Unmirrored, race

    config = _config(args, epochs=COMPARE_EPOCHS)
    try:
        race(config, args.framework, say=lambda line: print(line, flush=True),
             warn=lambda line: print(line, file=sys.stderr))
    except Unmirrored as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_gradcheck(args):
    from .gradcheck import TOLERANCE, biases_off_the_kinks, gradcheck

    net = _config(args)
    binary = net.loss == "binary_crossentropy"  # independent yes/no outputs: sigmoids, 0/1 targets
    output = "sigmoid" if binary else "softmax"
    model = build_model(net.hidden, net.activation, args.inputs, args.classes, net.seed, "float64", output=output,
                        batch_norm=net.batch_norm)
    model.compile("sgd", net.loss_identifier)
    rng = np.random.default_rng(net.seed)
    x = rng.random((args.batch_size, args.inputs))
    y = rng.integers(0, 2 if binary else args.classes, (args.batch_size, args.classes) if binary else args.batch_size)
    biases_off_the_kinks(model, x, rng)  # no unit on ReLU's kink, where a finite difference is meaningless
    arch = "-".join(map(str, [args.inputs, *net.hidden, args.classes]))
    print(f"{arch} {net.activation}/{output}{', batch norm' if net.batch_norm else ''}, {net.loss}"
          f"{f' (label smoothing {net.label_smoothing:g})' if net.label_smoothing else ''}, "
          f"batch {args.batch_size}, seed {net.seed}")
    checks = [(f"finite differences (eps {args.eps:g}, tolerance {TOLERANCE:g})",
               gradcheck(model, x, y, eps=args.eps, max_entries=args.entries, seed=net.seed))]
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
    from .sweep import run_sweep, spec_path, write_outputs

    say = None if args.quiet else lambda line: print(line, file=sys.stderr)
    ranked, failed = run_sweep(spec_path(args.spec), args.out, args.scheduler, args.workers, progress=not args.quiet,
                               max_trials=None if args.yes else args.max_trials, say=say)
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
    store = RunStore(path, create=False)
    try:
        if args.action == "show":
            if not args.id:
                raise UsageError("runs show needs a run ID (or a unique prefix of one): see fcnet runs list")
            run = store.get(args.id)
            if run is None:
                raise FcnetError(f"no single run matches {args.id!r}")
            print(json.dumps(run, indent=2))
            return 0
        rows = store.best(args.metric, args.n) if args.action == "best" else store.runs()
        configs = [r["config"] for r in rows]
        print(f"{'id':<12}  {'status':<7} {args.metric:>{len(args.metric)}} {'s/epoch':>8}  settings that differ")
        for r in rows:
            value, spe = r[args.metric], r["seconds_per_epoch"]
            shown = "—" if value is None else f"{value:.4f}"
            print(f"{r['id']:<12}  {r['status']:<7} {shown:>{len(args.metric)}} "
                  f"{'—' if spe is None else f'{spe:.3f}':>8}  {trial_name(r['config'], configs)}")
    finally:
        store.close()
    return 0


def cmd_serve(args):
    model = _load(args.model)
    from .serve import serve

    serve(model, args.model, args.host, args.port, say=lambda line: print(line, flush=True))
    return 0


def cmd_export(args):
    from .export import OPSET, export_onnx

    model = _load(args.model)
    export_onnx(model, args.output)
    spec = tables.spec_of(model)
    takes = (f"{model.input_dim} inputs (scaled as predict scales them)" if spec is None else
             f"{len(spec.features)} columns ({', '.join(f.name for f in spec.features[:6])}"
             f"{', ...' if len(spec.features) > 6 else ''})")
    gives = f"{model.output_dim} outputs" if spec is None or spec.task == "classification" else spec.target
    print(f"wrote {args.output}: {takes} -> {gives}, ONNX opset {OPSET}")
    return 0


def cmd_plot(args):
    from . import plots
    from .report import figure

    metrics = RunMetrics.read(args.run)
    model = x_test = y_test = None
    if args.kind != "curves":
        model = _load(args.run / "model.npz")
        if tables.spec_of(model) is not None:  # the run's own test rows: the same file, split the same way
            try:
                config = TrainConfig.from_dict({k: v for k, v in metrics.config.items()
                                                if k in TrainConfig.field_names()})
            except ValueError as exc:
                raise FcnetError(f"{args.run / 'metrics.json'}: invalid settings ({exc})") from None
            _, (x_test, y_test), _ = load_data(config)
        else:
            dataset = _dataset_of(model, args.run / "model.npz", None)
            _, (x_test, y_test) = datasets.load(dataset, args.data_dir or metrics.config.get("data_dir"))
            _check_width(model, x_test, dataset)
    plots.save(figure(args.kind, model, metrics, x_test, y_test), args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_report(args):
    from .report import write_report

    if args.output is None:  # the default name: never overwrite a file the user did not name
        args.output = Path("report.html")
        if args.output.exists():
            raise UsageError("report.html exists here; name the output with -o (the same name overwrites it)")
    path = write_report(args.runs, args.output)
    print(f"report: {path.resolve()}")
    return 0


def cmd_download(args):
    folder = datasets.download(args.dataset, args.data_dir, fetch=not args.offline)
    print(f"{args.dataset}: verified in {folder}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "summary": cmd_summary,
            "gradcheck": cmd_gradcheck, "compare": cmd_compare, "sweep": cmd_sweep, "runs": cmd_runs,
            "serve": cmd_serve, "plot": cmd_plot, "report": cmd_report, "export": cmd_export,
            "download": cmd_download}
