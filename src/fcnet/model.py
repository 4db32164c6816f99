"""``Sequential``: a stack of ``Dense`` layers with Keras' compile / fit / evaluate / predict.

The model owns one ``np.random.Generator`` made from ``seed``; it draws the
initial weights and then the shuffling order of every epoch, so a seed fixes
a whole run. ``uint8`` inputs are taken to be 8-bit images and are scaled to
``[0, 1]`` one batch at a time, so a data set stays ``uint8`` in memory.
"""

import collections
import math

import numpy as np

from . import checks, serialization, training
from . import losses as losses_mod
from . import optimizers as optimizers_mod
from .errors import DataError
from .layers import BatchNormalization, Dense, Dropout
from .metrics import count_correct
from .summary import summary_text

__all__ = ["Sequential", "Evaluation"]

Evaluation = collections.namedtuple("Evaluation", ["loss", "accuracy"])

_PREDICT_BATCH = 1024  # rows converted to floats at once when predicting: bounds memory, not results


class Sequential:
    """A feed-forward network of :class:`~fcnet.layers.Dense` layers.

    Parameters
    ----------
    layers : list of Dense (and Dropout, stored as the next Dense layer's ``dropout``, and BatchNormalization,
        stored as the previous one's ``batch_norm``)
    seed : int, optional
        Seeds initialisation and shuffling; ``None`` draws one, recorded in ``seed``.
    dtype : {"float32", "float64"}
        Parameter and computation precision (``longdouble`` too, for :func:`~fcnet.gradcheck.gradcheck`).
    name : str
    """

    def __init__(self, layers=(), seed=None, dtype="float32", name="sequential"):
        if np.dtype(dtype) not in (np.float32, np.float64, np.longdouble):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.layers = []
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.metadata = {}  # free-form facts saved with the model (data set, class names)
        self.stop_training = False
        self._dropout = None  # the rate of a Dropout added last, for the Dense layer that follows it
        for layer in layers:
            self.add(layer)

    # -- structure -------------------------------------------------------------------------------------------

    def add(self, layer):
        """Append a layer; weights are created as soon as the first layer's ``input_dim`` is known.

        A :class:`~fcnet.layers.Dropout` becomes the ``dropout`` of the Dense layer added after it (dropout
        after the last layer would drop the network's answer, and is refused when compiling); a
        :class:`~fcnet.layers.BatchNormalization` becomes the ``batch_norm`` of the Dense layer before it.
        """
        if isinstance(layer, BatchNormalization):
            if not self.layers:
                raise ValueError("BatchNormalization normalises the output of a Dense layer: add one before it")
            if self._dropout is not None:
                raise ValueError("BatchNormalization after Dropout: put it before the Dropout (it normalises the "
                                 "Dense layer's output, which the Dropout then thins)")
            if self.layers[-1].batch_norm is not None:
                raise ValueError("two BatchNormalization layers in a row")
            self.layers[-1].normalize(layer)
            return
        if isinstance(layer, Dropout):
            if self._dropout is not None:
                raise ValueError("two Dropout layers in a row: combine their rates into one")
            self._dropout = layer.rate
            return
        if not isinstance(layer, Dense):
            raise TypeError(f"Sequential takes Dense, Dropout and BatchNormalization layers, got "
                            f"{type(layer).__name__}")
        if self._dropout is not None:
            if layer.dropout:
                raise ValueError(f"a Dropout layer before a Dense layer that has dropout={layer.dropout} already")
            layer.dropout, self._dropout = self._dropout, None
        was_built = self.built
        self.layers.append(layer)
        if was_built:
            layer.build(self.layers[-2].units, self.rng, self.dtype)
        elif self.layers[0].input_dim is not None:
            self.build(self.layers[0].input_dim)

    @property
    def built(self):
        return bool(self.layers) and all(layer.params for layer in self.layers)

    def build(self, input_dim):
        """Create every layer's weights for inputs of width ``input_dim`` (draws from the model's RNG)."""
        if not self.layers:
            raise ValueError("the model has no layers")
        for layer in self.layers:
            layer.build(input_dim, self.rng, self.dtype)
            input_dim = layer.units

    @property
    def input_dim(self):
        return self.layers[0].input_dim if self.layers else None

    @property
    def output_dim(self):
        return self.layers[-1].units

    @property
    def parameters(self):
        """The live parameter arrays ``[W1, b1, W2, b2, ...]``; ``W`` has shape ``(n_in, n_out)``."""
        return [p for layer in self.layers for p in layer.params.values()]

    @property
    def weights(self):
        """Every live array saved with the model: each layer's parameters, then its state (batch
        normalization's moving averages, not trained), in Keras' order."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def gradients(self):
        """The live gradient arrays, in the order of :attr:`parameters`, from the last backward pass."""
        return [g for layer in self.layers for g in layer.grads.values()]

    def count_params(self):
        """The number of weights, trained or not (Keras' count)."""
        return sum(p.size for p in self.weights)

    def get_weights(self):
        """Copies of :attr:`weights`."""
        return [p.copy() for p in self.weights]

    def set_weights(self, weights):
        """Copy ``weights`` (a list shaped like :attr:`weights`) into the model, in place."""
        params = self.weights
        if len(weights) != len(params):
            raise ValueError(f"expected {len(params)} arrays, got {len(weights)}")
        for i, (p, w) in enumerate(zip(params, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"weight {i} has shape {w.shape}, expected {p.shape}")
            p[...] = w

    # -- training set-up -------------------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics (``["accuracy"]`` or none), as in Keras.

        A cross-entropy with ``from_logits=False`` needs a softmax output layer (a binary cross-entropy a
        sigmoid one), which it then fuses with the loss; ``from_logits=True`` reads the output as logits.
        """
        if self._dropout is not None:
            raise ValueError("a Dropout layer must be followed by a Dense layer (it drops the next layer's inputs)")
        if self.layers and self.layers[-1].batch_norm is not None:
            raise ValueError("BatchNormalization after the output layer would normalise the network's answer: "
                             "put it after hidden layers only")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        metrics = list(metrics or [])
        unknown = [m for m in metrics if m not in ("accuracy", "acc")]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; fcnet computes 'accuracy'")
        self.metrics = ["accuracy"] if metrics else []
        if self.fuses_output is None:
            raise ValueError(
                f"{self.loss.name} with from_logits=False needs a {self.loss.fused} output layer, not "
                f"{self.layers[-1].activation.name!r}; use a {self.loss.fused} output or from_logits=True"
            )

    @property
    def fuses_output(self):
        """True when the loss consumes the last layer's logits (softmax + cross-entropy, sigmoid + binary
        cross-entropy), None if impossible."""
        if self.loss is None or self.loss.from_logits or self.loss.fused is None:
            return False
        return True if self.layers[-1].activation.name == self.loss.fused else None

    def require_compiled(self):
        """Raise RuntimeError unless :meth:`compile` was called."""
        if self.loss is None:
            raise RuntimeError("compile() the model first")

    # -- data checks (the training engines and evaluate/predict use these) ------------------------------------

    def check_inputs(self, x):
        """``x`` as a 2-D array, the model built from its width if needed (:func:`fcnet.checks.check_inputs`)."""
        return checks.check_inputs(self, x)

    def check_targets(self, y, n):
        """Targets as integer labels ``(n,)`` or floats ``(n, n_out)`` (:func:`fcnet.checks.check_targets`)."""
        return checks.check_targets(self, y, n)

    def to_float(self, x, out=None):
        """One batch as model-dtype floats; ``uint8`` images are scaled to [0, 1] (into ``out`` if given)."""
        if x.dtype == np.uint8:
            return np.multiply(x, self.dtype.type(1 / 255), dtype=self.dtype, out=out)
        if out is None:
            return x.astype(self.dtype, copy=False)
        np.copyto(out, x)
        return out

    def is_classification(self, y):
        """Whether accuracy means anything for checked targets ``y``."""
        return y.ndim == 1 or self.loss.fused is not None or self.output_dim > 1

    def count_correct(self, out, y, training=False):
        """The number of right answers among the rows of ``out`` (a float for a binary cross-entropy's
        independent outputs: the fraction right per row, summed, as Keras' ``binary_accuracy``).

        ``out`` is what :meth:`forward` returns with ``training``: for a binary cross-entropy, logits (threshold
        0) while training or with ``from_logits``, else probabilities (threshold ½).
        """
        if self.loss.fused != "sigmoid":
            return count_correct(out, y)
        threshold = 0.0 if training or self.loss.from_logits else 0.5
        return float(np.count_nonzero((out > threshold) == (y > 0.5))) / out.shape[1]

    # -- forward and backward --------------------------------------------------------------------------------

    def forward(self, x, training=False):
        """Return ``(loss input, output)`` for a float batch: the last layer's logits if fused, else its output.

        A fused softmax is not computed while training: the loss needs only the logits, and
        the output, used for accuracy, may as well be them (same argmax).
        """
        for layer in self.layers[:-1]:
            x = layer.forward(x, training)
        fused = self.fuses_output
        z, a = self.layers[-1].forward_z(x, training, activate=not (fused and training))
        return (z if fused else a), a

    def forward_backward(self, x, y, sample_weight=None):
        """One forward and backward pass on a float batch and checked targets; returns ``(loss, output)``.

        Fills every layer's ``grads`` (see :attr:`gradients`); changes no parameter. With ``sample_weight``
        (shape ``(n_batch,)``) the loss is ``mean(w_i · loss_i)``, so each example's gradient is scaled by ``w_i``.
        """
        loss_input, out = self.forward(x, training=True)
        value, d = self.loss.value_and_grad(loss_input, y)
        if sample_weight is not None:
            value = float(np.mean(sample_weight * self.loss.per_example(loss_input, y)))
            d *= sample_weight.astype(d.dtype)[:, None]
        last, fused = len(self.layers) - 1, self.fuses_output
        for i in range(last, -1, -1):
            d = self.layers[i].backward(d, wrt_z=(i == last and fused), need_dx=i > 0)
        return value + self.penalty(), out

    def penalty(self, exact=False):
        """The layers' weight penalties (:mod:`fcnet.regularizers`), part of every reported loss; 0.0 without.

        A float, or with ``exact`` a NumPy scalar in the weights' own precision (``gradcheck`` uses longdouble).
        """
        total = sum(layer.kernel_regularizer(layer.params["W"]) for layer in self.layers
                    if layer.kernel_regularizer is not None)
        return total if exact else float(total)

    def apply_gradients(self):
        """One optimizer step with the gradients of the last :meth:`forward_backward`."""
        self.optimizer.apply_gradients(zip(self.gradients, self.parameters))

    def train_on_batch(self, x, y):
        """One training step on a float batch and checked targets; returns ``(loss, output)``.

        The engine contract (:mod:`fcnet.engines.base`): compute the loss, check it, then update. A loss that
        is NaN or infinite is returned with no parameter and no optimizer state changed. Updates happen
        after the whole backward pass, so every ``dx`` used the old weights.
        """
        value, out = self.forward_backward(x, y)
        if math.isfinite(value):
            self.apply_gradients()
        return value, out

    def loss_and_gradients(self, x, y):
        """The batch loss and its gradient for every parameter, like ``tf.GradientTape``.

        Parameters
        ----------
        x : array_like, shape (n_batch, n_in)
        y : array_like, shape (n_batch,) or (n_batch, n_out)

        Returns
        -------
        loss : float
        grads : list of ndarray
            One array per entry of :attr:`parameters`, same shapes.
        """
        self.require_compiled()
        x = self.check_inputs(x)
        y = self.check_targets(y, len(x))
        value, _ = self.forward_backward(self.to_float(x), y)
        return value, [g.copy() for g in self.gradients]

    # -- the Keras loop --------------------------------------------------------------------------------------

    def fit(self, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, shuffle=True,
            verbose="auto", callbacks=None, initial_epoch=0, engine="auto", class_weight=None, threads=None,
            augment=None):
        """Train for ``epochs`` passes over ``(x, y)``; returns a :class:`~fcnet.training.History`.

        See :func:`fcnet.training.fit` for the arguments.
        """
        return training.fit(self, x, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                   validation_data=validation_data, shuffle=shuffle, verbose=verbose, callbacks=callbacks,
                   initial_epoch=initial_epoch, engine=engine, class_weight=class_weight, threads=threads,
                   augment=augment)

    def _outputs(self, x, batch_size, engine):
        """``(start, loss input, output)`` per batch of checked inputs: on the CPU, or on the GPU (``"cuda"``)."""
        if engine == "cuda":
            from .engines.cuda import forward_batches

            yield from forward_batches(self, x, batch_size)
            return
        if engine != "numpy":
            raise ValueError(f"engine must be 'numpy' or 'cuda', got {engine!r}")
        for start in range(0, len(x), batch_size):
            yield start, *self.forward(self.to_float(x[start:start + batch_size]), training=False)

    def __call__(self, x):
        """``model(x)``: the output for a batch, as :meth:`predict`."""
        return self.predict(x)

    def evaluate(self, x, y, batch_size=_PREDICT_BATCH, verbose=0, return_dict=False, engine="numpy"):
        """Mean loss and accuracy (``nan`` for regression targets) over ``(x, y)``.

        Returns an :class:`Evaluation` named tuple, or ``{"loss": ..., "accuracy": ...}`` with ``return_dict``
        (Keras' form). ``verbose`` ≥ 1 also prints them in one line. ``engine="cuda"`` runs the forward
        passes on the GPU (:mod:`fcnet.engines.cuda`).
        """
        self.require_compiled()
        x = self.check_inputs(x)
        y = self.check_targets(y, len(x))
        if len(x) == 0:
            raise ValueError("cannot evaluate on an empty set")
        total, correct = 0.0, 0
        for start, loss_input, out in self._outputs(x, batch_size, engine):
            yb = y[start:start + batch_size]
            total += float(self.loss.per_example(loss_input, yb).sum())
            correct += self.count_correct(out, yb)
        accuracy = correct / len(x) if self.is_classification(y) else math.nan
        result = Evaluation(total / len(x) + self.penalty(), accuracy)
        if verbose:
            print(f"evaluate: loss {result.loss:.4f}  accuracy {result.accuracy:.4f}  ({len(x)} examples)")
        return result._asdict() if return_dict else result

    def predict(self, x, batch_size=_PREDICT_BATCH, verbose=0, engine="numpy"):
        """The network's output for ``x``: class probabilities for a softmax output, logits for a linear one.

        ``verbose`` is accepted for Keras' signature; predicting prints nothing. ``engine="cuda"`` runs the
        forward passes on the GPU (:mod:`fcnet.engines.cuda`).

        Returns
        -------
        ndarray, shape (n_samples, n_out)
        """
        x = self.check_inputs(x)
        out = np.empty((len(x), self.output_dim), dtype=self.dtype)
        for start, _, batch in self._outputs(x, batch_size, engine):
            out[start:start + len(batch)] = batch
        return out

    def predict_proba(self, x, batch_size=_PREDICT_BATCH):
        """Class probabilities: the output of a softmax model, the softmax of a logits model's output.

        Returns
        -------
        ndarray, shape (n_samples, n_out)
        """
        out = self.predict(x, batch_size)
        if self.layers[-1].activation.name == "softmax":
            return out
        from .activations import Softmax

        return Softmax().forward(out, out=out)

    def predict_classes(self, x, batch_size=_PREDICT_BATCH):
        """The index of the largest output per sample, shape ``(n_samples,)``."""
        return self.predict(x, batch_size).argmax(axis=1)

    # -- description and files -------------------------------------------------------------------------------

    def summary(self, print_fn=print):
        """Print (through ``print_fn``) a Keras-style table of layers, output shapes and parameters
        (:func:`fcnet.summary.summary_text`). Returns None when printing to stdout, as Keras does (a notebook shows
        the table once), else the table's text."""
        text = summary_text(self)
        print_fn(text)
        return None if print_fn is print else text

    def get_config(self):
        return {"name": self.name, "seed": self.seed, "dtype": self.dtype.name,
                "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config, dtype=None):
        """A new, built model with the architecture of ``config`` (from :meth:`get_config`) and fresh weights."""
        layers = [Dense(**lc) if i == 0 else Dense(**{**lc, "input_dim": None})
                  for i, lc in enumerate(config["layers"])]
        return cls(layers, seed=config["seed"], dtype=dtype or config["dtype"], name=config.get("name", "sequential"))

    def astype(self, dtype):
        """A copy of this model (weights, loss; a fresh optimizer of the same config) in another precision."""
        copy = Sequential.from_config(self.get_config(), dtype=dtype)
        copy.set_weights(self.weights)
        if self.loss is not None:
            copy.compile(self.optimizer.get_config(), self.loss.get_config(), self.metrics)
        return copy

    def save_weights(self, path):
        """Write only the weights (:attr:`weights`) to an ``.npz`` file, as Keras' ``save_weights``."""
        serialization.write_weights(path, self.weights)

    def load_weights(self, path):
        """Read parameters written by :meth:`save_weights` into this model (same architecture), in place;
        :class:`~fcnet.errors.DataError` if they do not fit."""
        weights = serialization.read_weights(path)
        try:
            self.set_weights(weights)
        except ValueError as exc:
            raise DataError(f"{path}: cannot load these weights into this model ({exc})") from None

    def export_onnx(self, path):
        """Write the model as an ONNX graph (:mod:`fcnet.export`; needs the onnx package); returns ``path``."""
        from .export import export_onnx

        return export_onnx(self, path)

    def save(self, path, extra=None):
        """Write the model to one ``.npz`` file: arrays plus a JSON config; see :mod:`fcnet.serialization`.

        ``extra`` is JSON kept beside the config (a checkpoint's epoch and generator state).
        """
        if not self.built:
            raise ValueError("cannot save a model that is not built")
        config = {"model": self.get_config(), "loss": self.loss.get_config() if self.loss else None,
                  "optimizer": self.optimizer.get_config() if self.optimizer else None, "metrics": self.metrics,
                  "metadata": self.metadata, "extra": extra}
        arrays = {f"param_{i}": p for i, p in enumerate(self.weights)}
        if self.optimizer is not None:
            arrays.update({f"opt_{k}": v for k, v in self.optimizer.get_state(self.parameters).items()})
        serialization.write_model_file(path, config, arrays)
