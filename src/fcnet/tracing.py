"""One example (or a small batch) followed through every layer: the forward pass, the loss, then the backward
pass, each quantity kept, as a record a notebook can print and plot.

``fcnet.trace(model, x, y)`` is the lab's backpropagation written the way it is taught, one line per equation of
``docs/backprop.md`` and no scratch buffers::

    forward, layer ℓ:   z = x W + b          a = f(z)            (x of layer ℓ + 1 is a of layer ℓ)
    loss:               L = mean over the batch of the per-example loss
    backward, layer ℓ:  δ = dL/dz = dL/da ⊙ f'(z)   (the output of a fused softmax/sigmoid: (p − y) / n)
                        dW = xᵀ δ (+ 2λW with an L2 penalty)    db = Σ_batch δ    dL/dx = δ Wᵀ

It computes what :meth:`fcnet.model.Sequential.loss_and_gradients` computes (``tests/test_tracing.py`` checks that
the gradients are equal), with every intermediate kept. Dropout and batch normalization are not traced (they draw
masks or mix the batch): such a model is refused in one line.
"""

import dataclasses

import numpy as np

__all__ = ["trace", "Trace", "LayerTrace"]


@dataclasses.dataclass
class LayerTrace:
    """One Dense layer of a :class:`Trace`; every array has one row per example.

    Attributes
    ----------
    name, activation : str
    x : ndarray, shape (n, n_in)
        The layer's input.
    z : ndarray, shape (n, n_out)
        ``x W + b``.
    a : ndarray, shape (n, n_out)
        ``f(z)``, the output (class probabilities for a softmax output).
    delta : ndarray, shape (n, n_out)
        ``δ = dL/dz``.
    dW : ndarray, shape (n_in, n_out)
    db : ndarray, shape (n_out,)
    dx : ndarray, shape (n, n_in)
        ``dL/dx = δ Wᵀ``: the ``dL/da`` of the layer below.
    """

    name: str
    activation: str
    x: np.ndarray
    z: np.ndarray
    a: np.ndarray
    delta: np.ndarray
    dW: np.ndarray
    db: np.ndarray
    dx: np.ndarray


@dataclasses.dataclass
class Trace:
    """What :func:`trace` returns: ``layers`` (a :class:`LayerTrace` each, input to output), the batch ``loss``,
    the network's ``output`` and the targets ``y``."""

    layers: list
    loss: float
    output: np.ndarray
    y: np.ndarray

    @property
    def gradients(self):
        """``[dW1, db1, dW2, db2, ...]``: the order of ``model.parameters`` and of ``loss_and_gradients``."""
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    def table(self):
        """A text table: per layer, the shapes and the size (root mean square) of each quantity."""
        def rms(v):
            return f"{float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))):.3g}"

        head = f"{'layer':<12} {'x':>12} {'z = xW+b':>12} {'a = f(z)':>12} {'δ = dL/dz':>12} {'dW':>10} {'db':>10}"
        rows = [f"{layer.name:<12} " + " ".join(f"{rms(v):>{w}}" for v, w in (
            (layer.x, 12), (layer.z, 12), (layer.a, 12), (layer.delta, 12), (layer.dW, 10), (layer.db, 10)))
            for layer in self.layers]
        return "\n".join([f"loss {self.loss:.6g} over {len(self.y)} example(s); root mean squares:", head, *rows])

    def __str__(self):
        return self.table()


def trace(model, x, y):
    """Follow ``x`` (one example of shape ``(n_in,)`` or a batch ``(n, n_in)``) and its targets ``y`` through
    ``model`` (compiled) forward and back; returns a :class:`Trace`. Changes nothing in the model.

    Raises
    ------
    ValueError
        A model with dropout or batch normalization, or inputs and targets the model refuses.
    """
    model.require_compiled()
    x = np.asarray(x)
    if x.ndim == 1:  # one example
        x, y = x[None], np.asarray(y).reshape(1, *np.shape(y))
    x = model.check_inputs(x)
    y = model.check_targets(y, len(x))
    for layer in model.layers:
        if layer.dropout or layer.batch_norm is not None:
            raise ValueError("trace follows plain Dense layers; this model has dropout or batch normalization")
    a = model.to_float(x).copy()
    records = []
    for i, layer in enumerate(model.layers):  # forward
        W, b = layer.params["W"], layer.params["b"]
        z = a @ W + b
        out = layer.activation.forward(z.copy())
        records.append([f"dense_{i}" if layer.name is None else layer.name, layer.activation.name, a, z, out])
        a = out
    fused = model.fuses_output  # softmax + cross-entropy (or sigmoid + binary cross-entropy): the loss reads z
    loss_input = records[-1][3] if fused else records[-1][4]
    loss, grad = model.loss.value_and_grad(loss_input, y)
    loss += model.penalty()
    traced = []
    for i in range(len(model.layers) - 1, -1, -1):  # backward
        layer, (name, activation, x_in, z, out) = model.layers[i], records[i]
        fused_here = fused and i == len(model.layers) - 1
        delta = grad if fused_here else layer.activation.backward(grad.copy(), out, z.copy())
        dW = x_in.T @ delta
        if layer.kernel_regularizer is not None:  # + 2λW
            layer.kernel_regularizer.add_gradient(layer.params["W"], dW)
        db = delta.sum(axis=0)
        dx = delta @ layer.params["W"].T
        traced.append(LayerTrace(name, activation, x_in, z, out, delta, dW, db, dx))
        grad = dx
    return Trace(traced[::-1], float(loss), records[-1][4], y)
