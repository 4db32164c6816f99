"""The training options of a compiled model, registered once: what a model may use besides its layers'
activations, its loss and its optimizer rule.

Each option is a name and a test of whether a model uses it. Engines and the ONNX exporter declare the options
they cover (:class:`fcnet.engines.base.Support`); a model that uses any other is refused with a reason naming it,
so an option added here reaches no engine until that engine's twin of it is written and listed. The NumPy
engine is the reference and runs every option through the layers' and the optimizer's own code.
"""

from collections.abc import Mapping

__all__ = ["OPTIONS", "Option", "used"]


class Option:
    """A training option: ``name``, ``description`` (the subject of a refusal: "dropout is not compiled"),
    ``in_use(model) → bool``, and ``inference``: whether it changes the trained network's forward pass (so a
    predictor or an exporter must cover it too)."""

    def __init__(self, name, description, in_use, inference=False):
        self.name, self.description, self.in_use, self.inference = name, description, in_use, inference


def _smoothing(model):
    return bool(getattr(model.loss, "label_smoothing", 0.0))


OPTIONS: Mapping[str, Option] = {option.name: option for option in (
    Option("dropout", "dropout", lambda m: any(
        layer.dropout for layer in m.layers)),
    Option("batch_norm", "batch normalization", lambda m: any(
        layer.batch_norm is not None for layer in m.layers), inference=True),
    Option("l2", "a kernel regularizer", lambda m: any(layer.kernel_regularizer is not None for layer in m.layers)),
    Option("weight_decay", "the optimizer's weight_decay", lambda m: bool(m.optimizer.weight_decay)),
    Option("clipvalue", "the optimizer's clipvalue", lambda m: m.optimizer.clipvalue is not None),
    Option("clipnorm", "the optimizer's clipnorm", lambda m: m.optimizer.clipnorm is not None),
    Option("global_clipnorm", "the optimizer's global_clipnorm", lambda m: m.optimizer.global_clipnorm
           is not None),
    Option("schedule", "a learning-rate schedule read at every step (one set per epoch is: callbacks)",
           lambda m: m.optimizer.schedule is not None),
    Option("label_smoothing", "label smoothing", _smoothing),
)}


def used(model, training=True):
    """The names of the options ``model`` uses, in registry order (``training=False``: those of its forward pass
    at inference only; then the model need not be compiled)."""
    return [name for name, option in OPTIONS.items() if (training or option.inference) and option.in_use(model)]
