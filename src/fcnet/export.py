"""A trained model as an ONNX graph, to run where fcnet is not installed (``pip install 'fcnet[onnx]'``).

Each Dense layer becomes ``MatMul`` → ``Add`` → its activation (``Relu``, ``Sigmoid``, ``Tanh``, ``Softmax``;
``Max(z, αz)`` for leaky ReLU, so that α keeps the model's precision; ``z (1 + Erf(z/√2)) / 2`` for GELU —
its Erf in float32 even in a float64 graph, as onnxruntime has no other —, ``z · Sigmoid(z)`` for swish;
nothing for linear), then ``Mul`` →
``Add`` for batch normalization (its inference form), in the model's float type. The graph's input ``input`` has shape
``(batch, n_in)`` with a free batch size and takes what :meth:`fcnet.model.Sequential.predict` takes after
scaling: floats, images as pixel / 255. Its output ``output`` is what ``predict`` returns (probabilities for a
softmax output). The model's metadata (data set, class names, test accuracy) goes into ``metadata_props``.
``tests/test_export.py`` runs every activation and output in onnxruntime against fcnet's own predictions.

A model trained on a table (:mod:`fcnet.tables`) carries its preprocessing into the graph: one input per
feature column, named as the column, shape ``(batch, 1)`` — numbers in the model's float type (standardised by
``Sub``/``Div`` nodes), categories as strings (one-hot by ``ai.onnx.ml.OneHotEncoder``; a category training never
saw is all zeros, as in fcnet; strings are matched as given, without trimming) — concatenated in the model's
order. Its outputs are ``output`` (class probabilities, or a regression's prediction in the target's own units)
and, for a classifier, ``label``: the predicted class names.
"""

import json

import numpy as np

from .engines.base import Support, unsupported
from .errors import FcnetError

__all__ = ["to_onnx", "export_onnx", "OPSET", "SUPPORT"]

OPSET = 17
# What is exported: each activation's ONNX form (see _Graph.network), and batch normalization's inference form.
_ACTIVATIONS = {"linear": "", "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax",
                "leaky_relu": "Max(z, αz)", "gelu": "z (1 + Erf(z/√2)) / 2", "swish": "z Sigmoid(z)"}
SUPPORT = Support("onnx", hidden=_ACTIVATIONS, outputs=_ACTIVATIONS, losses={}, optimizers=frozenset(),
                  options=frozenset({"batch_norm"}), verb="exported")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FcnetError("exporting to ONNX needs the onnx package: pip install 'fcnet[onnx]'") from None
    return onnx


