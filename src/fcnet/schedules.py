"""Learning-rate schedules, Keras-shaped: ``schedule(step) -> learning rate``.

Passed as an optimizer's ``learning_rate`` (``fcnet.SGD(learning_rate=CosineDecay(0.1, 10_000))``), a schedule
is read at every step, with the optimizer's step count before the step (0, 1, 2, ...), as Keras reads it; such
an optimizer trains on the NumPy engine. Driven by :class:`~fcnet.callbacks.LearningRateScheduler`, the step is
the epoch: that is what ``fcnet train --lr-schedule`` does (:func:`per_epoch`), and every engine runs it, since
the rate changes only between epochs.

- :class:`ExponentialDecay`: ``lr · rate^(t / steps)`` (``staircase``: ``⌊t / steps⌋``; a step decay).
- :class:`PiecewiseConstantDecay`: ``values[i]`` until ``boundaries[i]``.
- :class:`CosineDecay`: linear warm-up from ``initial_learning_rate`` to ``warmup_target`` over
  ``warmup_steps``, then ``(1 − α) · ½(1 + cos(π t / decay_steps)) + α`` times the peak (Keras 3's).
- :class:`OneCycle`: PyTorch's ``OneCycleLR`` (cosine annealing): up from ``max_lr / div_factor`` to ``max_lr``
  over ``pct_start`` of ``total_steps``, then down to ``max_lr / (div_factor · final_div_factor)``.
"""

import math

from .registry import Registry

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "OneCycle", "get",
           "per_epoch", "NAMES", "REGISTRY"]


def _number(name, value, low=0.0, strict=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            value <= low if strict else value < low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '≥'} {low:g}, got {value!r}")
    return float(value)


class LearningRateSchedule:
    """Base class: ``__call__(step)`` gives the learning rate at ``step`` (an int ≥ 0); ``get_config()`` its
    name and arguments, so that ``get(s.get_config())`` is the same schedule."""

    name = ""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, **self.__dict__}


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate · decay_rate^(step / decay_steps)``; ``staircase`` floors the exponent."""

    name = "exponential_decay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` for ``step ≤ boundaries[0]``, ``values[1]`` up to ``boundaries[1]``, ..., ``values[-1]``
    after the last boundary (Keras')."""

    name = "piecewise_constant_decay"

    def __init__(self, boundaries, values):
        self.boundaries = [_number("a boundary", b, strict=False) for b in boundaries]
        self.values = [_number("a value", v) for v in values]
        if len(self.values) != len(self.boundaries) + 1 or self.boundaries != sorted(self.boundaries):
            raise ValueError("values must have one entry more than boundaries, which must increase")

    def __call__(self, step):
        return self.values[sum(step > b for b in self.boundaries)]


class CosineDecay(LearningRateSchedule):
    """Keras 3's: warm up linearly from ``initial_learning_rate`` to ``warmup_target`` (when given) over
    ``warmup_steps``, then decay the peak by ``(1 − alpha) · ½(1 + cos(π · min(t, decay_steps) / decay_steps))
    + alpha``, ``t`` counted from the end of the warm-up."""

    name = "cosine_decay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate, strict=False)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.alpha = _number("alpha", alpha, strict=False)
        self.warmup_target = None if warmup_target is None else _number("warmup_target", warmup_target)
        self.warmup_steps = _number("warmup_steps", warmup_steps, strict=False)
        if self.warmup_target is None and not self.initial_learning_rate > 0:
            raise ValueError("initial_learning_rate must be > 0 without a warm-up")

    def __call__(self, step):
        peak = self.initial_learning_rate if self.warmup_target is None else self.warmup_target
        if step < self.warmup_steps:
            return self.initial_learning_rate + (peak - self.initial_learning_rate) * step / self.warmup_steps
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return peak * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t)) + self.alpha)


class OneCycle(LearningRateSchedule):
    """PyTorch's ``OneCycleLR`` with cosine annealing (its defaults): from ``max_lr / div_factor`` up to
    ``max_lr`` at step ``pct_start · total_steps − 1``, then down to ``max_lr / div_factor / final_div_factor``
    at step ``total_steps − 1``."""

    name = "one_cycle"

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.max_lr = _number("max_lr", max_lr)
        self.total_steps = _number("total_steps", total_steps)
        self.pct_start = _number("pct_start", pct_start)
        self.div_factor = _number("div_factor", div_factor)
        self.final_div_factor = _number("final_div_factor", final_div_factor)
        if not (self.pct_start < 1 and self.total_steps >= 2):
            raise ValueError("pct_start must be below 1 and total_steps at least 2")

    def __call__(self, step):
        start, end = self.max_lr / self.div_factor, self.max_lr / self.div_factor / self.final_div_factor
        peak_step = self.pct_start * self.total_steps - 1
        if step <= peak_step:
            low, high, t = start, self.max_lr, step / peak_step if peak_step > 0 else 1.0
        else:
            low, high, t = self.max_lr, end, (step - peak_step) / (self.total_steps - 1 - peak_step)
        return high + (low - high) / 2 * (1 + math.cos(math.pi * min(t, 1.0)))


REGISTRY = Registry("learning-rate schedule", (ExponentialDecay, PiecewiseConstantDecay, CosineDecay, OneCycle))
NAMES = ("cosine", "step", "exp", "onecycle")  # fcnet train --lr-schedule


def get(identifier):
    """A schedule from an instance or a config dict ``{"name": ..., **arguments}``."""
    return REGISTRY.get(identifier, LearningRateSchedule)


def per_epoch(kind, lr, epochs, warmup=0):
    """The schedule ``fcnet train --lr-schedule KIND`` follows, in epochs (epoch ``e`` trains at ``s(e)``).

    ``cosine``: ``warmup`` epochs rising linearly from ``lr / (warmup + 1)`` to ``lr``, then cosine decay to 0
    over the remaining epochs; ``step``: ``lr``, then ``lr / 10`` from half-way and ``lr / 100`` from three
    quarters; ``exp``: down to ``lr / 100`` at the end, geometrically; ``onecycle``: :class:`OneCycle` over the
    epochs, peaking at ``lr``.
    """
    if warmup and kind != "cosine":
        raise ValueError("warmup goes with the cosine schedule")
    if not 0 <= warmup < epochs:
        raise ValueError(f"warmup must leave epochs to decay over: {warmup} of {epochs} epochs")
    if kind == "cosine":
        return CosineDecay(lr / (warmup + 1) if warmup else lr, epochs - warmup, warmup_target=lr if warmup else None,
                           warmup_steps=warmup)
    if kind == "step":
        return PiecewiseConstantDecay([max(epochs // 2 - 1, 0), max(3 * epochs // 4 - 1, 0)], [lr, lr / 10, lr / 100])
    if kind == "exp":
        return ExponentialDecay(lr, max(epochs - 1, 1), 0.01)
    if kind == "onecycle":
        return OneCycle(lr, max(epochs, 2))
    raise ValueError(f"unknown schedule {kind!r}; choose from {', '.join(NAMES)}")
