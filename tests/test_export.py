"""fcnet export: ONNX graphs run in onnxruntime and answer as fcnet does (every registered activation and option:
tests/engines/test_parity.py)."""

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
