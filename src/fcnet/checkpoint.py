"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a model file (:meth:`fcnet.model.Sequential.save`: weights, optimizer
state with Adam's moments and step count) whose JSON also holds the epoch
reached, the metrics so far, the generator's state and the run's settings.
:class:`Checkpoint` writes one at the end of every epoch, atomically, so a
kill at any instant leaves the previous checkpoint or the new one. Resuming
restores the generator, so the remaining epochs draw the same permutations and
end with the same weights, bit for bit, as a run that was never interrupted.
"""

from .callbacks import Callback
from .errors import DataError
from .saving import load_model

__all__ = ["Checkpoint", "load_checkpoint", "CHECKPOINT"]

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
