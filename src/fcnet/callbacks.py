"""Callbacks: what ``fit`` calls around epochs and steps — the history, progress, schedules, live plots.

A callback implements any of ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``, as in Keras;
``fit`` sets ``callback.model`` first. :class:`History` runs last, so it records what the others add
to ``logs``. What a callback sees on each engine is stated in :mod:`fcnet.engines.base`.
"""

import csv
import math
import os
import sys

__all__ = ["Callback", "History", "LearningRateDecay", "LearningRateScheduler", "ReduceLROnPlateau", "EarlyStopping",
           "ModelCheckpoint",
           "CSVLogger", "ProgressBar", "EpochLog", "LivePlot", "format_logs", "progress_callbacks", "interactive"]


class Callback:
    """Hooks called by :func:`fcnet.training.fit`; ``logs`` is a dict of the epoch's metrics.

    What ``on_batch_end`` sees of the model: on the NumPy engine, the weights and gradients of that very step; on
    the compiled engine, the weights after its latest call of up to 8 192 rows of steps (and no gradients of plain
    SGD), unless the callback names the steps whose weights and optimizer state it must see exactly with
    :meth:`sync_steps` (the engine then ends a call after each of them); the
    CUDA engine keeps the weights on the GPU until the epoch ends and refuses a callback with sync steps. A
    callback that overrides ``on_batch_end`` and names no sync steps gets a one-line notice on the compiled
    engines, unless it sets ``reads_weights = False`` (it reads only ``logs``, as the progress bars do).
    """

    model = None
    reads_weights = True  # on_batch_end reads the model (weights, gradients), not only logs["loss"]

    def sync_steps(self, steps):
        """The steps of an epoch of ``steps`` steps (0-based) after which ``on_batch_end`` must see the model
        exactly as the NumPy engine leaves it; empty by default."""
        return ()

    def on_train_begin(self, logs):
        pass

    def on_epoch_begin(self, epoch, logs):
        pass

    def on_batch_end(self, batch, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs):
        pass


class History(Callback):
    """Records every epoch: ``history["loss"]`` is the list of epoch losses, and so on for each metric."""

    def __init__(self):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


class LearningRateDecay(Callback):
    """Multiply the optimizer's learning rate by ``factor`` after every epoch: ``lr_e = lr_0 · factor^e``."""

    def __init__(self, factor):
        if not 0 < factor <= 1:
            raise ValueError(f"the decay factor must be in (0, 1], got {factor}")
        self.factor = factor

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = self.model.optimizer.learning_rate
        self.model.optimizer.learning_rate *= self.factor


class LearningRateScheduler(Callback):
    """Keras': before every epoch, ``learning_rate = schedule(epoch, learning_rate)``; the epoch's rate goes to
    ``logs["lr"]``."""

    def __init__(self, schedule, verbose=0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs):
        lr = float(self.schedule(epoch, float(self.model.optimizer.learning_rate)))
        if not (lr > 0 and lr != float("inf")):
            raise ValueError(f"the schedule gave learning rate {lr!r} for epoch {epoch + 1}; it must be finite and > 0")
        self.model.optimizer.learning_rate = lr
        if self.verbose:
            print(f"epoch {epoch + 1}: learning rate {lr:.4g}")

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = self.model.optimizer.learning_rate


