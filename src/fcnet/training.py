"""The training loop, ``History`` and callbacks, kept apart from the layers.

:func:`fit` checks the data, builds the engine once (:mod:`fcnet.engines`; :mod:`fcnet.engines.base`
states what an engine must do), and for every epoch draws a permutation
from the model's generator and runs :func:`train_epoch`. ``loss`` and
``accuracy`` of an epoch are the means over its batches as they were trained
(Keras' convention); validation metrics are computed after the epoch.
``epoch_seconds`` times the training steps only.
"""

import math
import sys
import time

import numpy as np

from .callbacks import Callback, History, progress_callbacks
from .engines import make_engine
from .engines.base import STEP_ROWS
from .errors import DivergenceError
from .threads import BlasThreads

__all__ = ["fit", "train_epoch"]


def _positive_int(name, value):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def fit(model, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, shuffle=True,
        verbose="auto", callbacks=None, initial_epoch=0, engine="auto", class_weight=None, threads=None,
        augment=None):
    """Train ``model`` in place with mini-batch gradient steps.

    Parameters
    ----------
    model : Sequential
        Compiled.
    x : array_like, shape (n, n_in) or (n, ...)
        ``uint8`` images are scaled to [0, 1] per batch; floats are used as they are.
    y : array_like, shape (n,) or (n, n_out)
    epochs, batch_size : int
    validation_split : float in [0, 1)
        Hold out this fraction, taken from the end of ``x`` before shuffling (as Keras does).
    validation_data : (x_val, y_val), optional
        Overrides ``validation_split``.
    shuffle : bool
        Draw a new order every epoch from the model's generator.
    verbose : {"auto", 0, 1, 2}
        As in Keras: 0 silent; 1 a live progress bar per epoch that ends as a permanent line with the
        epoch's metrics (stderr; in a terminal or a Jupyter notebook, else as 2); 2 one line per epoch on
        stdout; ``"auto"`` is 1 in a terminal or a notebook and 2 elsewhere (a log file, a pipe).
    callbacks : list of Callback
    initial_epoch : int
        Epoch to start from (resuming a run): trains epochs ``initial_epoch .. epochs - 1``.
    engine : {"auto", "numpy", "numba", "cuda"}
        Who runs the steps (:func:`fcnet.engines.choose_engine`), chosen once for the whole fit;
        ``history.engine`` records the choice (``history.engine_note`` why ``"auto"`` fell back to NumPy, said on
        stderr unless ``verbose=0``). With ``"cuda"`` the validation data is evaluated on the GPU too.
    class_weight : dict, optional
        ``{class: weight}``: each example's loss (and gradient) is multiplied by its class's weight, as in
        Keras (classes not named weigh 1). Integer labels only; trains on the NumPy engine.
    threads : int, optional
        Threads for the matrix products during this fit; by default ``$FCNET_THREADS``, else the cores the rest
        of the machine leaves free when the fit starts (:mod:`fcnet.threads`); ``history.threads`` records it.
    augment : callable, optional
        ``augment(images, rng)`` → distorted copies, e.g. :class:`fcnet.augment.Augment`: before every epoch the
        training images (``uint8``, square) are distorted afresh with the model's generator, then shuffled; the
        validation data is not. ``logs["augment_seconds"]`` times it. CPU engines.

    Returns
    -------
    History
        ``history.history`` holds ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``
        (the metrics that apply) and ``epoch_seconds``, one entry per epoch.

    Raises
    ------
    DivergenceError
        When a batch loss is NaN or infinite: training stops at once, before that step's update.
    """
    model.require_compiled()
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be in [0, epochs], got {initial_epoch}")
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    x = model.check_inputs(x)
    y = model.check_targets(y, len(x))
    if validation_data is None and validation_split:
        n_train = int(len(x) * (1 - validation_split))
        if n_train == 0 or n_train == len(x):
            raise ValueError(f"validation_split={validation_split} leaves no training or no validation data")
        validation_data = (x[n_train:], y[n_train:])
        x, y = x[:n_train], y[:n_train]
    if len(x) == 0:
        raise ValueError("no training data")
    batch_size = min(batch_size, len(x))  # as Keras: a batch larger than the data is the whole data
    steps = math.ceil(len(x) / batch_size)
    blas_threads = BlasThreads(threads)
    runner = make_engine(model, x, y, batch_size, engine, _class_weights(class_weight, y, model.output_dim))
    if augment is not None and (x.dtype != np.uint8 or runner.name == "cuda"):
        raise ValueError("augment distorts uint8 images, on the CPU engines" + (
            f"; these inputs are {x.dtype}" if x.dtype != np.uint8 else "; not with engine 'cuda'"))

    history = History()
    history.engine, history.engine_note, history.threads = runner.name, runner.note, blas_threads.threads
    if runner.note and verbose != 0:  # "auto" fell back to NumPy: say why, once
        print(f"fcnet: training on NumPy: {runner.note}", file=sys.stderr)
    runner.sync = _sync_steps(runner, callbacks or [], steps, verbose)
    # History last, as in Keras: it sees what the others add.
    callbacks = [*progress_callbacks(verbose, epochs, steps), *(callbacks or []), history]
    for cb in callbacks:
        cb.model = model
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin({})
    with blas_threads:
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            start = time.perf_counter()
            epoch_x = x if augment is None else augment(x, model.rng)  # drawn before the order: a fixed sequence
            augmented = time.perf_counter() - start
            order = model.rng.permutation(len(x)) if shuffle else np.arange(len(x))
            logs = train_epoch(runner, epoch_x, y, order, epoch, callbacks)
            if augment is not None:
                logs["augment_seconds"] = augmented
            if validation_data is not None:
                val = model.evaluate(*validation_data, engine="cuda" if runner.name == "cuda" else "numpy")
                logs["val_loss"] = val.loss
                if model.metrics:
                    logs["val_accuracy"] = val.accuracy
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    for cb in callbacks:
        cb.on_train_end({})
    return history


