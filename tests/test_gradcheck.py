import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fcnet
from fcnet import activations
from fcnet.cli import main
from fcnet.gradcheck import gradcheck
from fcnet.layers import Dense

LOSSES = {
    "sparse": "sparse_categorical_crossentropy",
    "categorical": "categorical_crossentropy",
    "sparse_logits": fcnet.losses.SparseCategoricalCrossentropy(from_logits=True),
    "categorical_logits": fcnet.losses.CategoricalCrossentropy(from_logits=True),
    "mse": "mse",
}


def network(depth, activation, loss, n_in=5, width=6, n_out=4, seed=0):
    """A float64 net with ``depth`` layers, random non-zero biases (off ReLU's kink), compiled with ``loss``."""
    output = None if loss.endswith("logits") else "softmax"
    layers = [fcnet.Dense(width, activation) for _ in range(depth - 1)] + [fcnet.Dense(n_out, output)]
    model = fcnet.Sequential(layers, seed=seed, dtype="float64")
    model.build(n_in)
    rng = np.random.default_rng(seed + 100)
    for layer in model.layers:
        layer.params["b"][:] = rng.normal(0, 0.5, layer.units)
    model.compile("sgd", LOSSES[loss])
    return model


def batch(loss, n=8, n_in=5, n_out=4, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, n_in)), rng.integers(0, n_out, n)
    if loss.startswith("categorical"):
        y = np.eye(n_out)[y]
    return x, y


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", activations.NAMES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_every_activation_loss_and_depth_passes_finite_differences(depth, activation, loss):
    result = gradcheck(network(depth, activation, loss, seed=depth), *batch(loss, seed=depth))
    assert result.passed, result.table()
    assert len(result) == 2 * depth
    assert all(row.checked == np.prod(row.shape) for row in result)  # small nets: every entry


@pytest.mark.slow
def test_large_arrays_are_sampled_and_the_float32_model_is_untouched():
    model = fcnet.Sequential([fcnet.Dense(300, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights()
    rng = np.random.default_rng(0)
    result = gradcheck(model, rng.random((8, 784)), rng.integers(0, 10, 8), max_entries=20)
    assert result.passed, result.table()
    assert [row.checked for row in result] == [20, 20, 20, 10]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.parameters))
    assert model.parameters[0].dtype == np.float32


def _wrong_tanh_derivative(self, da, a, z=None):
    return da * (1 - a)  # should be 1 - a²


_ORIGINAL_BACKWARD = Dense.backward


def _dropped_transpose(self, *args, **kwargs):
    dx = _ORIGINAL_BACKWARD(self, *args, **kwargs)
    self.grads["W"][...] = self.grads["W"].T.copy()  # δᵀx where xᵀδ belongs (square layers)
    return dx


@pytest.mark.parametrize("patch", [("Tanh", _wrong_tanh_derivative), ("Dense", _dropped_transpose)])
def test_a_broken_backward_pass_fails_the_check(monkeypatch, patch):
    target = activations.Tanh if patch[0] == "Tanh" else Dense
    monkeypatch.setattr(target, "backward", patch[1])
    # square layers so that a dropped transpose still has the right shapes
    model = network(3, "tanh", "sparse", n_in=6, width=6, n_out=6)
    result = gradcheck(model, *batch("sparse", n_in=6, n_out=6))
    assert not result.passed
    assert result.max_rel_error > 1e-2
    if patch[0] == "Tanh":
        assert result[-1].passed and result[-2].passed  # the output layer's gradients do not go through tanh
    else:
        assert all(row.passed for row in result if row.name.startswith("b"))


@pytest.mark.slow
def test_cli_passes_on_the_seed_lab_network(capsys):
    assert main(["gradcheck", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("784-300-10 relu/softmax") and "every gradient agrees" in out
    assert out.count(" ok") == 4


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 12), min_size=0, max_size=4),
    activation=st.sampled_from(activations.NAMES),
    loss=st.sampled_from(fcnet.losses.NAMES),
    batch_size=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_cli_passes_on_random_architectures(hidden, activation, loss, batch_size, seed):
    args = ["gradcheck", "--hidden", ",".join(map(str, hidden)) or "none", "--activation", activation, "--loss", loss,
            "--batch-size", str(batch_size), "--seed", str(seed), "--inputs", "7", "--classes", "3"]
    assert main(args) == 0


def test_biases_are_drawn_off_the_relu_kinks():
    from fcnet.gradcheck import biases_off_the_kinks

    # hypothesis found this one: a unit of the third layer sat within 1e-6 of z = 0 with the biases drawn
    # blindly, and its finite differences straddled the kink
    assert main(["gradcheck", "--hidden", "10,4,7,6", "--activation", "leaky_relu", "--batch-size", "1", "--seed",
                 "7", "--inputs", "7", "--classes", "3", "--no-torch"]) == 0
    model = fcnet.Sequential([Dense(50, "relu", input_dim=5), Dense(3, "softmax")], seed=0, dtype="float64")
    x = np.random.default_rng(0).random((64, 5))
    margin = biases_off_the_kinks(model, x, np.random.default_rng(1))
    z = x @ model.parameters[0] + model.parameters[1]
    assert margin >= 1e-3 and np.abs(z).min() == margin


def test_cli_exits_1_with_the_failing_rows(monkeypatch, capsys):
    monkeypatch.setattr(activations.Tanh, "backward", _wrong_tanh_derivative)
    code = main(["gradcheck", "--hidden", "6,6", "--activation", "tanh", "--inputs", "6", "--classes", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out
    assert "gradient check failed for W1 (finite differences)" in captured.err
