"""A training run as a library object: ``train_run(TrainConfig) -> RunResult``.

This is what ``fcnet train`` does, what every sweep trial does, and what a notebook calls::

    result = fcnet.train_run(fcnet.TrainConfig(dataset="fashion-mnist", hidden=(256, 128), optimizer="adam",
                                               lr=1e-3, epochs=10), out="runs/adam")
    result.metrics.test["accuracy"], result.model.predict(x)

It loads and checks the data, builds the network (hidden ``Dense`` layers and a softmax output), trains it
with :meth:`~fcnet.model.Sequential.fit`, evaluates it on the test set and, with ``out``, checkpoints every
epoch and writes ``model.npz``, ``metrics.json`` (:class:`~fcnet.records.RunMetrics`) and the figures.
Errors are exceptions: ``ValueError`` for a bad setting, :class:`~fcnet.errors.FcnetError` for bad data or a
diverged run, :class:`~fcnet.errors.RunInterrupted` for Ctrl-C (after saving what could be saved).
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import augment, datasets, tables
from .builder import build_model
from .callbacks import (
    EarlyStopping,
    EpochLog,
    LearningRateDecay,
    LearningRateScheduler,
    ProgressBar,
    ReduceLROnPlateau,
)
from .checkpoint import CHECKPOINT, BestWeights, Checkpoint, PruneBest, best_weights, load_checkpoint
from .config import TrainConfig
from .errors import FcnetError, RunInterrupted
from .metrics import classification_report, confusion_matrix
from .model import Sequential
from .records import DIGIT_SETS, TEST_NAMES, ModelInfo, RunMetrics
from .schedules import per_epoch
from .threads import choose as choose_threads

__all__ = ["train_run", "RunResult", "prepare", "checkpoint_config", "test_metrics", "class_metrics", "load_data",
           "RESUMABLE"]

RESUMABLE = ("epochs", "engine", "data_dir", "preparation", "threads")  # the settings a resumed run may change


@dataclasses.dataclass
class RunResult:
    """What :func:`train_run` returns.

    Attributes
    ----------
    config : TrainConfig
    model : Sequential
        The trained network (its ``metadata`` is a :class:`~fcnet.records.ModelInfo`).
    metrics : RunMetrics
        Every epoch (those before a resume too), the test loss and accuracy, the engine, the times.
    out : Path or None
        The run folder, when one was written.
    files : list of Path
        The files written into ``out`` (model, metrics, figures).
    """

    config: TrainConfig
    model: Sequential
    metrics: RunMetrics
    out: Path | None = None
    files: list = dataclasses.field(default_factory=list)


def load_data(config):
    """``(x_train, y_train), (x_test, y_test), ModelInfo`` of a run's data (``limit`` applied)."""
    if config.is_table:
        from . import tables

        train, test, spec = tables.load(config.dataset, config.target, config.task, config.test_split, config.seed,
                                        config.limit, 1 - config.validation_split, config.dtype)
        info = ModelInfo(dataset=config.dataset, class_names=spec.classes, image_shape=None, preparation="fit",
                         table=spec.to_metadata())
        return train, test, info
    (x_train, y_train), (x_test, y_test) = datasets.load(config.dataset, config.data_dir)
    if config.limit:
        x_train, y_train = x_train[:config.limit], y_train[:config.limit]
    registered = config.dataset in datasets.NAMES
    n_classes = len(datasets.class_names(config.dataset)) if registered else int(max(y_train.max(), y_test.max())) + 1
    names = datasets.class_names(config.dataset) if registered else [str(i) for i in range(n_classes)]
    info = ModelInfo(dataset=config.dataset, class_names=tuple(names)[:n_classes], image_shape=tuple(x_train.shape[1:]),
                     preparation=config.preparation or ("digits" if config.dataset in DIGIT_SETS else "fit"))
    return (x_train, y_train), (x_test, y_test), info


