"""fcnet.regularizers: the L2 penalty's loss term and gradient, checked against finite differences and PyTorch's
weight decay, saved with the model, and left to the NumPy engine by the compiled ones."""

import importlib.util

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet.gradcheck import biases_off_the_kinks, gradcheck
from fcnet.regularizers import L2


def model(penalty=1e-3, optimizer="sgd"):
    net = fcnet.Sequential([fcnet.Dense(12, "tanh", input_dim=6, kernel_regularizer=fcnet.regularizers.l2(penalty)),
                            fcnet.Dense(4, "softmax", kernel_regularizer="l2")], seed=0, dtype="float64")
    net.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


def test_the_penalty_is_in_the_loss_and_its_gradient_passes_gradcheck():
    rng = np.random.default_rng(0)
    x, y = rng.random((10, 6)), rng.integers(0, 4, 10)
    net = model(0.05)
    biases_off_the_kinks(net, x, rng)
    result = gradcheck(net, x, y)
    assert result.passed, result.table()
    plain = fcnet.Sequential.from_config({**net.get_config(), "layers": [
        {k: v for k, v in layer.items() if k != "kernel_regularizer"} for layer in net.get_config()["layers"]]})
    plain.set_weights(net.parameters)
    plain.compile("sgd", "sparse_categorical_crossentropy")
    (loss, grads), (plain_loss, plain_grads) = net.loss_and_gradients(x, y), plain.loss_and_gradients(x, y)
    w1, w2 = net.layers[0].params["W"], net.layers[1].params["W"]
    assert loss == pytest.approx(plain_loss + 0.05 * (w1**2).sum() + 0.01 * (w2**2).sum(), rel=1e-12)
    assert_allclose(grads[0], plain_grads[0] + 2 * 0.05 * w1, rtol=1e-12)
    assert_allclose(grads[1], plain_grads[1], rtol=1e-12)  # biases are not penalised
    assert net.evaluate(x, y).loss == pytest.approx(plain.evaluate(x, y).loss + net.penalty(), rel=1e-12)


@pytest.mark.slow
def test_sgd_with_l2_is_torch_sgd_with_weight_decay_on_the_kernels():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, y = rng.random((64, 6)), rng.integers(0, 4, 64)
    net = fcnet.Sequential([fcnet.Dense(4, "softmax", input_dim=6, kernel_regularizer=L2(0.02))], seed=0,
                           dtype="float64")
    net.compile(fcnet.SGD(0.1), "sparse_categorical_crossentropy")
    w = torch.tensor(net.layers[0].params["W"].copy(), requires_grad=True)
    b = torch.tensor(net.layers[0].params["b"].copy(), requires_grad=True)
    opt = torch.optim.SGD([{"params": [w], "weight_decay": 2 * 0.02}, {"params": [b]}], lr=0.1)
    net.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    for _ in range(3):
        for start in range(0, 64, 16):
            opt.zero_grad()
            logits = torch.tensor(x[start:start + 16]) @ w + b
            torch.nn.functional.cross_entropy(logits, torch.tensor(y[start:start + 16])).backward()
            opt.step()
    assert_allclose(net.layers[0].params["W"], w.detach().numpy(), rtol=1e-10)


def test_a_regularised_model_saves_loads_and_trains_on_both_cpu_engines(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.random((50, 6)), rng.integers(0, 4, 50)
    net = model()
    history = net.fit(x, y, epochs=2, verbose=0, engine="numpy")
    if importlib.util.find_spec("numba"):  # the same run compiled: the same losses (penalty included)
        compiled = model()
        compiled_history = compiled.fit(x, y, epochs=2, verbose=0)
        assert compiled_history.engine == "numba"
        assert_allclose(compiled_history.history["loss"], history.history["loss"], rtol=1e-5)
        assert compiled.evaluate(x, y).loss == pytest.approx(net.evaluate(x, y).loss, rel=1e-5)
        from fcnet.engines import cuda

        assert cuda.unsupported(net, y) == "a kernel regularizer is not compiled"  # the GPU's
    net.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert loaded.layers[0].kernel_regularizer.l2 == 1e-3 and loaded.layers[1].kernel_regularizer.l2 == 0.01
    assert loaded.evaluate(x, y).loss == pytest.approx(net.evaluate(x, y).loss, rel=1e-12)
    for bad in (-1.0, float("nan"), "l1", {"name": "l2", "l1": 2}):
        with pytest.raises(ValueError):
            fcnet.Dense(3, kernel_regularizer=bad if isinstance(bad, (str, dict)) else L2(bad))
