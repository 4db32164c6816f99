"""Training diagnostics per layer, every N steps, the same on the NumPy and the compiled engines: are the
activations alive, are the gradients flowing, are the updates the right size? (Karpathy's "makemore" part 3.)

:class:`Diagnostics` measures on a fixed probe batch that the user gives (the same rows every time, so records are
comparable over training), from the model's true weights after step ``k`` of an epoch for ``k + 1`` a multiple of
``every``: it names those steps (and the one before each) as sync steps, so the compiled engine ends a call there
(``fcnet.callbacks.Callback.sync_steps``) and the weights it reads are the ones NumPy's engine would have. The CUDA
engine refuses it (its weights stay on the GPU until the epoch ends).

Per layer and record (``records``, a list of dicts; :meth:`Diagnostics.history` gives per-layer lists):

- ``act_mean``, ``act_std``: of the layer's output on the probe batch (at inference);
- ``dead``: for ReLU layers, the fraction of units that are 0 for every probe row; ``saturated``: for sigmoid and
  tanh layers, the fraction of outputs within 3 % of the bounds (tanh |a| > 0.97; sigmoid a < 0.03 or > 0.97);
  ``None`` for other activations;
- ``grad_norm``: ‖dL/dW‖ on the probe batch (``loss_and_gradients``, the reference backward pass);
- ``update_ratio``: ‖W_k − W_{k−1}‖ / ‖W_k‖, the size of the last step's change of the kernel relative to the kernel
  (about 1e-3 is the usual healthy size; far below, the layer hardly learns, far above, it thrashes);
- ``act_hist``: counts of the outputs in :data:`ACT_BINS`; ``grad_hist``: counts of log10 |dL/dW| in
  :data:`GRAD_BINS` (zeros below the first bin).
"""

import numpy as np

from .callbacks import Callback

__all__ = ["Diagnostics", "ACT_BINS", "GRAD_BINS"]

ACT_BINS = np.linspace(-3.0, 3.0, 25)  # edges: 24 bins of activations
GRAD_BINS = np.linspace(-10.0, 0.0, 21)  # edges: 20 bins of log10 |gradient|


class Diagnostics(Callback):
    """Record per-layer diagnostics every ``every`` steps of each epoch on a probe batch ``(x, y)``.

    Parameters
    ----------
    x, y : array_like
        The probe batch (a few hundred rows), as ``fit`` takes inputs and targets.
    every : int
        Steps between records (steps ``every − 1``, ``2 every − 1``, ... of each epoch).
    """

    def __init__(self, x, y, every=50):
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.x, self.y, self.every = np.asarray(x), np.asarray(y), int(every)
        self.records, self._previous, self._epoch = [], None, 0

    def sync_steps(self, steps):
        """Each record's step and the one before it (the update ratio needs both weights)."""
        return sorted({s for k in range(self.every - 1, steps, self.every) for s in (k - 1, k) if s >= 0})

    def on_epoch_begin(self, epoch, logs):
        self._epoch, self._previous = epoch, None

    def on_batch_end(self, batch, logs):
        if (batch + 1) % self.every == 0:
            self.records.append(self.measure(step=batch))
        if (batch + 2) % self.every == 0 or self.every == 1:  # the weights the next record's step starts from
            self._previous = (batch, [layer.params["W"].copy() for layer in self.model.layers])

    def measure(self, step=None):
        """One record of the model as it is now (``step``: the step of the epoch it follows)."""
        model = self.model
        x = model.check_inputs(self.x)
        _, grads = model.loss_and_gradients(x, self.y)
        a = model.to_float(x)
        before = self._previous[1] if self._previous is not None and self._previous[0] == step - 1 else None
        layers = []
        for i, layer in enumerate(model.layers):
            a = layer(a)
            W, g = layer.params["W"], grads[2 * i]
            name = layer.activation.name
            dead = float(np.mean(np.all(a == 0, axis=0))) if name == "relu" else None
            saturated = (float(np.mean(np.abs(a) > 0.97)) if name == "tanh" else
                         float(np.mean(np.abs(2 * a - 1) > 0.94)) if name == "sigmoid" else None)
            norm = float(np.linalg.norm(W))
            with np.errstate(divide="ignore"):
                grad_log = np.log10(np.abs(g))  # −inf for a zero: below the first bin, as documented
            layers.append({
                "act_mean": float(a.mean()), "act_std": float(a.std()), "dead": dead, "saturated": saturated,
                "grad_norm": float(np.linalg.norm(g)),
                "update_ratio": None if before is None else float(np.linalg.norm(W - before[i]) / norm) if norm
                else None,
                "act_hist": _counts(a, ACT_BINS), "grad_hist": _counts(grad_log, GRAD_BINS, low=False),
            })
        return {"epoch": self._epoch, "step": step, "iterations": model.optimizer.iterations, "layers": layers}

    def history(self, key):
        """``key`` (``"grad_norm"``, ``"update_ratio"``, ...) of every record, one list per layer."""
        return [[r["layers"][i][key] for r in self.records] for i in range(len(self.model.layers))]


def _counts(values, edges, low=True):
    """Counts of ``values`` in the equal bins ``edges`` (``np.histogram``'s bins, by index arithmetic instead of a
    sort); values outside go to the end bins, or, with ``low=False``, those below the first edge are not counted."""
    values = np.ravel(values)
    if not low:
        values = values[values >= edges[0]]
    width = (edges[-1] - edges[0]) / (len(edges) - 1)
    index = np.clip(((values - edges[0]) / width).astype(np.int64), 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1).tolist()
