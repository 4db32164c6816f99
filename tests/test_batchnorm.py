"""fcnet.BatchNormalization: Keras' layer after a Dense layer — batch statistics while training, moving averages
at inference — proven against finite differences and torch.nn.BatchNorm1d (training and inference modes, running
statistics included), saved, resumed and exported with its moving averages."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet import TrainConfig, train_run
from fcnet.errors import DataError
from fcnet.gradcheck import biases_off_the_kinks, gradcheck
from fcnet.layers import BatchNormalization


def net(dtype="float64", seed=0, momentum=0.99):
    model = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=10), fcnet.BatchNormalization(momentum=momentum),
                              fcnet.Dense(8, "tanh"), fcnet.BatchNormalization(), fcnet.Dropout(0.25),
                              fcnet.Dense(3, "softmax")], seed=seed, dtype=dtype)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def batch(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 10)), rng.integers(0, 3, n), rng


def test_forward_is_the_formula_and_moves_the_averages_as_keras():
    bn = BatchNormalization(momentum=0.9, epsilon=1e-3)
    bn.build(4, np.float64)
    bn.params["gamma"][:] = [1.0, 2.0, 0.5, -1.0]
    bn.params["beta"][:] = [0.0, 1.0, -1.0, 3.0]
    a = np.random.default_rng(1).normal(2.0, 3.0, (7, 4))
    mean, var = a.mean(axis=0), a.var(axis=0)  # biased, as Keras' moments
    y = bn.forward(a.copy(), training=True)
    assert_allclose(y, bn.params["gamma"] * (a - mean) / np.sqrt(var + 1e-3) + bn.params["beta"], rtol=1e-13)
    assert_allclose(bn.state["moving_mean"], 0.1 * mean, rtol=1e-13)
    assert_allclose(bn.state["moving_variance"], 0.9 + 0.1 * var, rtol=1e-13)
    inferred = bn.forward(a, training=False)
    expected = bn.params["gamma"] * (a - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-3) + bn.params["beta"]
    assert_allclose(inferred, expected, rtol=1e-13)


def test_training_and_inference_equal_torch_batchnorm1d_running_statistics_included():
    torch = pytest.importorskip("torch")
    n, units, steps, momentum = 16, 5, 6, 0.99
    bn = BatchNormalization(momentum=momentum, epsilon=1e-3)
    bn.build(units, np.float64)
    rng = np.random.default_rng(2)
    bn.params["gamma"][:], bn.params["beta"][:] = rng.normal(1, 0.3, units), rng.normal(0, 0.3, units)
    # Keras' momentum m is torch's 1 − m; torch's running variance takes the unbiased batch variance.
    ref = torch.nn.BatchNorm1d(units, eps=1e-3, momentum=1 - momentum, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(bn.params["gamma"]))
        ref.bias.copy_(torch.from_numpy(bn.params["beta"]))
    ref.train()
    for _ in range(steps):
        a = rng.normal(3.0, 2.0, (n, units))
        assert_allclose(bn.forward(a.copy(), training=True), ref(torch.from_numpy(a)).detach().numpy(), rtol=1e-12,
                        atol=1e-13)
    assert_allclose(bn.state["moving_mean"], ref.running_mean.numpy(), rtol=1e-12)
    # Both variances start at 1 and decay by m per step, so ours − m^k = (torch's − m^k)·(n − 1)/n.
    decay = momentum ** steps
    assert_allclose(bn.state["moving_variance"] - decay, (ref.running_var.numpy() - decay) * (n - 1) / n,
                    rtol=1e-10)
    ref.eval()
    with torch.no_grad():
        ref.running_var.copy_(torch.from_numpy(bn.state["moving_variance"]))  # the one documented difference
    a = rng.normal(3.0, 2.0, (n, units))
    assert_allclose(bn.forward(a, training=False), ref(torch.from_numpy(a)).detach().numpy(), rtol=1e-12)


def test_finite_differences_and_torch_autograd_agree():
    model = net()
    x, y, rng = batch()
    biases_off_the_kinks(model, x, rng)
    moving = [w.copy() for w in model.weights]
    result = gradcheck(model, x, y)
    assert result.passed and {"gamma1", "beta1", "gamma2", "beta2"} <= {row.name for row in result}
    for before, after in zip(moving, model.weights):
        assert_array_equal(before, after)  # the check ran on copies
    pytest.importorskip("torch")
    from fcnet.torchcheck import torch_check

    result = torch_check(model, x, y)
    assert result.passed and result.max_rel_error < 1e-12


@pytest.mark.parametrize("term", ["mean", "variance"])
def test_a_backward_pass_missing_a_term_fails_the_check(monkeypatch, term):
    def buggy(self, dy):
        xhat, inv_std = self._cache
        n = len(dy)
        np.add.reduce(dy, axis=0, out=self.grads["beta"])
        np.einsum("ij,ij->j", dy, xhat, out=self.grads["gamma"])
        if term != "mean":
            dy -= self.grads["beta"] / n
        if term != "variance":
            dy -= xhat * (self.grads["gamma"] / n)
        dy *= self.params["gamma"] * inv_std
        return dy

    model = net()
    x, y, rng = batch()
    biases_off_the_kinks(model, x, rng)
    assert gradcheck(model, x, y).passed
    monkeypatch.setattr(BatchNormalization, "backward", buggy)
    failed = [row.name for row in gradcheck(model, x, y) if not row.passed]
    assert failed and failed[0] == "W1"  # everything before the second normalization is wrong


def test_inference_uses_the_moving_averages_and_saving_keeps_them(tmp_path):
    model = net()
    x, y, _ = batch(n=64)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    state = model.layers[0].state
    assert not np.allclose(state["moving_mean"], 0) and not np.allclose(state["moving_variance"], 1)
    training_out = model.forward(x, training=True)[1]
    assert not np.allclose(model.predict(x), fcnet.activations.Softmax().forward(training_out))
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert_array_equal(loaded.predict(x), model.predict(x))
    for p, q in zip(loaded.weights, model.weights):
        assert_array_equal(p, q)
    assert loaded.count_params() == model.count_params() == 10 * 16 + 16 + 4 * 16 + 16 * 8 + 8 + 4 * 8 + 8 * 3 + 3
    text = loaded.summary(print_fn=lambda text: None)
    assert "batch_normalization_0 (BatchNormalization)" in text and "Non-trainable params: 48" in text
    copy = model.astype("float32")
    assert_allclose(copy.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_crafted_files_are_refused(tmp_path):
    from fcnet import serialization

    model = net()
    model.save(tmp_path / "m.npz")
    config, arrays = serialization.read_model_file(tmp_path / "m.npz")
    arrays["param_5"] = -np.ones(16)  # layer 1's moving variance
    serialization.write_model_file(tmp_path / "neg.npz", config, arrays)
    with pytest.raises(DataError, match="negative moving variance"):
        fcnet.load_model(tmp_path / "neg.npz")
    del arrays["param_5"]
    serialization.write_model_file(tmp_path / "short.npz", config, arrays)
    with pytest.raises(DataError, match=r"missing \['param_5'\]"):
        fcnet.load_model(tmp_path / "short.npz")


def test_where_it_may_stand_and_its_settings():
    with pytest.raises(ValueError, match="add one before it"):
        fcnet.Sequential([fcnet.BatchNormalization()])
    with pytest.raises(ValueError, match="put it before the Dropout"):
        fcnet.Sequential([fcnet.Dense(3, input_dim=2), fcnet.Dropout(0.5), fcnet.BatchNormalization()])
    with pytest.raises(ValueError, match="two BatchNormalization layers in a row"):
        fcnet.Sequential([fcnet.Dense(3, input_dim=2), fcnet.BatchNormalization(), fcnet.BatchNormalization()])
    with pytest.raises(ValueError, match="after the output layer"):
        fcnet.Sequential([fcnet.Dense(3, input_dim=2), fcnet.BatchNormalization()]).compile("sgd", "mse")
    for bad in ({"momentum": 1.0}, {"momentum": -0.1}, {"epsilon": 0}, {"epsilon": float("nan")}):
        with pytest.raises(ValueError, match="batch normalization"):
            BatchNormalization(**bad)
    with pytest.raises(TypeError, match="batch_norm must be"):
        fcnet.Dense(3, batch_norm="yes")


def test_the_compiled_engines_refuse_it_and_auto_trains_it_on_numpy():
    pytest.importorskip("numba")
    from fcnet.engines import choose_engine, cuda, numba

    model = net("float32")
    x, y, _ = batch(n=64)
    assert numba.unsupported(model, y) == "batch normalization is not compiled"
    assert cuda.unsupported(model, y) == "dropout is not compiled"  # the first option it lacks
    assert choose_engine(model, y) == "numpy"


def test_onnx_export_is_the_inference_network(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = net(momentum=0.5)
    x, y, _ = batch(n=64)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    session = ort.InferenceSession(str(model.export_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert_allclose(session.run(["output"], {"input": x})[0], model.predict(x), rtol=1e-12)


@pytest.mark.slow
def test_batch_norm_from_a_config_resumes_bit_identically_and_is_recorded(idx_dir, tmp_path):
    config = TrainConfig(dataset=f"idx:{idx_dir}", hidden=(32, 16), epochs=3, batch_size=50, threads=2,
                         batch_norm=True, dropout=0.2, optimizer="adam", lr=1e-3)
    full = train_run(config, out=tmp_path / "full", verbose=0, figures=False)
    assert [layer.batch_norm is not None for layer in full.model.layers] == [True, True, False]
    assert full.metrics.engine == "numpy"
    train_run(config.replace(epochs=2), out=tmp_path / "part", verbose=0, figures=False)
    resumed = train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    for p, q in zip(full.model.weights, resumed.model.weights):
        assert_array_equal(p, q)
    assert full.metrics.history["loss"] == resumed.metrics.history["loss"]
    assert TrainConfig(batch_norm="true").batch_norm and not TrainConfig(batch_norm="no").batch_norm
    with pytest.raises(ValueError, match="batch_norm must be true or false"):
        TrainConfig(batch_norm="maybe")


def test_the_command_line_trains_checks_and_records_it(idx_dir, tmp_path, capsys):
    from fcnet.cli import main

    assert main(["gradcheck", "--batch-norm", "--hidden", "12,6", "--inputs", "9", "--classes", "3",
                 "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "relu/softmax, batch norm" in out and "gamma2" in out and "every gradient agrees" in out
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "16", "--epochs", "1", "--batch-norm",
                 "--quiet", "--no-figures", "--out", str(tmp_path / "run")]) == 0
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    assert '"batch_norm": true' in metrics
    assert main(["summary", str(tmp_path / "run" / "model.npz")]) == 0
    assert "BatchNormalization" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--batch-norm", "yes"])