def to_onnx(model):
    """The ONNX ``ModelProto`` of a built :class:`~fcnet.model.Sequential` (checked by ``onnx.checker``)."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    from .tables import spec_of

    if not model.built:
        raise FcnetError("export needs a built model (train it, or call build(n_inputs))")
    if model.dtype not in (np.float32, np.float64):
        raise FcnetError(f"ONNX has no type for {model.dtype} weights: use astype('float32') first")
    reason = unsupported(model, None, SUPPORT, training=False)
    if reason:
        raise FcnetError(f"cannot export this model to ONNX: {reason}")
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    spec = spec_of(model)
    graph = _Graph(model.dtype, "" if spec is None else "fcnet/")
    if spec is None:
        inputs = [helper.make_tensor_value_info("input", elem, ["batch", model.input_dim])]
    else:
        inputs = _preprocess(graph, spec, elem)
    current = graph.network(model, graph.name("input"))
    outputs = [("output", elem, model.output_dim)]
    if spec is not None and spec.task == "regression":  # back to the target's units
        current = graph.node("Add", [graph.node("Mul", [current, graph.constant("target_scale", spec.target_scale)]),
                                     graph.constant("target_mean", spec.target_mean)])
    elif spec is not None:
        classes = helper.make_tensor(graph.name("classes"), TensorProto.STRING, [len(spec.classes)],
                                     [c.encode() for c in spec.classes])
        graph.weights.append(classes)
        index = graph.node("ArgMax", [current], axis=1, keepdims=0)
        graph.nodes.append(helper.make_node("Gather", [classes.name, index], ["label"], axis=0))
        outputs.append(("label", TensorProto.STRING, None))
    graph.nodes.append(helper.make_node("Identity", [current], ["output"]))
    proto = helper.make_model(
        helper.make_graph(graph.nodes, model.name or "fcnet", inputs, [helper.make_tensor_value_info(
            name, kind, ["batch"] if width is None else ["batch", width]) for name, kind, width in outputs],
            initializer=graph.weights),
        producer_name="fcnet", opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 1)])
    for key, value in (getattr(model, "metadata", None) or {}).items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=str(key), value=json.dumps(value)))
    onnx.checker.check_model(proto)
    return proto


class _Graph:
    """Nodes and weights of the graph being built; a table model's inner names start with ``fcnet/`` so that
    no column name (an input) can clash with them."""

    def __init__(self, dtype, prefix):
        self.dtype, self.prefix, self.nodes, self.weights, self.count = dtype, prefix, [], [], 0

    def name(self, base):
        return self.prefix + base

    def constant(self, base, value, dtype=None):
        """A weight of the graph (in the model's float type unless ``dtype``); returns its name."""
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), self.name(base)))
        return self.weights[-1].name

    def node(self, op, inputs, out=None, domain=None, **attributes):
        from onnx import helper

        self.count += 1
        out = out or self.name(f"{op.lower()}{self.count}")
        self.nodes.append(helper.make_node(op, inputs, [out], domain=domain, **attributes))
        return out

    def network(self, model, current):
        """MatMul → Add → activation per layer, from the tensor ``current``; returns the last tensor's name."""
        from onnx import TensorProto

        for i, layer in enumerate(model.layers):
            w, b = self.constant(f"W{i + 1}", layer.params["W"]), self.constant(f"b{i + 1}", layer.params["b"])
            current = self.node("Add", [self.node("MatMul", [current, w], self.name(f"xw{i + 1}")), b],
                                self.name(f"z{i + 1}"))
            name = layer.activation.name
            if name == "leaky_relu":  # max(z, αz) for 0 < α < 1, with α in the model's precision (LeakyRelu's: float32)
                alpha = self.constant(f"alpha{i + 1}", layer.activation.alpha)
                current = self.node("Max", [current, self.node("Mul", [current, alpha], self.name(f"az{i + 1}"))],
                                    self.name(f"a{i + 1}"))
            elif name == "gelu":  # z Φ(z) = z (1 + erf(z / √2)) / 2; ONNX's own Gelu needs opset 20
                root = self.node("Mul", [current, self.constant(f"rsqrt2_{i + 1}", 1 / np.sqrt(2))])
                if self.dtype == np.float64:  # onnxruntime has Erf for float32 only: ~1e-7 relative there
                    erf = self.node("Cast", [self.node("Erf", [self.node("Cast", [root], to=TensorProto.FLOAT)])],
                                    to=TensorProto.DOUBLE)
                else:
                    erf = self.node("Erf", [root])
                one_plus = self.node("Add", [erf, self.constant(f"one{i + 1}", 1.0)])
                half_z = self.node("Mul", [current, self.constant(f"half{i + 1}", 0.5)])
                current = self.node("Mul", [half_z, one_plus], self.name(f"a{i + 1}"))
            elif name == "swish":
                current = self.node("Mul", [current, self.node("Sigmoid", [current])], self.name(f"a{i + 1}"))
            elif name != "linear":  # one ONNX operator; to_onnx refused any name SUPPORT does not list
                extra = {"axis": -1} if name == "softmax" else {}
                current = self.node(_ACTIVATIONS[name], [current], self.name(f"a{i + 1}"), **extra)
            if layer.batch_norm is not None:  # inference: the moving averages folded into one affine map
                scale, shift = layer.batch_norm.affine()
                scaled = self.node("Mul", [current, self.constant(f"bn_scale{i + 1}", scale)], self.name(f"s{i + 1}"))
                current = self.node("Add", [scaled, self.constant(f"bn_shift{i + 1}", shift)], self.name(f"n{i + 1}"))
        return current


def _preprocess(graph, spec, elem):
    """A table's columns (graph inputs) → the network's input row ``fcnet/input``; returns the inputs."""
    from onnx import TensorProto, helper

    taken = {f.name for f in spec.features} & {"output", "label"}
    if taken or any(f.name.startswith("fcnet/") for f in spec.features):
        raise FcnetError(f"a column named {sorted(taken)[0] if taken else 'fcnet/...'!r} would clash with the "
                         "graph's own names; rename it and train again")
    inputs, parts = [], []
    for i, f in enumerate(spec.features):
        if f.categories is None:
            inputs.append(helper.make_tensor_value_info(f.name, elem, ["batch", 1]))
            parts.append(graph.node("Div", [graph.node("Sub", [f.name, graph.constant(f"mean{i}", f.mean)]),
                                            graph.constant(f"scale{i}", f.scale)]))
        else:
            inputs.append(helper.make_tensor_value_info(f.name, TensorProto.STRING, ["batch", 1]))
            hot = graph.node("OneHotEncoder", [f.name], domain="ai.onnx.ml", cats_strings=list(f.categories), zeros=1)
            shape = graph.constant(f"shape{i}", [-1, len(f.categories)], np.int64)
            parts.append(graph.node("Cast", [graph.node("Reshape", [hot, shape])], to=elem))
    graph.node("Concat", parts, graph.name("input"), axis=1)
    return inputs


def export_onnx(model, path):
    """Write ``model`` to ``path`` as an ONNX file (atomically); returns the path."""
    from .files import atomic_write

    data = to_onnx(model).SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path