def prepare(config):
    """The data (``limit`` applied) and the compiled, untrained network of a run.

    Returns
    -------
    (x_train, y_train), (x_test, y_test), model
    """
    if config.loss == "binary_crossentropy":
        raise FcnetError("binary_crossentropy needs a sigmoid output, and a run's network ends in a softmax over "
                         "the classes: use sparse_categorical_crossentropy (the same loss for two classes), or "
                         "build a sigmoid model in Python (fcnet gradcheck checks it)")
    (x_train, y_train), (x_test, y_test), info = load_data(config)
    if config.validation_split and int(len(x_train) * (1 - config.validation_split)) in (0, len(x_train)):
        raise FcnetError(f"validation_split {config.validation_split} leaves no training or no validation data "
                         f"out of {len(x_train)} {'rows' if config.is_table else 'images'}")
    regression = config.task == "regression"
    n_in = int(np.prod(x_train.shape[1:]))
    model = build_model(config.hidden, config.activation, n_in, 1 if regression else len(info.class_names),
                        config.seed, config.dtype, output="linear" if regression else "softmax", l2=config.l2,
                        dropout=config.dropout, batch_norm=config.batch_norm, input_dropout=config.input_dropout)
    model.metadata = info.to_metadata()
    optimizer = {"name": config.optimizer, "learning_rate": config.lr}
    if config.momentum:
        optimizer["momentum"] = config.momentum
    if config.weight_decay:
        optimizer["weight_decay"] = config.weight_decay
    if config.clipnorm:
        optimizer["clipnorm"] = config.clipnorm
    model.compile(optimizer=optimizer, loss=config.loss_identifier, metrics=None if regression else ["accuracy"])
    return (x_train, y_train), (x_test, y_test), model


def checkpoint_config(folder):
    """The :class:`TrainConfig` of the run checkpointed in ``folder`` (to resume it, perhaps with more epochs).

    Raises
    ------
    DataError
        No readable checkpoint there.
    """
    return _stored_config(load_checkpoint(Path(folder))[1], Path(folder))


def _stored_config(state, folder):
    settings = state["settings"]
    if not isinstance(settings, dict):
        raise FcnetError(f"{folder / CHECKPOINT}: the checkpoint holds no settings")
    try:  # checkpoints of fcnet ≤ 0.1 stored every command-line flag; the config is the part that is a setting
        return TrainConfig.from_dict({k: v for k, v in settings.items() if k in TrainConfig.field_names()})
    except ValueError as exc:
        raise FcnetError(f"{folder / CHECKPOINT}: invalid settings ({exc})") from None


def _resume(config, out):
    """``(model, state)`` of the checkpoint in ``out``, after checking ``config`` against the one it holds."""
    model, state = load_checkpoint(out)
    stored = _stored_config(state, out)
    for name in TrainConfig.field_names():
        given, before = getattr(config, name), getattr(stored, name)
        if name not in RESUMABLE and given != before:
            raise ValueError(f"{name} is {before!r} in the checkpointed run in {out}, not {given!r}; a resumed run "
                             f"keeps its settings (only {', '.join(RESUMABLE)} may change)")
    if config.epochs < state["epoch"]:
        raise ValueError(f"{out} has already trained {state['epoch']} epochs; epochs must be at least that")
    return model, state


def test_metrics(model, x_test, y_test):
    """A trained run's test results: ``{"loss", "accuracy"}``, or for a table regression ``{"loss", "r2", "mae"}``
    (R² and mean absolute error in the target's own units)."""
    test = model.evaluate(x_test, y_test)
    spec = tables.spec_of(model)
    if spec is None or spec.task != "regression":
        return {"loss": test.loss, "accuracy": test.accuracy}
    true, pred = spec.decode(y_test), spec.decode(model.predict(x_test))
    return {"loss": test.loss, **tables.regression_scores(true, pred)}


def class_metrics(model, x_test, y_test):
    """A classifier's ``(per_class, confusion)`` on the test set: precision, recall, F1 and support per class
    (:func:`fcnet.metrics.classification_report`) and the confusion counts; ``(None, None)`` for a regression."""
    spec = tables.spec_of(model)
    if spec is not None and spec.task == "regression":
        return None, None
    names = list(ModelInfo.of(model).class_names)
    pred = model.predict(x_test).argmax(axis=1)
    return classification_report(y_test, pred, names), confusion_matrix(y_test, pred, len(names)).tolist()


