"""A trained model as an ONNX graph, to run where fcnet is not installed (``pip install 'fcnet[onnx]'``).

Each Dense layer becomes ``MatMul`` → ``Add`` → its activation (``Relu``, ``Sigmoid``, ``Tanh``, ``Softmax``;
``Max(z, αz)`` for leaky ReLU, so that α keeps the model's precision; nothing for linear), in the model's
float type. The graph's input ``input`` has shape
``(batch, n_in)`` with a free batch size and takes what :meth:`fcnet.model.Sequential.predict` takes after
scaling: floats, images as pixel / 255. Its output ``output`` is what ``predict`` returns (probabilities for a
softmax output). The model's metadata (data set, class names, test accuracy) goes into ``metadata_props``.
``tests/test_export.py`` runs every activation and output in onnxruntime against fcnet's own predictions.
"""

import json

import numpy as np

from .errors import FcnetError

__all__ = ["to_onnx", "export_onnx", "OPSET"]

OPSET = 17
_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FcnetError("exporting to ONNX needs the onnx package: pip install 'fcnet[onnx]'") from None
    return onnx


def to_onnx(model):
    """The ONNX ``ModelProto`` of a built :class:`~fcnet.model.Sequential` (checked by ``onnx.checker``)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not model.built:
        raise FcnetError("export needs a built model (train it, or call build(n_inputs))")
    if model.dtype not in (np.float32, np.float64):
        raise FcnetError(f"ONNX has no type for {model.dtype} weights: use astype('float32') first")
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    nodes, weights, current = [], [], "input"
    for i, layer in enumerate(model.layers):
        w, b = f"W{i + 1}", f"b{i + 1}"
        weights += [numpy_helper.from_array(layer.params["W"], w), numpy_helper.from_array(layer.params["b"], b)]
        nodes += [helper.make_node("MatMul", [current, w], [f"xw{i + 1}"]),
                  helper.make_node("Add", [f"xw{i + 1}", b], [f"z{i + 1}"])]
        current = f"z{i + 1}"
        name = layer.activation.name
        if name == "leaky_relu":  # max(z, αz) for 0 < α < 1, with α in the model's precision (LeakyRelu's is float32)
            alpha = np.array(layer.activation.alpha, dtype=model.dtype)
            weights.append(numpy_helper.from_array(alpha, f"alpha{i + 1}"))
            nodes += [helper.make_node("Mul", [current, f"alpha{i + 1}"], [f"az{i + 1}"]),
                      helper.make_node("Max", [current, f"az{i + 1}"], [f"a{i + 1}"])]
            current = f"a{i + 1}"
        elif name in _OPS:
            extra = {"axis": -1} if name == "softmax" else {}
            nodes.append(helper.make_node(_OPS[name], [current], [f"a{i + 1}"], **extra))
            current = f"a{i + 1}"
    nodes.append(helper.make_node("Identity", [current], ["output"]))
    graph = helper.make_graph(nodes, model.name or "fcnet", [helper.make_tensor_value_info(
        "input", elem, ["batch", model.input_dim])], [helper.make_tensor_value_info(
        "output", elem, ["batch", model.output_dim])], initializer=weights)
    proto = helper.make_model(graph, producer_name="fcnet", opset_imports=[helper.make_opsetid("", OPSET)])
    for key, value in (getattr(model, "metadata", None) or {}).items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=str(key), value=json.dumps(value)))
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model, path):
    """Write ``model`` to ``path`` as an ONNX file (atomically); returns the path."""
    from .files import atomic_write

    data = to_onnx(model).SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path
