"""What the compiled engines cover, and the codes they share: :mod:`fcnet.jit` (Numba, CPU) and
:mod:`fcnet.cuda` (CuPy, GPU) transcribe the same formulas and accept the same models.

Covered: Dense layers with linear, ReLU, leaky ReLU, sigmoid or tanh hidden activations, a softmax (or
logits) output with cross-entropy against integer labels — or, on the CPU, a linear output with squared error
against float targets —, SGD (plain, momentum, Nesterov), Adam and RMSprop in both epsilon forms, float32 or
float64; on the CPU also dropout, L2 kernel penalties, decoupled weight decay (AdamW), gradient clipping
(``clipvalue``, ``clipnorm``, ``global_clipnorm``) and a learning-rate schedule read at every step.
"""

import numpy as np

from . import activations, losses, optimizers
from .layers import Dense

__all__ = ["ACTIVATIONS", "CPU_ACTIVATIONS", "SGD", "MOMENTUM", "NESTEROV", "ADAM", "RMSPROP", "STEP_ROWS",
           "unsupported", "OptimizerRule", "check_epoch"]

ACTIVATIONS = {activations.Linear: 0, activations.ReLU: 1, activations.LeakyReLU: 2, activations.Sigmoid: 3,
               activations.Tanh: 4}
CPU_ACTIVATIONS = {**ACTIVATIONS, activations.GELU: 5, activations.Swish: 6}  # these two also on the CPU engine
SGD, MOMENTUM, NESTEROV, ADAM, RMSPROP = range(5)
STEP_ROWS = 8192  # rows per compiled call: progress callbacks run between calls, the learning rate is read per call


def unsupported(model, y, squared_error=True, regularized=True):
    """Why ``model`` cannot train on targets ``y`` in a compiled engine (a short phrase), or ``None``.

    ``squared_error``: the engine also compiles squared error against float targets (the CPU one does);
    ``regularized``: it also compiles dropout, L2 penalties, weight decay, clipping, per-step schedules, label
    smoothing and the hidden activations gelu and swish (the CPU one does).
    Classes are matched exactly: a subclass may override the formulas the engines transcribe.
    """
    if model.dtype not in (np.float32, np.float64):
        return f"dtype {model.dtype} is not compiled"
    crossentropy = type(model.loss) in (losses.SparseCategoricalCrossentropy, losses.CategoricalCrossentropy)
    regression = (squared_error and type(model.loss) is losses.MeanSquaredError and y.ndim == 2
                  and type(model.layers[-1].activation) is activations.Linear)
    if crossentropy and model.loss.label_smoothing and not regularized:
        return "label smoothing is not compiled"
    if not (crossentropy and y.ndim == 1) and not regression:
        if squared_error:
            return ("only cross-entropy against integer labels, and squared error against float targets with a "
                    "linear output, are compiled")
        return "only cross-entropy against integer labels is compiled"
    for i, layer in enumerate(model.layers):
        act, last = layer.activation, i == len(model.layers) - 1
        if type(layer) is not Dense:
            return f"layer type {type(layer).__name__} is not compiled"
        if layer.kernel_regularizer is not None and not regularized:
            return "a kernel regularizer is not compiled"
        if layer.batch_norm is not None:
            return "batch normalization is not compiled"
        if layer.dropout and not regularized:
            return "dropout is not compiled"
        if last and type(act) not in (activations.Softmax, activations.Linear):
            return f"output activation {act.name!r} is not compiled"
        if not last and type(act) not in (CPU_ACTIVATIONS if regularized else ACTIVATIONS):
            return f"hidden activation {act.name!r} is not compiled"
    compiled = (optimizers.SGD, optimizers.Adam, optimizers.RMSprop) + ((optimizers.AdamW,) if regularized else ())
    if type(model.optimizer) not in compiled:
        return f"optimizer {type(model.optimizer).__name__} is not compiled"
    if model.optimizer.schedule is not None and not regularized:
        return "a learning-rate schedule read at every step is not compiled (one set per epoch is: callbacks)"
    options = [k for k, v in model.optimizer.options.items() if v and not regularized]
    if options:
        return f"the optimizer's {', '.join(options)} is not compiled"
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
        else:
            adam = optimizer.name in ("adam", "adamw")
            self.rule = ADAM if adam else RMSPROP
            self.h1, self.h2 = (c["beta_1"], c["beta_2"]) if adam else (c["rho"], 0.0)
            self.slots = ("m", "v") if adam else ("velocity", None)
        self.epsilon = c.get("epsilon", 0.0)
        self.torch_form = c.get("epsilon_form", "keras") == "torch"

    def step_sizes(self, lr, t):
        """Adam's bias-corrected step size and ``1 / (1 − beta_2^t)`` for iteration numbers ``t`` (1-based).

        In float64, as ``fcnet.optimizers.Adam`` computes them (and ``fcnet.jit._steps`` per step).
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
