"""Optimizers: they take matched (gradient, parameter) pairs and keep their own state.

Layers know nothing of optimizers. State (momentum, Adam's moments) is created
lazily the first time a parameter is seen and is keyed by that parameter, so
one optimizer can serve any list of arrays, as in Keras' ``apply_gradients``.
Updates are in place, written as BLAS AXPY/AXPBY (``y ← αx + βy`` in one
pass, no temporaries) and in-place ufuncs. Each rule's compiled twin is
``fcnet.engines.numba_kernels.update`` (plain SGD's weight update is the β = 1 GEMM in
``fcnet.engines.numba._steps``), and on the GPU the kernel ``update`` in ``fcnet.engines.cuda``.
Defaults are Keras'; the update rules and how they map to ``torch.optim`` are
in ``docs/backprop.md``.

Every optimizer also takes Keras' options (keyword-only, off by default), applied in
:meth:`Optimizer.apply_gradients` before the rule: ``clipvalue`` (clip each gradient entry to
``[-clipvalue, clipvalue]``), ``clipnorm`` (scale each gradient array to at most that L2 norm,
``g · c / max(‖g‖, c)``, as ``tf.clip_by_norm``), ``global_clipnorm`` (the same over all arrays together)
and ``weight_decay``, decoupled (Loshchilov & Hutter): ``p ← p · (1 − lr · weight_decay)`` before the step, as
Keras and ``torch.optim.AdamW`` do. :class:`AdamW` is Adam with ``weight_decay=0.004`` (Keras' default). These
all run on the NumPy engine; the compiled CPU engine also runs weight decay (each engine's ``SUPPORT`` lists what
it covers).
"""

import numpy as np

from . import schedules
from .blas import axpby, axpy
from .registry import Registry

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get", "NAMES", "OPTIONS", "REGISTRY"]

OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
FLUSH_EVERY = 16  # steps between flushes of subnormal state (see Optimizer.apply_gradients)


def _positive(name, value):
    value = float(value)
    if not value > 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _non_negative(name, value):
    value = float(value)
    if not value >= 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a number ≥ 0, got {value}")
    return value


def _fraction(name, value):
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _epsilon_form(value):
    if value not in ("keras", "torch"):
        raise ValueError(f"epsilon_form must be 'keras' or 'torch', got {value!r}")
    return value