def _say(verbose, text):
    if verbose:
        print(text, flush=True)


def train_run(config=None, out=None, resume=False, callbacks=None, verbose=2, figures=True):
    """Train the run that ``config`` describes, as ``fcnet train`` does; returns a :class:`RunResult`.

    Parameters
    ----------
    config : TrainConfig, optional
        Default ``TrainConfig()``: the seed 001 lab on MNIST.
    out : str or Path, optional
        The run folder: ``checkpoint.npz`` after every epoch, then ``model.npz``, ``metrics.json`` and
        (with ``figures``) the PNG figures.
    resume : bool
        Continue the run checkpointed in ``out``: ``config`` must equal its settings except for
        :data:`RESUMABLE` (:func:`checkpoint_config` reads them). The remaining epochs end bit-identical
        to a run that was never interrupted.
    callbacks : list of Callback, optional
        Passed to ``fit`` beside the run's own (learning-rate decay, progress, checkpoint).
    verbose : {0, 1, 2}
        0 silent; 1 a line describing the run and lines with its results, on stdout; 2 also a progress
        bar (stderr, terminals only) and a line per epoch.
    figures : bool
        With ``out``, draw the figures (needs matplotlib; skipped with a message when it is missing).

    Raises
    ------
    ValueError
        A setting that cannot be used (``resume`` without ``out``, settings that differ from the checkpoint).
    FcnetError
        Missing or corrupt data, a checkpoint that cannot be read, a diverged run.
    RunInterrupted
        Ctrl-C; the message says which epoch is saved and how to resume.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = None if out is None else Path(out)
    if resume and out is None:
        raise ValueError("resume needs the run folder (out) that holds the checkpoint")
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a run folder")
    if config.engine == "cuda":  # before the data is read or fetched: no GPU, no point
        from .engines import cuda

        if cuda.unavailable():
            raise ValueError(f"engine 'cuda' cannot train here: {cuda.unavailable()}")
    if out is not None:  # a write killed mid-way leaves its temporary file behind (files.atomic_write)
        for stale in out.glob(".tmp-*"):
            stale.unlink()
    model, state = _resume(config, out) if resume else (None, None)
    if config.threads is None:  # chosen once for the run and recorded: a resumed run multiplies as it did
        config = config.replace(threads=(state and _stored_config(state, out).threads) or choose_threads())
    (x_train, y_train), (x_test, y_test), built = prepare(config)
    model = model or built
    n_train = int(len(x_train) * (1 - config.validation_split))
    steps = math.ceil(n_train / config.batch_size)
    run_callbacks = [LearningRateDecay(config.lr_decay)] if config.lr_decay != 1 else []
    if config.lr_schedule:  # a function of the epoch alone: a resumed run picks it up where it was
        schedule = per_epoch(config.lr_schedule, config.lr, config.epochs, config.warmup)
        run_callbacks.append(LearningRateScheduler(lambda epoch, lr: schedule(epoch)))
    if config.reduce_lr:  # its counters replayed from the history; the rate is the checkpointed optimizer's
        plateau = ReduceLROnPlateau("val_loss", patience=config.reduce_lr, verbose=int(verbose >= 1))
        if state:
            plateau.resume(state["history"])
        run_callbacks.append(plateau)
    if verbose >= 2:
        run_callbacks += [ProgressBar(config.epochs, steps), EpochLog(config.epochs)]
    start_epoch = state["epoch"] if state else 0
    last_epoch, stopper, best = config.epochs, None, None
    if config.early_stopping:
        stopper = EarlyStopping("val_loss", patience=config.early_stopping, restore_best_weights=True,
                                verbose=int(verbose >= 1))
        if state:
            if stopper.resume(state["history"]):
                last_epoch = start_epoch  # it had stopped: nothing more to train
            stopper.best_weights = best_weights(out, stopper, model)
        run_callbacks.append(stopper)
        if out is not None:
            best = BestWeights(stopper, out, fresh=not state)
            run_callbacks.append(best)
    checkpoint = None
    if out is not None:
        checkpoint = Checkpoint(out, config.to_dict(), state and state["history"])
        run_callbacks.append(checkpoint)
        if best is not None:
            run_callbacks.append(PruneBest(best))
    arch = "-".join(map(str, [model.input_dim, *config.hidden, model.output_dim]))
    _say(verbose, f"fcnet: {arch} {config.activation}/{model.layers[-1].activation.name}, {config.optimizer} lr "
                  f"{config.lr}, batch {config.batch_size}, {config.epochs} epochs, {n_train} {config.dataset} "
                  f"training {'rows' if config.is_table else 'images'}, seed "
                  f"{config.seed}" + (f"; resuming after epoch {start_epoch}" if state else ""))
    if state and start_epoch == last_epoch:
        _say(verbose, f"fcnet: {out} has trained all {start_epoch} epochs already: nothing to train (give more "
                      "epochs to continue it); evaluating it again")
    start = time.perf_counter()
    try:
        history = model.fit(x_train, y_train, epochs=last_epoch, batch_size=config.batch_size,
                            validation_split=config.validation_split, verbose=0,
                            callbacks=[*run_callbacks, *(callbacks or [])], initial_epoch=start_epoch,
                            engine=config.engine, threads=config.threads,
                            augment=config.augment and augment.parse(config.augment, x_train.shape[1:]))
    except KeyboardInterrupt:
        done = len(checkpoint.history.get("loss", [])) if checkpoint else 0
        where = (f"epoch {done} is saved in {out}; resume with: fcnet train --resume {out}" if done
                 else f"no epoch finished, nothing saved in {out}" if checkpoint
                 else "nothing saved (use --out DIR to keep checkpoints)")
        raise RunInterrupted(f"interrupted; {where}") from None
    total = time.perf_counter() - start
    test = test_metrics(model, x_test, y_test)
    _say(verbose, f"total time {total:.2f}s  steps per epoch {steps}  engine {history.engine}")
    _say(verbose, "  ".join(f"test {TEST_NAMES.get(k, k)} {v:.4f}" for k, v in test.items()))
    per_class, confusion = class_metrics(model, x_test, y_test)
    metrics = RunMetrics.from_history(checkpoint.history if checkpoint else history.history,
                                      config=config.to_dict(), architecture=arch, steps_per_epoch=steps,
                                      total_seconds=total, engine=history.engine, test=test, per_class=per_class,
                                      confusion=confusion)
    model.metadata = ModelInfo.of(model).replace(test_accuracy=test.get("accuracy")).to_metadata()
    result = RunResult(config, model, metrics, out)
    if out is not None:
        _write(result, x_test, y_test, figures, verbose)
    return result


def _write(result, x_test, y_test, figures, verbose):
    """Save the model and metrics.json into ``result.out``, then the figures: a disk that fills up while drawing
    leaves the model and its metrics consistent. Figures of an earlier run in the same folder that this one did not
    draw are removed: the folder describes one run."""
    out = result.out
    result.model.save(out / "model.npz")
    result.files.append(out / "model.npz")
    result.metrics.write(out / "metrics.json")
    result.files.append(out / "metrics.json")
    from .report import FIGURES

    if figures:
        try:
            from .report import save_figures

            result.files += save_figures(out, result.model, result.metrics, x_test, y_test)
        except FcnetError as exc:  # matplotlib missing: the model and metrics are saved all the same
            print(f"figures skipped: {exc}", file=sys.stderr)
    for stale in {out / name for name, _ in FIGURES.values()} - set(result.files):  # an earlier run's pictures
        stale.unlink(missing_ok=True)
    figures = result.files[2:]
    _say(verbose, f"saved {out / 'model.npz'}, {out / 'metrics.json'}"
                  + (f" and {len(figures)} figures ({', '.join(p.name for p in figures)})" if figures else ""))
