"""fcnet.trace: one example or a small batch followed through every layer, equal to what training computes."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.gradcheck import gradcheck


def model(hidden=("relu", "tanh"), output="softmax", loss="sparse_categorical_crossentropy", l2=None):
    layers = [fcnet.Dense(7, hidden[0], input_dim=5, kernel_regularizer=l2),
              *(fcnet.Dense(6, a) for a in hidden[1:]), fcnet.Dense(3, output)]
    net = fcnet.Sequential(layers, seed=3, dtype="float64")
    net.compile("sgd", loss)
    return net


@pytest.mark.parametrize("hidden, output, loss, l2", [
    (("relu", "tanh"), "softmax", "sparse_categorical_crossentropy", None),
    (("sigmoid", "gelu"), "linear", "mse", None),
    (("leaky_relu",), "softmax", "sparse_categorical_crossentropy", 0.01),
    (("swish",), "sigmoid", "binary_crossentropy", None),
])
def test_the_trace_is_what_training_computes(hidden, output, loss, l2):
    rng = np.random.default_rng(0)
    net = model(hidden, output, loss, fcnet.regularizers.L2(l2) if l2 else None)
    x = rng.normal(size=(4, 5))
    y = rng.integers(0, 3, 4) if loss.startswith("sparse") else (rng.random((4, 3)) < 0.5).astype(float)
    before = net.get_weights()
    t = fcnet.trace(net, x, y)
    value, grads = net.loss_and_gradients(x, y)
    assert t.loss == pytest.approx(value, rel=1e-12)
    for g, r in zip(t.gradients, grads):
        assert_allclose(g, r, rtol=1e-10, atol=1e-14)
    assert_allclose(t.output, net.predict(x), rtol=1e-12)
    for layer, traced in zip(net.layers, t.layers):  # each record is the layer's own forward pass
        assert_allclose(traced.z, traced.x @ layer.params["W"] + layer.params["b"], rtol=1e-12)
        assert_allclose(traced.a, layer(traced.x), rtol=1e-12)
        assert_allclose(traced.db, traced.delta.sum(axis=0), rtol=1e-12)
    for below, above in zip(t.layers, t.layers[1:]):
        assert_array_equal(above.x, below.a)  # the next layer reads this one's output
    assert all(np.array_equal(a, b) for a, b in zip(before, net.get_weights()))  # nothing changed


def test_one_example_and_a_table_of_sizes():
    net = model()
    x = np.random.default_rng(1).normal(size=5)
    t = fcnet.trace(net, x, 2)
    assert t.layers[0].x.shape == (1, 5) and t.layers[-1].delta.shape == (1, 3)
    p = t.output[0]
    assert_allclose(t.layers[-1].delta[0], p - np.eye(3)[2], rtol=1e-12)  # the fused softmax: δ = p − onehot
    assert gradcheck(net, x[None], [2]).passed
    text = str(t)
    assert text.startswith("loss ") and "δ = dL/dz" in text and len(text.splitlines()) == 2 + len(net.layers)


def test_a_layer_is_callable_as_in_keras_and_trace_refuses_what_it_does_not_follow():
    net = model()
    x = np.random.default_rng(2).normal(size=(3, 5))
    hidden = net.layers[0](x)
    assert_allclose(hidden, np.maximum(x @ net.layers[0].params["W"] + net.layers[0].params["b"], 0))
    assert_allclose(net.layers[0](x[0]), hidden[0])
    assert_allclose(net.layers[2](net.layers[1](hidden)), net.predict(x), rtol=1e-12)
    with pytest.raises(ValueError, match="not built"):
        fcnet.Dense(3)(x)
    dropped = fcnet.Sequential([fcnet.Dense(4, "relu", input_dim=5), fcnet.Dropout(0.5), fcnet.Dense(3, "softmax")])
    dropped.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="trace follows plain Dense layers"):
        fcnet.trace(dropped, x, [0, 1, 2])
