"""fcnet.Dropout: inverted dropout of the next Dense layer's input, proven by finite differences and PyTorch
with the masks pinned, seeded by the model's generator (runs repeat and resume bit for bit), off at inference."""

import importlib.util

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet import TrainConfig, train_run
from fcnet.gradcheck import biases_off_the_kinks, gradcheck
from fcnet.layers import Dense


def net(dtype="float64", seed=0, rate=0.5):
    model = fcnet.Sequential([fcnet.Dropout(0.2), fcnet.Dense(16, "tanh", input_dim=10), fcnet.Dropout(rate),
                              fcnet.Dense(8, "relu"), fcnet.Dense(3, "softmax")], seed=seed, dtype=dtype)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.random((n, 10)), rng.integers(0, 3, n), rng


def test_finite_differences_and_torch_agree_with_the_masks_pinned():
    model = net()
    x, y, rng = batch()
    biases_off_the_kinks(model, x, rng)
    assert gradcheck(model, x, y).passed
    torch_check = pytest.importorskip("fcnet.torchcheck").torch_check
    pytest.importorskip("torch")
    result = torch_check(model, x, y)
    assert result.passed and result.max_rel_error < 1e-12
    assert model.layers[0].mask is not None and model.layers[2].mask is None  # the pinned masks were used


def test_a_backward_pass_that_forgets_the_mask_fails_the_check(monkeypatch):
    original = Dense.backward

    def forgetful(self, dout, wrt_z=False, need_dx=True):
        mask, self.mask = self.mask, None  # dx as if nothing had been dropped
        try:
            return original(self, dout, wrt_z, need_dx)
        finally:
            self.mask = mask

    monkeypatch.setattr(Dense, "backward", forgetful)
    model = net()
    x, y, rng = batch()
    biases_off_the_kinks(model, x, rng)
    result = gradcheck(model, x, y)
    assert not result.passed and [r.name for r in result if not r.passed][0] == "W1"


def test_masks_keep_about_one_minus_rate_scaled_up_and_inference_drops_nothing():
    model = net(rate=0.3)
    x = np.ones((4000, 10))
    model.forward(x, training=True)
    mask = model.layers[1].mask
    assert set(np.unique(mask)) == {0.0, 1 / 0.7}
    assert abs((mask > 0).mean() - 0.7) < 0.01  # 64 000 draws: the kept fraction within 1 %
    plain = fcnet.Sequential([fcnet.Dense(16, "tanh", input_dim=10), fcnet.Dense(8, "relu"),
                              fcnet.Dense(3, "softmax")], seed=0, dtype="float64")
    plain.set_weights(model.get_weights())
    assert_array_equal(model.predict(x[:5]), plain.predict(x[:5]))
    assert all(layer.mask is None for layer in model.layers)  # predicting drew no mask


def test_the_seed_fixes_the_run_and_dtypes_drop_the_same_inputs():
    x, y, _ = batch(n=200)
    runs = []
    for dtype, seed in (("float64", 1), ("float64", 1), ("float32", 1), ("float64", 2)):
        model = net(dtype, seed)
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, engine="numpy")  # the layers keep their last masks
        runs.append(model)
    for p, q in zip(runs[0].parameters, runs[1].parameters):
        assert_array_equal(p, q)
    assert_array_equal(runs[0].layers[1].mask > 0, runs[2].layers[1].mask > 0)
    assert not np.array_equal(runs[0].parameters[0], runs[3].parameters[0])


def test_layers_config_saving_and_refusals(tmp_path):
    model = net()
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert [layer.dropout for layer in loaded.layers] == [0.2, 0.5, 0.0]
    assert "dropout_1 (Dropout)" in loaded.summary(print_fn=lambda text: None)
    with pytest.raises(ValueError, match="must be followed by a Dense layer"):
        fcnet.Sequential([fcnet.Dense(3, input_dim=2), fcnet.Dropout(0.5)]).compile("sgd", "mse")
    with pytest.raises(ValueError, match="two Dropout layers in a row"):
        fcnet.Sequential([fcnet.Dropout(0.5), fcnet.Dropout(0.5)])
    for rate in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match=r"dropout rate must be a number in \[0, 1\)"):
            fcnet.Dropout(rate)


def test_the_cpu_engine_compiles_dropout_and_the_gpu_engine_refuses_it():
    pytest.importorskip("numba")
    from fcnet.engines import choose_engine, cuda

    x, y, _ = batch(n=64)
    model = net("float32")
    assert choose_engine(model, y) == "numba"  # tests/engines/test_parity.py compares it with NumPy
    assert cuda.unsupported(model, y) == "dropout is not compiled"


def test_onnx_export_of_a_dropout_model_is_its_inference_network(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = net()
    x, _, _ = batch(n=20)
    session = ort.InferenceSession(str(model.export_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert_allclose(session.run(["output"], {"input": x})[0], model.predict(x), rtol=1e-12)


@pytest.mark.slow
def test_dropout_and_input_dropout_from_a_run_resume_bit_identically(idx_dir, tmp_path):
    config = TrainConfig(dataset=f"idx:{idx_dir}", hidden=(32, 16), epochs=3, batch_size=50, threads=2, dropout=0.3,
                         input_dropout=0.2)
    full = train_run(config, out=tmp_path / "full", verbose=0, figures=False)
    assert [layer.dropout for layer in full.model.layers] == [0.2, 0.3, 0.3]  # the inputs, then each hidden layer
    assert full.metrics.engine == ("numba" if importlib.util.find_spec("numba") else "numpy")
    train_run(config.replace(epochs=2), out=tmp_path / "part", verbose=0, figures=False)
    resumed = train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    for p, q in zip(full.model.parameters, resumed.model.parameters):
        assert_array_equal(p, q)
    assert full.metrics.history["loss"] == resumed.metrics.history["loss"]
