"""Callbacks: what ``fit`` calls around epochs and steps — the history, progress, schedules, live plots.

A callback implements any of ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``, as in Keras;
``fit`` sets ``callback.model`` first. :class:`History` runs last, so it records what the others add
to ``logs``. What a callback sees on each engine is stated in :mod:`fcnet.engines`.
"""

import sys

__all__ = ["Callback", "History", "LearningRateDecay", "ProgressBar", "EpochLog", "LivePlot", "format_logs",
           "progress_callbacks", "interactive"]


class Callback:
    """Hooks called by :func:`fcnet.training.fit`; ``logs`` is a dict of the epoch's metrics."""

    model = None

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
