"""binary_crossentropy (fused with a sigmoid output), mae and huber: hand-worked values, the reduction convention,
finite differences and torch autograd through a network, injected bugs, and what a model does with them."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet import TrainConfig, losses
from fcnet.gradcheck import gradcheck

OUT = np.array([[0.5, -2.0], [3.0, 0.25]])
TARGET = np.array([[1.0, 0.0], [2.0, -0.5]])


def test_mae_and_huber_by_hand():
    value, grad = losses.MeanAbsoluteError().value_and_grad(OUT, TARGET)
    assert value == pytest.approx((0.5 + 2.0 + 1.0 + 0.75) / 4, rel=1e-15)
    assert_allclose(grad, [[-0.25, -0.25], [0.25, 0.25]], rtol=1e-15)
    # d = [-0.5, -2, 1, 0.75] with delta 1: ½d² inside, delta(|d| − ½delta) outside; the derivative is clip(d).
    value, grad = losses.Huber().value_and_grad(OUT, TARGET)
    assert value == pytest.approx((0.125 + 1.5 + 0.5 + 0.28125) / 4, rel=1e-15)
    assert_allclose(grad, [[-0.125, -0.25], [0.25, 0.1875]], rtol=1e-15)
    assert losses.Huber(delta=3.0)(TARGET, OUT) == pytest.approx(losses.MeanSquaredError()(TARGET, OUT) / 2)
    assert losses.MeanAbsoluteError().value_and_grad(OUT, OUT)[1].sum() == 0  # no gradient where they are equal


def test_binary_crossentropy_by_hand_and_on_extreme_logits():
    z, t = np.array([[0.0, 2.0], [-1.0, 1e4]]), np.array([[1.0, 0.0], [0.25, 1.0]])
    sig = 1 / (1 + np.e)  # σ(−1)
    expected = [np.log(2), 2 + np.log1p(np.exp(-2.0)), -(0.25 * np.log(sig) + 0.75 * np.log1p(-sig)), 0.0]
    loss = losses.BinaryCrossentropy(from_logits=True)
    value, grad = loss.value_and_grad(z, t)
    assert value == pytest.approx(np.mean(expected), rel=1e-14)
    sigma = 1 / (1 + np.exp(-np.clip(z, -700, 700)))
    assert_allclose(grad, (sigma - t) / 4, rtol=1e-14, atol=1e-300)
    value, grad = loss.value_and_grad(np.array([[-1e4], [1e4]]), np.array([[1.0], [0.0]]))
    assert value == pytest.approx(1e4, rel=1e-15) and np.isfinite(grad).all()  # no overflow, no log(0)
    probabilities = losses.BinaryCrossentropy()
    assert probabilities([1, 0], [[1.0], [0.0]]) == 0.0 and probabilities([1], [[0.0]]) == np.inf  # exact, unclipped
    assert probabilities([1, 0], [[0.8], [0.3]]) == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2, rel=1e-15)


def test_batch_loss_is_the_mean_of_per_example_losses_averaged_over_outputs():
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(7, 3)), rng.random((7, 3))
    for loss in (losses.BinaryCrossentropy(True), losses.MeanAbsoluteError(), losses.Huber(0.5)):
        value, _ = loss.value_and_grad(z, t)
        per = loss.per_example(z, t)
        assert per.shape == (7,) and value == pytest.approx(per.mean(), rel=1e-14)
        assert_allclose(per, loss.penalty(z, t).mean(axis=1), rtol=1e-15)


def _model(loss, n_out, output, seed=1):
    model = fcnet.Sequential([fcnet.Dense(8, "tanh", input_dim=6), fcnet.Dense(n_out, output)], seed=seed,
                             dtype="float64")
    model.compile("adam", loss, ["accuracy"])
    return model


CASES = {  # loss, outputs, output activation, targets
    "binary, fused with a sigmoid": ("binary_crossentropy", 1, "sigmoid", lambda r: r.integers(0, 2, 16)),
    "multi-label, soft targets": ("binary_crossentropy", 3, "sigmoid", lambda r: r.random((16, 3))),
    "binary on logits": (losses.BinaryCrossentropy(from_logits=True), 2, None, lambda r: r.integers(0, 2, (16, 2))),
    "mae regression": ("mae", 1, None, lambda r: r.normal(size=16)),
    "huber, delta 0.3": ({"name": "huber", "delta": 0.3}, 2, None, lambda r: 2 * r.normal(size=(16, 2))),
    "mae on a softmax, labels": ("mean_absolute_error", 3, "softmax", lambda r: r.integers(0, 3, 16)),
}


@pytest.mark.parametrize("case", CASES)
def test_finite_differences_and_torch_agree_through_a_network(case):
    loss, n_out, output, targets = CASES[case]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)), targets(rng)
    model = _model(loss, n_out, output)
    result = gradcheck(model, x, y)
    assert result.passed, result.table()
    pytest.importorskip("torch")
    from fcnet.torchcheck import torch_check

    result = torch_check(model, x, y)
    assert result.passed and result.max_rel_error < 1e-12


@pytest.mark.parametrize("name, bug", [
    ("huber", lambda self, out, t: out - t),  # the derivative not clipped at ±delta
    ("binary_crossentropy", lambda self, z, t: 1 / (1 + np.exp(-z))),  # the target term forgotten
    ("mae", lambda self, out, t: out - t),  # the squared error's derivative
])
def test_an_injected_bug_in_each_derivative_fails_the_check(monkeypatch, name, bug):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6))
    y = rng.integers(0, 2, (16, 2)) if name == "binary_crossentropy" else 3 * rng.normal(size=(16, 2))
    model = _model(name, 2, "sigmoid" if name == "binary_crossentropy" else None)
    assert gradcheck(model, x, y).passed
    monkeypatch.setattr(type(model.loss), "derivative", bug)
    assert not gradcheck(model, x, y).passed


def test_binary_accuracy_is_the_same_on_logits_while_training_and_on_probabilities_after():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 6)), rng.integers(0, 2, (200, 3))
    model = _model("binary_crossentropy", 3, "sigmoid")
    history = model.fit(x, y, epochs=3, batch_size=200, verbose=0, shuffle=False)
    logits = model.forward(x, training=True)[1]  # fused: the training forward pass stops at the logits
    hits = model.count_correct(logits, y.astype(float), training=True)
    evaluated = model.evaluate(x, y)
    assert hits / 200 == pytest.approx(evaluated.accuracy, rel=1e-15)
    expected = ((model.predict(x) > 0.5) == y).mean()
    assert evaluated.accuracy == pytest.approx(expected, rel=1e-15) and 0 < expected < 1
    assert len(history.history["accuracy"]) == 3


def test_refusals_saving_and_configs(tmp_path):
    with pytest.raises(ValueError, match="needs a sigmoid output layer, not 'softmax'"):
        _model("binary_crossentropy", 2, "softmax")
    model = _model("binary_crossentropy", 1, "sigmoid")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], found -1..1"):
        model.evaluate(np.zeros((2, 6)), [-1, 1])
    with pytest.raises(ValueError, match="huber delta must be a number > 0"):
        losses.Huber(delta=0)
    model = _model({"name": "huber", "delta": 0.3}, 2, None)
    model.save(tmp_path / "m.npz")
    assert fcnet.load_model(tmp_path / "m.npz").loss.get_config() == {"name": "huber", "delta": 0.3}
    assert TrainConfig(dataset="csv:x.csv", target="y", task="regression", loss="huber").loss == "huber"
    with pytest.raises(ValueError, match="regression trains with loss mse, mae, huber, not categorical"):
        TrainConfig(dataset="csv:x.csv", target="y", task="regression", loss="categorical_crossentropy")
    from fcnet.errors import FcnetError
    from fcnet.run import prepare

    with pytest.raises(FcnetError, match="binary_crossentropy needs a sigmoid output"):
        prepare(TrainConfig(loss="binary_crossentropy"))
