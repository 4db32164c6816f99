import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet import activations

Z = np.array([[-2.0, -0.5, 0.3, 1.7], [3.0, -1.0, 0.0, 0.25]])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("linear", Z),
        ("relu", [[0, 0, 0.3, 1.7], [3.0, 0, 0, 0.25]]),
        ("leaky_relu", [[-0.4, -0.1, 0.3, 1.7], [3.0, -0.2, 0, 0.25]]),
        ("sigmoid", 1 / (1 + np.exp(-Z))),
        ("tanh", np.tanh(Z)),
        ("swish", Z / (1 + np.exp(-Z))),
    ],
)
def test_forward_matches_hand_computed_values(name, expected):
    assert_allclose(activations.get(name).forward(Z), expected, rtol=1e-15)


def test_softmax_rows_are_probabilities_matching_the_definition():
    a = activations.Softmax().forward(Z)
    assert_allclose(a, np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True), rtol=1e-14)
    assert_allclose(a.sum(axis=1), 1.0)


def test_softmax_and_sigmoid_do_not_overflow_on_extreme_inputs():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        a = activations.Softmax().forward(z)
        s = activations.Sigmoid().forward(z)
    assert_allclose(a, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert_allclose(s, [[1, 0, 0.5], [0, 0, 0]])


@pytest.mark.parametrize("name", activations.NAMES)
def test_backward_matches_central_differences(name):
    rng = np.random.default_rng(1)
    act = activations.get(name)
    z = rng.normal(size=(3, 5))
    z[np.abs(z) < 1e-3] = 0.5  # stay away from the ReLU kink
    da = rng.normal(size=z.shape)
    dz = act.backward(da.copy(), act.forward(z), z)
    numeric = np.zeros_like(z)
    eps = 1e-6
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        numeric[idx] = ((act.forward(zp) - act.forward(zm)) * da).sum() / (2 * eps)
    assert_allclose(dz, numeric, rtol=1e-7, atol=1e-9)


def test_relu_derivative_at_zero_is_zero():
    assert activations.ReLU().backward(np.ones((1, 1)), np.zeros((1, 1)))[0, 0] == 0


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'mish'; choose from linear, relu"):
        activations.get("mish")


def test_get_accepts_none_config_and_instances():
    assert activations.get(None).name == "linear"
    assert activations.get({"name": "leaky_relu", "alpha": 0.1}).alpha == 0.1
    relu = activations.ReLU()
    assert activations.get(relu) is relu


@pytest.mark.parametrize("name", activations.NAMES)
def test_in_place_forward_equals_out_of_place(name):
    act = activations.get(name)
    z = np.random.default_rng(2).normal(size=(4, 6))
    expected = act.forward(z.copy())
    buffer = z.copy()
    assert act.forward(buffer, out=buffer) is buffer
    assert_allclose(buffer, expected, rtol=1e-15)


def test_gelu_is_z_times_the_normal_distribution_function_in_both_tails():
    import math

    z = np.array([-40.0, -10.0, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 10.0])
    exact = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in z])
    assert_allclose(activations.GELU().forward(z), exact, rtol=1e-13)
    assert activations.GELU().forward(np.array([-10.0]))[0] < 0  # the lower tail keeps its relative precision
    x = np.linspace(-6, 6, 1201)
    assert_allclose(activations.erfc(x), [math.erfc(v) for v in x], rtol=1e-14)
    assert activations.get("silu").name == "swish"


@pytest.mark.parametrize("name", ["gelu", "swish"])
def test_activations_whose_derivative_needs_z_keep_it_in_a_dense_layer(name):
    """The layer must not overwrite z while training: the backward pass reads it."""
    rng = np.random.default_rng(3)
    model = fcnet.Sequential([fcnet.Dense(5, name, input_dim=4), fcnet.Dense(2, None)], seed=0, dtype="float64")
    model.compile("sgd", "mse")
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    from fcnet.gradcheck import gradcheck

    assert gradcheck(model, x, y).passed
    assert activations.get(name).needs_z


@pytest.mark.parametrize("name, bug", [
    ("gelu", lambda self, da, a, z=None: da * (0.5 * (1 + np.tanh(z)))),  # Φ's stand-in, and the z φ(z) term lost
    ("swish", lambda self, da, a, z=None: da * (1 / (1 + np.exp(-z)))),  # σ(z) alone: the product rule half done
])
def test_an_injected_bug_in_gelu_or_swish_fails_the_check(monkeypatch, name, bug):
    from fcnet.gradcheck import gradcheck

    rng = np.random.default_rng(5)
    model = fcnet.Sequential([fcnet.Dense(6, name, input_dim=4), fcnet.Dense(3, "softmax")], seed=0, dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    assert gradcheck(model, x, y).passed
    monkeypatch.setattr(type(activations.get(name)), "backward", bug)
    assert not gradcheck(model, x, y).passed
