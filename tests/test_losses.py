import numpy as np
import pytest
from numpy.testing import assert_allclose

from fcnet import losses

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
