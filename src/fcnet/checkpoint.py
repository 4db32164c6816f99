"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a model file (:meth:`fcnet.model.Sequential.save`: weights, optimizer
state with Adam's moments and step count) whose JSON also holds the epoch
reached, the metrics so far, the generator's state and the run's settings.
:class:`Checkpoint` writes one at the end of every epoch, atomically, so a
kill at any instant leaves the previous checkpoint or the new one. Resuming
restores the generator, so the remaining epochs draw the same permutations and
end with the same weights, bit for bit, as a run that was never interrupted. With early stopping,
:class:`BestWeights` keeps the best epoch's weights beside the checkpoint, so a resumed run restores them.
"""

from pathlib import Path

from .callbacks import Callback
from .errors import DataError, FcnetError
from .model import Sequential
from .saving import load_model

__all__ = ["Checkpoint", "load_checkpoint", "CHECKPOINT", "BestWeights", "PruneBest", "best_weights"]

CHECKPOINT = "checkpoint.npz"


class Checkpoint(Callback):
    """Save ``folder/checkpoint.npz`` after every epoch.

    Parameters
    ----------
    folder : Path
    settings : dict
        The run's settings (``TrainConfig.to_dict()``), stored so that a resume needs nothing else.
    history : dict of lists, optional
        Metrics of epochs before this ``fit`` (when resuming).
    """

    def __init__(self, folder, settings, history=None):
        self.path = folder / CHECKPOINT
        self.settings = settings
        self.history = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs):
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        extra = {"epoch": epoch + 1, "history": self.history, "settings": self.settings,
                 "rng_state": self.model.rng.bit_generator.state}
        self.model.save(self.path, extra=extra)


def load_checkpoint(folder):
    """``(model, state)`` from ``folder/checkpoint.npz``: the model with its optimizer and generator restored,
    and ``state`` with ``epoch`` (epochs completed), ``history`` and ``settings``.

    Raises
    ------
    DataError
        No checkpoint there, or not a readable one.
    """
    path = folder / CHECKPOINT
    if not path.is_file():
        raise DataError(f"{folder}: no {CHECKPOINT} to resume from")
    model, extra = load_model(path, with_extra=True)
    if not isinstance(extra, dict) or not {"epoch", "history", "settings", "rng_state"} <= set(extra):
        raise DataError(f"{path}: a model file, not a checkpoint")
    epoch, history = extra["epoch"], extra["history"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise DataError(f"{path}: the epoch reached must be an integer ≥ 0, got {epoch!r}")
    if not isinstance(history, dict) or not all(isinstance(v, list) and len(v) == epoch for v in history.values()):
        raise DataError(f"{path}: the metrics so far must be lists of one value per epoch ({epoch})")
    try:
        model.rng.bit_generator.state = extra["rng_state"]
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: the generator's state cannot be restored ({type(exc).__name__})") from None
    return model, extra


class BestWeights(Callback):
    """Keeps the early-stopping watch's best weights in the run folder, ``best-EPOCH.npz``, so a resumed run can
    restore them. Written before the epoch's checkpoint; the older ones are removed after it (:class:`PruneBest`),
    so a kill at any instant leaves the file the checkpoint's history points to."""

    def __init__(self, stopper, folder, fresh):
        self.stopper, self.folder = stopper, Path(folder)
        if fresh:  # an earlier run's best weights in this folder belong to no checkpoint of this one
            for stale in self.folder.glob("best-*.npz"):
                stale.unlink()

    def path(self):
        return self.folder / f"best-{self.stopper.best_epoch + 1}.npz"

    def on_epoch_end(self, epoch, logs):
        if self.stopper.best_epoch == epoch:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(self.path())


class PruneBest(Callback):
    """After the checkpoint: every best-*.npz but the best epoch's goes."""

    def __init__(self, keeper):
        self.keeper = keeper

    def on_epoch_end(self, epoch, logs):
        for old in set(self.keeper.folder.glob("best-*.npz")) - {self.keeper.path()}:
            old.unlink()


def best_weights(out, stopper, model):
    """The best epoch's weights of ``model``'s run, checkpointed in ``out``, once ``stopper.resume`` has replayed
    its history (None before any epoch); a copy of ``model`` reads and checks them."""
    if stopper.best_epoch is None:
        return None
    path = BestWeights(stopper, out, fresh=False).path()
    if not path.is_file():
        raise FcnetError(f"{out}: the early-stopping watch's best weights ({path.name}) are missing; train it "
                         "again")
    reader = Sequential.from_config(model.get_config(), dtype=model.dtype)
    reader.load_weights(path)
    return reader.get_weights()
