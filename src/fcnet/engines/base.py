"""The engine contract, the interface every engine inherits, and what an engine covers.

The contract, which every engine follows and ``tests/engines/test_contract.py`` checks on each one present:

1. **Choice, once per fit.** :func:`fcnet.engines.make_engine` picks and builds the engine when ``fit`` starts
   (``"auto"``: the compiled CPU engine when Numba is installed and covers the model, else NumPy, saying why
   once; the GPU only when asked for, as PyTorch's ``device``) and the same engine, with the same buffers,
   trains every epoch of that ``fit``.
2. **Batches.** :meth:`Engine.epoch` takes ``ceil(n / batch_size)`` steps over ``x[order]``: step ``i``
   trains rows ``order[i * batch_size:(i + 1) * batch_size]``, the last, partial batch included.
   ``uint8`` inputs are scaled by 1/255 batch by batch (:meth:`fcnet.model.Sequential.to_float`).
3. **A step** computes the forward pass and the batch loss (the mean over its rows), **checks that the
   loss is finite, then** runs the backward pass and one optimizer update (``optimizer.iterations``
   grows by one). A non-finite loss ends the epoch at that step *before* anything is updated: the
   parameters, the optimizer's state and its iteration count are those of the previous step, on every
   engine, and the caller (:func:`fcnet.training.train_epoch`) raises :class:`~fcnet.errors.DivergenceError`.
4. **Randomness.** Engines draw nothing of their own: the random numbers of training are the initial weights,
   one ``model.rng.permutation(n)`` per epoch, drawn by ``fit`` (none when ``shuffle=False``), and the dropout
   masks' uniforms, drawn from the same generator in the layers' order, so every engine consumes the generator
   identically and a seed fixes a run on any.
5. **What is reported.** :meth:`Engine.epoch` yields one :class:`Step` per step, in order: its row count,
   its loss and its number of correct predictions (argmax of the output equals the label; 0 when the
   model has no metrics). ``fit`` calls every callback's ``on_batch_end(step, {"loss": loss})`` once per
   step, in order, on every engine; the epoch's ``loss`` and ``accuracy`` are the row-weighted means.
   After a step ``model.gradients`` holds that step's gradients on the NumPy engine; the compiled engine
   leaves the weight gradients of plain SGD unwritten (it adds ``−lr · xᵀδ`` into ``W`` with one GEMM),
   and the CUDA engine keeps its gradients on the GPU.
6. **When changes are seen.** The NumPy engine reads ``optimizer.learning_rate`` at every step; the
   compiled engine at every call of up to :data:`STEP_ROWS` rows, and it runs a call's steps before their
   ``on_batch_end`` calls; the CUDA engine reads it at the start of each epoch, runs chunks of that many
   rows ahead of their ``on_batch_end`` calls, and holds the weights on the GPU until the epoch ends (or
   stops). So a callback that changes the learning rate or the weights in ``on_epoch_begin`` or
   ``on_epoch_end`` is seen identically by all; one that changes them (or reads the weights) inside
   ``on_batch_end`` is not, and a per-step schedule belongs in the optimizer.

**Coverage.** Each engine declares what it covers as a :class:`Support`: allow-lists over the registries of
:mod:`fcnet.activations`, :mod:`fcnet.losses`, :mod:`fcnet.optimizers` and :mod:`fcnet.options`, with the
engine's own code for each formula. :func:`unsupported` refuses anything else with a one-line reason, so a
formula that is registered but has no twin in an engine is refused there, never run as something else.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import activations, losses, optimizers, options
from ..layers import Dense

__all__ = ["Engine", "Step", "Support", "unsupported", "OptimizerRule", "check_epoch", "STEP_ROWS", "SGD",
           "MOMENTUM", "NESTEROV", "ADAM", "RMSPROP"]

STEP_ROWS = 8192  # rows per compiled call: progress callbacks run between calls, the learning rate is read per call
SGD, MOMENTUM, NESTEROV, ADAM, RMSPROP = range(5)  # the compiled engines' update rules


class Step(NamedTuple):
    """What one training step reports: rows trained, batch loss, correct predictions."""

    rows: int
    loss: float
    hits: int


class Engine:
    """The interface: ``name``, ``model``, ``batch_size`` and :meth:`epoch`; built by
    :func:`fcnet.engines.make_engine`. ``SUPPORT`` (a :class:`Support`) is what the engine trains."""

    name = ""
    model = None
    batch_size = 0
    note = None  # why "auto" chose this engine over the compiled one, when it did
    sync = ()  # steps of an epoch after which the model's weights must be exact (Callback.sync_steps)

    def epoch(self, x, y, order):
        """Train one epoch over ``x[order]`` (checked inputs and targets); yield a :class:`Step` per step."""
        raise NotImplementedError


@dataclass(frozen=True)
class Support:
    """What an engine (or an exporter) covers: allow-lists keyed by registered names.

    Parameters
    ----------
    name : str
        Who declares it ("numba"), for messages.
    hidden : dict
        Hidden activation name → the engine's code for it (the ``case`` of its kernel).
    outputs : dict
        Output activation name → code.
    losses : dict
        Loss name → the targets it is covered against: ``"labels"`` (integer labels, shape ``(n,)``) or
        ``"values"`` (float targets, shape ``(n, k)``, with a linear output).
    optimizers : frozenset
        Optimizer names (their rules: :class:`OptimizerRule`).
    options : frozenset
        Names of :data:`fcnet.options.OPTIONS` covered.
    verb : str
        What is refused: "compiled", "exported".
    """

    name: str
    hidden: dict
    outputs: dict
    losses: dict
    optimizers: frozenset
    options: frozenset
    verb: str = "compiled"
    dtypes: tuple = (np.dtype(np.float32), np.dtype(np.float64))

    def __post_init__(self):  # every name must be registered: an allow-list cannot name a formula that is not one
        for registry, names in ((activations.REGISTRY, self.hidden), (activations.REGISTRY, self.outputs),
                                (losses.REGISTRY, self.losses), (optimizers.REGISTRY, self.optimizers),
                                (options.OPTIONS, self.options)):
            unknown = set(names) - set(registry)
            if unknown:
                raise ValueError(f"{self.name} allows unregistered names: {sorted(unknown)}")


def unsupported(model, y, support, training=True):
    """Why ``support`` does not cover ``model`` (compiled) with targets ``y`` (a short phrase), or ``None``.

    Names are looked up in the allow-lists and classes matched exactly against their registries: a subclass may
    override the formulas an engine transcribes. ``training=False`` (a predictor, an exporter): only what the
    forward pass at inference uses is checked (the layers and options such as batch normalization), and ``y`` is
    not read.
    """
    verb = support.verb
    if model.dtype not in support.dtypes:
        return f"dtype {model.dtype} is not {verb}"
    for i, layer in enumerate(model.layers):
        if type(layer) is not Dense:
            return f"layer type {type(layer).__name__} is not {verb}"
        act, last = layer.activation, i == len(model.layers) - 1
        allowed, where = (support.outputs, "output") if last else (support.hidden, "hidden")
        if act.name not in allowed:
            return f"{where} activation {act.name!r} is not {verb}"
        if not activations.REGISTRY.is_exact(act):
            return f"{where} activation {type(act).__name__} (not the registered {act.name!r}) is not {verb}"
    for name in options.used(model, training):
        if name not in support.options:
            return f"{options.OPTIONS[name].description} is not {verb}"
    if not training:
        return None
    loss, opt = model.loss, model.optimizer
    if loss.name not in support.losses or not losses.REGISTRY.is_exact(loss):
        return f"loss {loss.name!r} is not {verb}"
    if support.losses[loss.name] == "labels" and y.ndim != 1:
        return f"{loss.name} is {verb} against integer labels only"
    if support.losses[loss.name] == "values" and (y.ndim != 2 or model.layers[-1].activation.name != "linear"):
        return f"{loss.name} is {verb} against float targets with a linear output only"
    if opt.name not in support.optimizers or not optimizers.REGISTRY.is_exact(opt):
        return f"optimizer {type(opt).__name__} is not {verb}"
    return None


class OptimizerRule:
    """An optimizer as the compiled updates see it.

    ``rule`` (one of the codes above); ``h1, h2`` = momentum (SGD), ``beta_1, beta_2`` (Adam) or ``rho``
    (RMSprop); ``epsilon``; ``torch_form`` (PyTorch's placement of epsilon); ``slots``: the names of the
    two state arrays each parameter's update reads (``None`` where the rule keeps none).
    """

    def __init__(self, optimizer):
        c = optimizer.get_config()
        if optimizer.name == "sgd":
            self.rule = NESTEROV if optimizer.nesterov else MOMENTUM if optimizer.momentum else SGD
            self.h1, self.h2 = c["momentum"], 0.0
            self.slots = (None, None) if self.rule == SGD else ("velocity", None)
        elif optimizer.name in ("adam", "adamw"):
            self.rule, self.h1, self.h2, self.slots = ADAM, c["beta_1"], c["beta_2"], ("m", "v")
        elif optimizer.name == "rmsprop":
            self.rule, self.h1, self.h2, self.slots = RMSPROP, c["rho"], 0.0, ("velocity", None)
        else:  # unsupported() refuses it first; this keeps a new optimizer from running as another's rule
            raise ValueError(f"optimizer {optimizer.name!r} has no compiled rule")
        self.epsilon = c.get("epsilon", 0.0)
        self.torch_form = c.get("epsilon_form", "keras") == "torch"

    def step_sizes(self, lr, t):
        """Adam's bias-corrected step size and ``1 / (1 − beta_2^t)`` for iteration numbers ``t`` (1-based).

        In float64, as ``fcnet.optimizers.Adam`` computes them (and ``fcnet.engines.numba._steps`` per step).
        """
        t = np.asarray(t, dtype=np.float64)
        c1, c2 = 1 - self.h1**t, 1 - self.h2**t
        step = lr / c1 if self.torch_form else lr * np.sqrt(c2) / c1
        return step, (1 / c2 if self.rule == ADAM else np.zeros_like(t))


def check_epoch(model, x, y, order):
    """Refuse, as NumPy's indexing would, what compiled code does not bound-check: shapes, order, labels."""
    n = len(x)
    if x.ndim != 2 or x.shape[1] != model.input_dim or len(y) != n or (y.ndim == 2 and y.shape[1] != model.output_dim):
        raise ValueError(f"x must have shape (n, {model.input_dim}) and y n entries, got {x.shape} and {len(y)}")
    if order.ndim != 1 or order.dtype.kind not in "iu" or (order.size and (order.min() < 0 or order.max() >= n)):
        raise ValueError(f"order must be a 1-D array of row indices in 0..{n - 1}")
    if n and y.ndim == 1 and (y.min() < 0 or y.max() >= model.output_dim):
        raise ValueError(f"labels must lie in 0..{model.output_dim - 1}, found {y.min()}..{y.max()}")