def _sync_steps(runner, callbacks, steps, verbose):
    """The steps of an epoch after which ``callbacks`` must see the exact model (:meth:`Callback.sync_steps`).

    The CUDA engine refuses them (its weights stay on the GPU until the epoch ends); on the compiled CPU engine a
    callback that reads the model in ``on_batch_end`` without naming its steps gets a one-line notice (stderr,
    unless ``verbose=0``): it sees the weights after each compiled call, not after each step.
    """
    sync = set()
    for cb in callbacks:
        sync.update(int(s) for s in cb.sync_steps(steps))
        if runner.name == "cuda" and sync:
            raise ValueError(f"{type(cb).__name__} reads the model between steps, and engine 'cuda' keeps it on the "
                             "GPU until the epoch ends: train on engine 'numba' or 'numpy'")
        overrides = type(cb).on_batch_end is not Callback.on_batch_end
        if runner.name != "numpy" and overrides and cb.reads_weights and not cb.sync_steps(steps) and verbose != 0:
            print(f"fcnet: {type(cb).__name__}.on_batch_end sees the model after each call of engine "
                  f"'{runner.name}' (up to {STEP_ROWS} rows of steps), not after every step; name the steps it needs "
                  "with sync_steps(), set reads_weights = False if it reads only the loss, or train on 'numpy'",
                  file=sys.stderr)
    return sync


def _class_weights(class_weight, y, n_classes):
    """``{class: weight}`` as an array of one weight per class (1 for the classes not named), or None."""
    if class_weight is None:
        return None
    if y.ndim != 1:
        raise ValueError("class_weight needs integer class labels of shape (n,)")
    weights = np.ones(n_classes)
    for label, weight in dict(class_weight).items():
        if isinstance(label, bool) or int(label) != label or not 0 <= label < n_classes:
            raise ValueError(f"class_weight: {label!r} is not a class in 0..{n_classes - 1}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"class_weight: the weight of class {label} must be a finite number ≥ 0, got {weight!r}")
        weights[int(label)] = weight
    return weights


def train_epoch(engine, x, y, order, epoch=0, callbacks=()):
    """One pass of ``engine`` (from :func:`fcnet.engines.make_engine`) over ``x[order]``; returns the epoch's logs.

    ``x`` and ``y`` are already checked (see :func:`fit`); ``order`` is a permutation of their rows.

    Raises
    ------
    DivergenceError
        At the first step whose loss is not finite (that step updated nothing).
    """
    total_loss, correct, seen = 0.0, 0, 0
    start_time = time.perf_counter()
    # A diverging run overflows before its loss turns NaN; the guard below reports it once, in one line.
    with np.errstate(over="ignore", invalid="ignore"):
        for step, (rows, loss, hits) in enumerate(engine.epoch(x, y, order)):
            if not math.isfinite(loss):
                last = f"{total_loss / seen:.4g}" if seen else "none"
                raise DivergenceError(
                    f"loss became {loss} at epoch {epoch + 1}, batch {step + 1} (mean loss so far this epoch: "
                    f"{last}); try a lower learning rate"
                )
            total_loss += loss * rows
            correct += hits
            seen += rows
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": loss})
    logs = {"loss": total_loss / len(x)}
    if engine.model.metrics:
        logs["accuracy"] = correct / len(x)
    logs["epoch_seconds"] = time.perf_counter() - start_time
    return logs