class _Monitor(Callback):
    """A logged quantity watched for improvement, as Keras' callbacks watch it."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be auto, min or max, got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = None

    def _improved(self, current, reference):
        if reference is None:
            return True
        return current > reference + self.min_delta if self.mode == "max" else current < reference - self.min_delta

    def _current(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which the epoch's logs do not have "
                             f"(they have {', '.join(logs)}); validation metrics need validation data")
        return logs[self.monitor]


class EarlyStopping(_Monitor):
    """Keras': stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``restore_best_weights``: at the end of training the model gets the weights of its best epoch.
    ``baseline``: an epoch must also beat it to reset the patience. ``stopped_epoch`` is 0-based, 0 when not stopped.
    :meth:`resume` carries the watch over a resumed run (``fcnet train --early-stopping`` does).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self._resumed = False

    def on_train_begin(self, logs):
        if not self._resumed:
            self.wait, self.stopped_epoch, self.best, self.best_epoch, self.best_weights = 0, 0, None, None, None

    def resume(self, history, best_weights=None):
        """Continue watching a run that trained ``len(history[monitor])`` epochs already: its state is what
        those epochs' logs (``history``, a dict of lists) made it, and ``best_weights`` are its best epoch's
        weights (needed with ``restore_best_weights``). Returns whether it had stopped already."""
        self.on_train_begin({})
        values = history.get(self.monitor) or []
        for epoch, value in enumerate(values):
            self._watch(epoch, value, keep=False)  # the weights now are not those epochs' weights
        self.best_weights, self._resumed = best_weights, True
        return bool(self.stopped_epoch)

    def on_epoch_end(self, epoch, logs):
        self._watch(epoch, self._current(logs))
        if self.stopped_epoch:
            self.model.stop_training = True

    def _watch(self, epoch, current, keep=True):
        """The bookkeeping of one epoch's ``current`` value; the weights are kept (``keep``) when it is the best."""
        if epoch < self.start_from_epoch or self.stopped_epoch:
            return
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights and keep:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch

    def on_train_end(self, logs):
        if self.verbose and self.stopped_epoch:
            print(f"epoch {self.stopped_epoch + 1}: early stopping (best {self.monitor} {self.best:.4f} at epoch "
                  f"{self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(_Monitor):
    """Keras': multiply the learning rate by ``factor`` when ``monitor`` has not improved by ``min_delta`` for
    ``patience`` epochs, then wait ``cooldown`` epochs before counting again; never below ``min_lr``. The
    epoch's rate goes to ``logs["lr"]``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.verbose = float(factor), patience, verbose
        self.cooldown, self.min_lr = cooldown, float(min_lr)
        self._resumed = False

    def on_train_begin(self, logs):
        if not self._resumed:
            self.best, self.wait, self.cooldown_counter = None, 0, 0

    def resume(self, history):
        """Continue watching a run that trained ``len(history[monitor])`` epochs already: the counters are what
        those epochs' values (and rates, ``history["lr"]``) made them. The rate itself is the optimizer's, which
        a checkpoint restores."""
        self._resumed = False
        self.on_train_begin({})
        values, rates = history.get(self.monitor) or [], history.get("lr") or []
        for epoch, value in enumerate(values):
            self._watch(value, rates[epoch] if epoch < len(rates) else math.inf)
        self._resumed = True

    def on_epoch_end(self, epoch, logs):
        optimizer = self.model.optimizer
        logs["lr"] = optimizer.learning_rate
        if self._watch(self._current(logs), optimizer.learning_rate):
            optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
            if self.verbose:
                print(f"epoch {epoch + 1}: {self.monitor} has not improved for {self.patience} epochs; learning "
                      f"rate {optimizer.learning_rate:.4g}")

    def _watch(self, current, lr):
        """The bookkeeping of one epoch's value at rate ``lr``; returns whether the rate is to be cut now."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                self.cooldown_counter, self.wait = self.cooldown, 0
                return True
        return False


class ModelCheckpoint(_Monitor):
    """Keras': save the model (``model.save``, or only its weights) after every epoch, or only when ``monitor``
    improved. ``filepath`` may name the epoch and metrics: ``"model-{epoch:02d}-{val_loss:.3f}.npz"``."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__(monitor, mode)
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only

    def on_train_begin(self, logs):
        self.best = None

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            current = self._current(logs)
            if not self._improved(current, self.best):
                return
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)
        if self.verbose:
            print(f"epoch {epoch + 1}: saved {path}")


class CSVLogger(Callback):
    """Keras': one CSV row per epoch (``epoch`` and every log), flushed as it is written; ``append`` continues a
    file (a resumed run) instead of replacing it."""

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = str(filename), separator, append
        self._file = self._keys = None

    def on_train_begin(self, logs):
        self._keys = None
        if self.append and os.path.exists(self.filename) and os.path.getsize(self.filename):
            with open(self.filename) as f:
                self._keys = f.readline().rstrip("\n").split(self.separator)[1:]
        self._file = open(self.filename, "a" if self.append else "w", newline="")

    def on_epoch_end(self, epoch, logs):
        writer = csv.writer(self._file, delimiter=self.separator)
        if self._keys is None:
            self._keys = sorted(logs)
            writer.writerow(["epoch", *self._keys])
        writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs):
        if self._file is not None:
            self._file.close()
            self._file = None


def format_logs(logs):
    """``time 0.47s  loss 0.3012  accuracy 0.8912 ...`` from an epoch's logs."""
    parts = [f"time {logs['epoch_seconds']:.2f}s"] if "epoch_seconds" in logs else []
    parts += [f"{k} {v:.4g}" if k == "lr" else f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch_seconds"]
    return "  ".join(parts)


def interactive():
    """Whether progress can be drawn live: ``stderr`` is a terminal, or this is a Jupyter kernel."""
    return "ipykernel" in sys.modules or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class ProgressBar(Callback):
    """A tqdm bar per epoch on ``stderr``.

    With ``leave`` (``fit(verbose=1)``) each bar ends as a permanent line carrying the epoch's metrics and
    is drawn in a notebook too; without it (``fcnet train``, which prints its own epoch lines) the bar is
    erased at the end of the epoch and drawn only on a terminal.
    """

    reads_weights = False

    def __init__(self, epochs, steps, leave=False):
        self.epochs, self.steps, self.leave, self.bar = epochs, steps, leave, None

    def on_epoch_begin(self, epoch, logs):
        from tqdm import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=self.leave,
                        file=sys.stderr, disable=False if self.leave else None, dynamic_ncols=True)

    def on_batch_end(self, batch, logs):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs):
        if self.leave:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
        self.bar.close()


class EpochLog(Callback):
    """One line per epoch to ``stream`` (default ``stdout``): time, loss, accuracy and validation metrics."""

    def __init__(self, epochs, stream=None):
        self.epochs, self.stream = epochs, stream

    def on_epoch_end(self, epoch, logs):
        width = len(str(self.epochs))
        print(f"epoch {epoch + 1:>{width}}/{self.epochs}  {format_logs(logs)}", file=self.stream or sys.stdout,
              flush=True)


def progress_callbacks(verbose, epochs, steps):
    """The callbacks of Keras' ``verbose`` (see :func:`fcnet.training.fit`)."""
    if verbose not in ("auto", 0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    if verbose in ("auto", 1):
        verbose = 1 if interactive() else 2
    return {1: [ProgressBar(epochs, steps, leave=True)], 2: [EpochLog(epochs)]}.get(verbose, [])


class LivePlot(Callback):
    """Learning curves redrawn after every epoch: in place in a Jupyter notebook, and into ``path`` if given.

    Parameters
    ----------
    path : str or Path, optional
        A PNG (or SVG) file rewritten after every epoch, e.g. to watch a run from a terminal.
    """

    def __init__(self, path=None):
        self.path, self.history, self._handle = path, {}, None

    def on_epoch_end(self, epoch, logs):
        from . import plots

        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        fig = plots.learning_curves(self.history)
        if "ipykernel" in sys.modules:
            from IPython.display import display

            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
        if self.path is not None:
            fig.savefig(self.path, dpi=100)
        plots.pyplot().close(fig)