class Optimizer:
    """Base class. ``learning_rate`` may also be given as ``lr``, and may be a schedule
    (:mod:`fcnet.schedules`: read before every step with the step count, as Keras reads it; ``schedule`` holds
    it); ``weight_decay``, ``clipnorm``, ``clipvalue`` and ``global_clipnorm`` are the options described in the
    module's docstring (``None``: off)."""

    name = ""
    slot_names = ()

    def __init__(self, learning_rate, lr=None, *, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        learning_rate = learning_rate if lr is None else lr
        if isinstance(learning_rate, dict):  # a saved schedule
            learning_rate = schedules.get(learning_rate)
        self.schedule = learning_rate if isinstance(learning_rate, schedules.LearningRateSchedule) else None
        self.learning_rate = (_positive("learning rate", learning_rate) if self.schedule is None else
                              _non_negative("the schedule's learning rate", self.schedule(0)))  # a warm-up from 0
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("clipnorm and global_clipnorm cannot both be set")
        self.weight_decay = None if weight_decay is None else _non_negative("weight_decay", weight_decay)
        self.clipnorm = None if clipnorm is None else _positive("clipnorm", clipnorm)
        self.clipvalue = None if clipvalue is None else _positive("clipvalue", clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else _positive("global_clipnorm", global_clipnorm)
        self.iterations = 0
        self._slots = {}  # id(param) -> (param, {slot name: array})

    @property
    def options(self):
        """The options that are set, ``{name: value}`` (empty for a plain optimizer)."""
        return {name: getattr(self, name) for name in OPTIONS if getattr(self, name, None) is not None}

    def apply_gradients(self, grads_and_params):
        """Update each parameter in place from its gradient; one call is one step.

        Parameters
        ----------
        grads_and_params : iterable of (ndarray, ndarray)
            ``(gradient, parameter)`` pairs of equal shapes, as ``zip(grads, model.parameters)``.
        """
        if self.schedule is not None:
            self.learning_rate = _non_negative("the schedule's learning rate", self.schedule(self.iterations))
        self.iterations += 1
        pairs = list(grads_and_params)
        for grad, param in pairs:
            if grad.shape != param.shape:
                raise ValueError(f"gradient of shape {grad.shape} for a parameter of shape {param.shape}")
        if self.clipvalue is not None:
            pairs = [(np.clip(g, -self.clipvalue, self.clipvalue), p) for g, p in pairs]
        if self.clipnorm is not None:
            pairs = [(_clip_by_norm(g, self.clipnorm, np.sqrt(np.sum(g * g))), p) for g, p in pairs]
        if self.global_clipnorm is not None:
            norm = np.sqrt(sum(np.sum(g * g) for g, _ in pairs))
            pairs = [(_clip_by_norm(g, self.global_clipnorm, norm), p) for g, p in pairs]
        for grad, param in pairs:
            if self.weight_decay:
                param *= 1 - self.learning_rate * self.weight_decay
            self._update(param, grad, self.slots(param))
        if self.iterations % FLUSH_EVERY == 0:
            self._flush(param for _, param in pairs)

    def _flush(self, params):
        """State below the smallest normal number becomes 0, as in the compiled engine
        (``fcnet.engines.numba_kernels.flush``).

        Momentum and Adam's first moment decay geometrically where a gradient stays 0 (inputs that are
        always 0, dead units), into subnormal numbers, on which x86 arithmetic is ~100× slower: a
        784-1024-512-10 Adam epoch took 7.5, 13.0, then 16.8 s before this. Such a value moves no weight (its
        step is far below half an ulp of the weight), so flushing it every :data:`FLUSH_EVERY` steps leaves the
        weights as they were and costs a pass over the state now and then.
        """
        for param in params:
            for array in self.slots(param).values():
                if array.dtype.kind == "f":
                    np.copyto(array, 0, where=np.abs(array) < np.finfo(array.dtype).tiny)

    def _with_options(self, config):
        """``config`` with the options that are set and the schedule (what :meth:`get_config` returns)."""
        if self.schedule is not None:
            config["learning_rate"] = self.schedule.get_config()
        return {**config, **self.options}

    def __setstate__(self, state):
        """Unpickled: the state is keyed by the new ids of the (unpickled, same) parameter arrays."""
        self.__dict__.update(state)
        self._slots = {id(entry[0]): entry for entry in self._slots.values()}

    def slots(self, param):
        """The state arrays kept for ``param`` (``{slot name: array shaped like param}``), made on first use."""
        entry = self._slots.get(id(param))
        if entry is None or entry[0] is not param:
            entry = (param, {name: np.zeros_like(param) for name in self.slot_names}, [None])
            self._slots[id(param)] = entry
        return entry[1]

    def _scratch(self, param):
        """A temporary shaped like ``param``, kept between steps (not part of the saved state)."""
        self.slots(param)  # makes sure the entry exists
        holder = self._slots[id(param)][2]
        if holder[0] is None:
            holder[0] = np.empty_like(param)
        return holder[0]

    def _update(self, param, grad, state):
        raise NotImplementedError

    def get_state(self, params):
        """The optimizer's state for ``params`` as ``{key: array}``, for saving; includes ``iterations``."""
        state = {"iterations": np.array(self.iterations)}
        for i, param in enumerate(params):
            for name, array in self.slots(param).items():
                state[f"{name}_{i}"] = array
        return state

    def set_state(self, params, state):
        """Restore what :meth:`get_state` returned for the same list of parameters."""
        self.iterations = int(state["iterations"])
        for i, param in enumerate(params):
            for name, array in self.slots(param).items():
                array[...] = state[f"{name}_{i}"]

    def get_config(self):
        raise NotImplementedError


def _clip_by_norm(grad, limit, norm):
    """``grad · limit / max(norm, limit)``: unchanged when ``norm ≤ limit`` (``tf.clip_by_norm``)."""
    return grad if norm <= limit else grad * (limit / norm)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, in Keras' form.

    ``v = momentum * v - lr * g``; ``p += v`` (Nesterov: ``p += momentum * v - lr * g``).
    Without momentum: ``p -= lr * g``.
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *, lr=None, **options):
        super().__init__(learning_rate, lr, **options)
        self.momentum = _fraction("momentum", momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    def _update(self, param, grad, state):
        # Compiled twins: fcnet.engines.numba_kernels.update, rules SGD, MOMENTUM, NESTEROV (plain SGD on a weight
        # matrix is the β = 1 GEMM in fcnet.engines.numba._steps); rules 0-2 of the kernel update in fcnet.engines.cuda.
        if not self.momentum:
            axpy(param, grad, -self.learning_rate)
            return
        v = state["velocity"]
        axpby(v, grad, -self.learning_rate, self.momentum)
        if self.nesterov:
            axpy(param, v, self.momentum)
            axpy(param, grad, -self.learning_rate)
        else:
            axpy(param, v, 1.0)

    def get_config(self):
        return self._with_options({"name": self.name, "learning_rate": self.learning_rate, "momentum": self.momentum,
                                   "nesterov": self.nesterov})


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015); by default in Keras' form, with epsilon outside the bias correction.

    ``m += (1 - beta_1)(g - m)``; ``v += (1 - beta_2)(g² - v)``; then, with ``epsilon_form="keras"``
    (the paper's "epsilon hat" variant, Keras' and TensorFlow's rule),
    ``p -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``, or with
    ``epsilon_form="torch"`` (the paper's Algorithm 1, PyTorch's rule),
    ``p -= lr / (1 - beta_1^t) * m / (sqrt(v / (1 - beta_2^t)) + epsilon)``. The two agree when
    ``epsilon`` is negligible next to ``sqrt(v)``. ``epsilon`` may also be given as ``eps``.
    """

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, epsilon_form="keras", *,
                 lr=None, eps=None, **options):
        super().__init__(learning_rate, lr, **options)
        self.beta_1 = _fraction("beta_1", beta_1)
        self.beta_2 = _fraction("beta_2", beta_2)
        self.epsilon = _positive("epsilon", epsilon if eps is None else eps)
        self.epsilon_form = _epsilon_form(epsilon_form)

    def _update(self, param, grad, state):
        # Compiled twins: fcnet.engines.numba_kernels.update, rule ADAM; rule 3 of the kernel update in
        # fcnet.engines.cuda.
        m, v, t, tmp = state["m"], state["v"], self.iterations, self._scratch(param)
        axpby(m, grad, 1 - self.beta_1, self.beta_1)
        axpby(v, np.multiply(grad, grad, out=tmp), 1 - self.beta_2, self.beta_2)
        correction_1, correction_2 = 1 - self.beta_1**t, 1 - self.beta_2**t
        if self.epsilon_form == "keras":
            step = self.learning_rate * np.sqrt(correction_2) / correction_1
            np.sqrt(v, out=tmp)
        else:
            step = self.learning_rate / correction_1
            np.sqrt(np.multiply(v, 1 / correction_2, out=tmp), out=tmp)
        tmp += self.epsilon
        axpy(param, np.divide(m, tmp, out=tmp), -step)

    def get_config(self):
        config = {"name": self.name, "learning_rate": self.learning_rate, "beta_1": self.beta_1,
                  "beta_2": self.beta_2, "epsilon": self.epsilon}
        if self.epsilon_form != "keras":
            config["epsilon_form"] = self.epsilon_form
        return self._with_options(config)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), Keras' ``AdamW``: ``weight_decay`` defaults
    to 0.004; ``p ← p · (1 − lr · weight_decay)``, then Adam's step (``torch.optim.AdamW`` with
    ``epsilon_form="torch"``)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 epsilon_form="keras", **options):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, epsilon_form, weight_decay=weight_decay, **options)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012): ``v = rho v + (1 - rho) g²``, then by default in Keras 3's form
    ``p -= lr g / sqrt(v + epsilon)`` (``epsilon_form="keras"``), or PyTorch's
    ``p -= lr g / (sqrt(v) + epsilon)`` (``epsilon_form="torch"``). ``epsilon`` may also be given as ``eps``.
    """

    name = "rmsprop"
    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, epsilon_form="keras", *, lr=None, eps=None,
                 **options):
        super().__init__(learning_rate, lr, **options)
        self.rho = _fraction("rho", rho)
        self.epsilon = _positive("epsilon", epsilon if eps is None else eps)
        self.epsilon_form = _epsilon_form(epsilon_form)

    def _update(self, param, grad, state):
        # Compiled twins: fcnet.engines.numba_kernels.update, rule RMSPROP; rule 4 of the kernel update in
        # fcnet.engines.cuda.
        v, tmp = state["velocity"], self._scratch(param)
        axpby(v, np.multiply(grad, grad, out=tmp), 1 - self.rho, self.rho)
        if self.epsilon_form == "keras":
            np.sqrt(np.add(v, self.epsilon, out=tmp), out=tmp)
        else:
            np.sqrt(v, out=tmp)
            tmp += self.epsilon
        axpy(param, np.divide(grad, tmp, out=tmp), -self.learning_rate)

    def get_config(self):
        config = {"name": self.name, "learning_rate": self.learning_rate, "rho": self.rho, "epsilon": self.epsilon}
        if self.epsilon_form != "keras":
            config["epsilon_form"] = self.epsilon_form
        return self._with_options(config)


REGISTRY = Registry("optimizer", (SGD, Adam, AdamW, RMSprop))
NAMES = tuple(REGISTRY)


def get(identifier):
    """Return an :class:`Optimizer` from a name (Keras defaults), a config dict or an instance."""
    return REGISTRY.get(identifier, Optimizer)
