"""Losses: the fused cross-entropies, binary cross-entropy (fused with a sigmoid output), MSE, MAE and Huber —
hand-worked values, the reduction convention, extreme logits, finite differences and torch autograd through a
network, injected bugs, and what a model does with them."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet import TrainConfig, losses
from fcnet.gradcheck import gradcheck

LOGITS = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
LABELS = np.array([0, 2])


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_sparse_crossentropy_value_and_gradient_by_hand():
    p = _softmax(LOGITS)
    value, grad = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(LOGITS, LABELS)
    assert value == pytest.approx(-(np.log(p[0, 0]) + np.log(p[1, 2])) / 2, rel=1e-14)
    onehot = np.eye(3)[LABELS]
    assert_allclose(grad, (p - onehot) / 2, rtol=1e-14)


def test_batch_loss_is_the_mean_of_per_example_losses():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(7, 4)), rng.integers(0, 4, 7)
    for loss in (losses.SparseCategoricalCrossentropy(True), losses.CategoricalCrossentropy(True),
                 losses.MeanSquaredError()):
        value, _ = loss.value_and_grad(z, y)
        assert value == pytest.approx(loss.per_example(z, y).mean(), rel=1e-14)
        assert loss.per_example(z, y).shape == (7,)


def test_categorical_with_one_hot_equals_sparse_with_labels():
    onehot = np.eye(3)[LABELS]
    v1, g1 = losses.CategoricalCrossentropy(True).value_and_grad(LOGITS, onehot)
    v2, g2 = losses.SparseCategoricalCrossentropy(True).value_and_grad(LOGITS, LABELS)
    v3, g3 = losses.CategoricalCrossentropy(True).value_and_grad(LOGITS, LABELS)
    assert v1 == pytest.approx(v2, rel=1e-15) and v3 == pytest.approx(v2, rel=1e-15)
    assert_allclose(g1, g2, rtol=1e-15)
    assert_allclose(g3, g2, rtol=1e-15)


def test_soft_targets_gradient_matches_central_differences():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 5))
    y = rng.dirichlet(np.ones(5), size=4) * 1.5  # rows need not sum to one
    loss = losses.CategoricalCrossentropy(from_logits=True)
    _, grad = loss.value_and_grad(z, y)
    eps, numeric = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        numeric[idx] = (loss.value_and_grad(zp, y)[0] - loss.value_and_grad(zm, y)[0]) / (2 * eps)
    assert_allclose(grad, numeric, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_give_finite_exact_losses(scale):
    z = np.array([[scale, 0.0, -scale], [0.0, scale, 0.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value, grad = losses.SparseCategoricalCrossentropy(True).value_and_grad(z, np.array([2, 1]))
    # Example 0: for +1e4 the true class sits 2e4 below the max; for -1e4 it is the max (loss ~ 0).
    expected0 = 2e4 if scale > 0 else 0.0
    expected1 = 0.0 if scale > 0 else 1e4 + np.log(2)
    assert value == pytest.approx((expected0 + expected1) / 2, rel=1e-12, abs=1e-12)
    assert np.isfinite(grad).all()


def test_probability_api_handles_zero_probabilities_without_clipping():
    loss = losses.SparseCategoricalCrossentropy()
    p = np.array([[1.0, 0.0], [0.25, 0.75]])
    assert loss(np.array([0, 1]), p) == pytest.approx(-np.log(0.75) / 2, rel=1e-14)
    with np.errstate(divide="ignore"):
        assert loss(np.array([1]), np.array([[1.0, 0.0]])) == np.inf


def test_mse_value_and_gradient_by_hand():
    out = np.array([[0.2, 0.8], [0.6, 0.4]])
    value, grad = losses.MeanSquaredError().value_and_grad(out, np.array([1, 0]))
    assert value == pytest.approx((0.04 + 0.04 + 0.16 + 0.16) / 4, rel=1e-14)
    assert_allclose(grad, 2 * (out - [[0, 1], [1, 0]]) / 4, rtol=1e-14)


def test_get_resolves_names_configs_and_rejects_unknown():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert losses.get({"name": "categorical_crossentropy", "from_logits": True}).from_logits
    assert losses.get({"name": "mse", "from_logits": False}).name == "mse"
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")


def test_label_smoothing_by_hand_against_torch_and_in_a_saved_model(tmp_path):
    eps, p = 0.2, _softmax(LOGITS)
    target = (1 - eps) * np.eye(3)[LABELS] + eps / 3
    sparse = losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=eps)
    value, grad = sparse.value_and_grad(LOGITS, LABELS)
    assert value == pytest.approx(-(target * np.log(p)).sum() / 2, rel=1e-14)
    assert_allclose(grad, (p - target) / 2, rtol=1e-14)
    dense = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps)
    for loss, y in ((dense, np.eye(3)[LABELS]), (dense, LABELS)):
        v, g = loss.value_and_grad(LOGITS, y)
        assert v == pytest.approx(value, rel=1e-14) and np.allclose(g, grad, rtol=1e-14)
    assert sparse.per_example(LOGITS, LABELS).mean() == pytest.approx(value, rel=1e-14)
    torch = pytest.importorskip("torch")
    z = torch.tensor(LOGITS, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(z, torch.tensor(LABELS), label_smoothing=eps)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-14)
    assert_allclose(grad, z.grad.numpy(), rtol=1e-13)

    import fcnet

    model = fcnet.Sequential([fcnet.Dense(4, "relu", input_dim=3), fcnet.Dense(3, "softmax")], seed=0)
    model.compile("sgd", {"name": "sparse_categorical_crossentropy", "label_smoothing": eps})
    model.save(tmp_path / "m.npz")
    assert fcnet.load_model(tmp_path / "m.npz").loss.label_smoothing == eps
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\)"):
            losses.CategoricalCrossentropy(label_smoothing=bad)


# -- binary cross-entropy, MAE and Huber ---------------------------------------------------------------------------

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
