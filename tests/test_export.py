"""fcnet export: ONNX graphs run in onnxruntime and answer as fcnet does, for every activation and output."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet.cli import main

onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install 'fcnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.mark.parametrize("dtype, rtol, atol", [("float32", 1e-5, 1e-6), ("float64", 1e-12, 1e-14)])
@pytest.mark.parametrize("output", ["softmax", "linear", "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "sigmoid", "tanh", "linear", "softmax", "gelu", "swish"])
def test_onnxruntime_answers_as_fcnet_does(tmp_path, hidden, output, dtype, rtol, atol):
    rng = np.random.default_rng(0)
    model = fcnet.Sequential([fcnet.Dense(16, hidden, input_dim=12), fcnet.Dense(8, hidden),
                              fcnet.Dense(5, output)], seed=1, dtype=dtype)
    for layer in model.layers:  # biases off zero, so that the Add nodes matter
        layer.params["b"][:] = rng.normal(0, 0.3, layer.units)
    x = rng.normal(size=(37, 12)).astype(dtype)
    path = model.export_onnx(tmp_path / "m.onnx")
    if hidden == "gelu" and dtype == "float64":
        rtol, atol = 1e-6, 1e-7  # onnxruntime's Erf is float32 only
    assert_allclose(run(path, x), model.predict(x), rtol=rtol, atol=atol)  # onnxruntime's float32 tanh: ~2e-7


def test_the_cli_exports_a_trained_model_with_its_metadata(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (200, 784), dtype=np.uint8), rng.integers(0, 10, 200)
    model = fcnet.Sequential([fcnet.Dense(32, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.metadata = {"dataset": "mnist", "class_names": [str(i) for i in range(10)]}
    model.save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), "-o", str(tmp_path / "m.onnx")]) == 0
    assert "784 inputs" in capsys.readouterr().out
    assert_allclose(run(tmp_path / "m.onnx", (x / 255).astype(np.float32)), model.predict(x), rtol=1e-5, atol=1e-7)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["dataset"] == '"mnist"' and '"7"' in props["class_names"]
    assert main(["export", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert not (tmp_path / "x.onnx").exists()
