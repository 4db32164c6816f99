import math
import warnings

import numpy as np
import pytest
from conftest import synthetic_images, tiny_data, tiny_net
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.errors import DataError


def lab_model(seed=0, dtype="float32", hidden=300, n_in=784):
    return fcnet.Sequential([fcnet.Dense(hidden, activation="relu", input_dim=n_in),
                             fcnet.Dense(10, activation="softmax")], seed=seed, dtype=dtype)


def small_data(n=256, seed=0):
    x, y = synthetic_images(n, np.random.default_rng(seed))
    return x, y


def test_parameters_are_W_b_pairs_with_keras_shapes_and_he_init():
    model = lab_model()
    shapes = [p.shape for p in model.parameters]
    assert shapes == [(784, 300), (300,), (300, 10), (10,)]
    assert all(p.dtype == np.float32 for p in model.parameters)
    W1 = model.parameters[0]
    assert abs(W1.std() - math.sqrt(2 / 784)) < 0.05 * math.sqrt(2 / 784)
    assert np.abs(W1).max() <= 2 * math.sqrt(2 / 784) / 0.8796 + 1e-6  # truncated at two std
    assert model.count_params() == 238_510


@pytest.mark.parametrize("name, std, bound", [
    ("he_normal", math.sqrt(2 / 400), 2 * math.sqrt(2 / 400) / 0.8796),
    ("he_uniform", math.sqrt(2 / 400), math.sqrt(6 / 400)),
    ("glorot_normal", math.sqrt(2 / 700), 2 * math.sqrt(2 / 700) / 0.8796),
    ("glorot_uniform", math.sqrt(2 / 700), math.sqrt(6 / 700)),
    ("lecun_normal", math.sqrt(1 / 400), 2 * math.sqrt(1 / 400) / 0.8796),
])
def test_initializers_have_keras_variances_and_bounds(name, std, bound):
    layer = fcnet.Dense(300, "relu", input_dim=400, kernel_initializer=name)
    model = fcnet.Sequential([layer], seed=0, dtype="float64")
    w = model.parameters[0]  # 120 000 draws: the standard deviation within 1 %
    assert abs(w.std() - std) < 0.01 * std and np.abs(w).max() <= bound + 1e-12 and abs(w.mean()) < 0.01 * std
    assert np.abs(w).max() > 0.95 * bound  # the whole range is used (uniform), or the truncation reached


def test_loss_and_gradients_match_central_differences_in_float64():
    rng = np.random.default_rng(0)
    model = fcnet.Sequential([fcnet.Dense(5, "tanh", input_dim=4), fcnet.Dense(4, "sigmoid"),
                              fcnet.Dense(3, "softmax")], seed=1, dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    _, grads = model.loss_and_gradients(x, y)
    eps = 1e-6
    for p, g in zip(model.parameters, grads):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp = model.loss_and_gradients(x, y)[0]
            p[idx] = old - eps
            lm = model.loss_and_gradients(x, y)[0]
            p[idx] = old
            numeric[idx] = (lp - lm) / (2 * eps)
        assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


def test_fused_softmax_equals_linear_output_with_from_logits():
    x, y = small_data(32)
    fused = lab_model(dtype="float64", hidden=16)
    fused.compile("sgd", "sparse_categorical_crossentropy")
    logits = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=784), fcnet.Dense(10)], dtype="float64")
    logits.compile("sgd", fcnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits.set_weights(fused.get_weights())
    l1, g1 = fused.loss_and_gradients(x, y)
    l2, g2 = logits.loss_and_gradients(x, y)
    assert l1 == pytest.approx(l2, rel=1e-13)
    for a, b in zip(g1, g2):
        assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_apply_gradients_is_the_gradient_tape_step():
    x, y = small_data(64)
    model = lab_model(hidden=32)
    model.compile(fcnet.SGD(lr=0.5), "sparse_categorical_crossentropy")
    before = model.get_weights()
    loss0, grads = model.loss_and_gradients(x, y)
    model.optimizer.apply_gradients(zip(grads, model.parameters))
    for w0, g, w1 in zip(before, grads, model.parameters):
        assert_allclose(w1, w0 - np.float32(0.5) * g, rtol=1e-6)
    assert model.loss_and_gradients(x, y)[0] < loss0


def test_uint8_inputs_are_scaled_like_floats_divided_by_255():
    x, y = small_data(16)
    model = lab_model(hidden=8, dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert_allclose(model.predict(x), model.predict(x.astype(np.float64) / 255), rtol=1e-12)
    # and 28x28 images are flattened to the model's 784 inputs
    assert model.predict(x.reshape(16, 28, 28)).shape == (16, 10)


def test_fit_learns_and_reports_history_keys_and_steps():
    x, y = small_data(500)
    model = lab_model(hidden=32)
    model.compile(fcnet.SGD(lr=0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])

    class CountSteps(fcnet.Callback):
        steps = 0

        def on_batch_end(self, batch, logs):
            self.steps += 1

    counter = CountSteps()
    history = model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0, callbacks=[counter])
    assert counter.steps == 3 * math.ceil(400 / 64)  # the last partial batch is used
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    ev = model.evaluate(x[400:], y[400:])
    assert isinstance(ev, fcnet.Evaluation)
    assert ev.loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)


def test_same_seed_same_run_different_seed_different_run():
    x, y = small_data(300)

    def run(seed):
        model = lab_model(seed=seed, hidden=16)
        model.compile(fcnet.SGD(lr=0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        return model.get_weights()

    for a, b in zip(run(7), run(7)):
        assert_array_equal(a, b)
    assert not np.array_equal(run(7)[0], run(8)[0])


def test_shuffling_changes_the_order_every_epoch():
    x, y = small_data(100)
    model = lab_model(hidden=4)
    model.compile("sgd", "sparse_categorical_crossentropy")
    orders = []
    original = model.forward_backward

    def spy(xb, yb, sample_weight=None):
        orders.append(yb.copy())
        return original(xb, yb, sample_weight)

    model.forward_backward = spy
    model.fit(x, y, epochs=2, batch_size=100, verbose=0, engine="numpy")
    assert not np.array_equal(orders[0], orders[1])
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(y)
    orders.clear()
    model.fit(x, y, epochs=1, batch_size=100, verbose=0, shuffle=False, engine="numpy")
    assert_array_equal(orders[0], y)


def test_predict_and_predict_classes():
    x, y = small_data(50)
    model = lab_model(hidden=8)
    model.compile("sgd", "sparse_categorical_crossentropy")
    p = model.predict(x, batch_size=7)
    assert p.shape == (50, 10)
    assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    assert_array_equal(model.predict_classes(x), p.argmax(axis=1))


def test_save_and_load_round_trip_predicts_bit_identically(tmp_path):
    x, y = small_data(200)
    model = lab_model(hidden=16)
    model.compile(fcnet.Adam(lr=1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.metadata = {"dataset": "synthetic"}
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.metadata == {"dataset": "synthetic"}
    # training continues identically: optimizer moments were saved too
    loaded.rng = np.random.default_rng(5)
    model.rng = np.random.default_rng(5)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for a, b in zip(model.parameters, loaded.parameters):
        assert_array_equal(a, b)


def test_summary_lists_layers_and_parameter_counts(capsys):
    text = lab_model().summary(print_fn=lambda s: None)
    assert "(None, 300)" in text and "235,500" in text and "3,010" in text and "Total params: 238,510" in text
    assert lab_model().summary() is None and capsys.readouterr().out == text + "\n"  # printed once, as Keras


@pytest.mark.slow
def test_any_depth_and_every_optimizer_and_loss_trains():
    x, y = small_data(300)
    for opt in ("sgd", "adam", "rmsprop"):
        for loss in ("sparse_categorical_crossentropy", "categorical_crossentropy", "mse"):
            model = fcnet.Sequential([fcnet.Dense(32, "relu"), fcnet.Dense(16, "tanh"), fcnet.Dense(16, "leaky_relu"),
                                      fcnet.Dense(10, "softmax")], seed=0)
            model.compile(fcnet.optimizers.get({"name": opt, "learning_rate": 0.05 if opt == "sgd" else 0.003}),
                          loss, metrics=["accuracy"])
            h = model.fit(x, y, epochs=4, batch_size=32, verbose=0)
            assert h.history["loss"][-1] < h.history["loss"][0], (opt, loss)


def test_bad_inputs_raise_clear_errors():
    model = lab_model(hidden=4)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = small_data(10)
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, found 0..10"):
        model.fit(x, np.append(y[:-1], 10), verbose=0)
    with pytest.raises(ValueError, match="inputs have 100 features but the model expects 784"):
        model.fit(np.zeros((10, 100)), y, verbose=0)
    with pytest.raises(ValueError, match="10 inputs but 9 targets"):
        model.fit(x, y[:9], verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.full((10, 784), np.nan), y, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="takes integer labels"):
        model.fit(x, np.eye(10)[y], verbose=0)
    bad = fcnet.Sequential([fcnet.Dense(10, "relu", input_dim=3)])
    with pytest.raises(ValueError, match="needs a softmax output layer"):
        bad.compile("sgd", "sparse_categorical_crossentropy")


def test_divergence_stops_training_with_the_epoch_and_batch():
    x, y = small_data(200)
    model = lab_model(hidden=32)
    model.compile(fcnet.SGD(lr=1e6), "sparse_categorical_crossentropy")
    with pytest.raises(fcnet.DivergenceError, match=r"at epoch \d+, batch \d+.*lower learning rate"):
        model.fit(x, y, epochs=5, batch_size=16, verbose=0)


def test_learning_rate_decay_callback_multiplies_the_rate_every_epoch():
    from fcnet.callbacks import LearningRateDecay

    x, y = small_data(64)
    model = lab_model(hidden=8)
    model.compile(fcnet.SGD(lr=0.1), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LearningRateDecay(0.5)])
    assert history.history["lr"] == [0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == pytest.approx(0.0125)
    with pytest.raises(ValueError, match="decay factor"):
        LearningRateDecay(1.5)


def test_predict_proba_is_the_softmax_of_a_logits_model():
    x, _ = small_data(20)
    soft = lab_model(hidden=8, dtype="float64")
    logits = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=784), fcnet.Dense(10)], dtype="float64")
    logits.set_weights(soft.get_weights())
    assert_array_equal(soft.predict_proba(x), soft.predict(x))
    assert_allclose(logits.predict_proba(x), soft.predict(x), rtol=1e-12)


def test_keras_spellings_and_methods():
    x, y = tiny_data()
    model = tiny_net(optimizer="Adam")
    model.compile("Adam", "SparseCategoricalCrossentropy", metrics=["accuracy"])
    assert isinstance(model.optimizer, fcnet.Adam) and model.loss.name == "sparse_categorical_crossentropy"
    assert isinstance(fcnet.optimizers.get("RMSprop"), fcnet.RMSprop)
    assert isinstance(fcnet.optimizers.get("AdamW"), fcnet.optimizers.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer 'Adagrad'; choose from sgd, adam, adamw, rmsprop"):
        fcnet.optimizers.get("Adagrad")
    w, b = model.layers[0].get_weights()
    assert w.shape == (12, 8) and b.shape == (8,)
    model.layers[0].set_weights([w * 0, b + 1])
    assert_array_equal(model.parameters[1], np.ones(8, np.float32))
    with pytest.raises(ValueError, match="expected 2 arrays"):
        model.layers[0].set_weights([w])
    assert_array_equal(model(x[:5]), model.predict(x[:5], verbose=0))
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy"} and result["loss"] == model.evaluate(x, y).loss


def test_evaluate_verbose_prints_its_result(capsys):
    x, y = tiny_data()
    ev = tiny_net().evaluate(x, y, verbose=1)
    expected = f"evaluate: loss {ev.loss:.4f}  accuracy {ev.accuracy:.4f}  (120 examples)"
    assert capsys.readouterr().out.strip() == expected


def test_save_weights_and_load_weights(tmp_path):
    a, b = tiny_net(seed=0), tiny_net(seed=1)
    a.save_weights(tmp_path / "w.npz")
    b.load_weights(tmp_path / "w.npz")
    for p, q in zip(a.parameters, b.parameters):
        assert_array_equal(p, q)
    wide = fcnet.Sequential([fcnet.Dense(9, "relu", input_dim=12), fcnet.Dense(3, "softmax")])
    with pytest.raises(DataError, match="cannot load these weights into this model"):
        wide.load_weights(tmp_path / "w.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(DataError, match="cannot load"):
        b.load_weights(tmp_path / "junk.npz")


@pytest.mark.slow
def test_integer_pixels_that_are_not_uint8_are_warned_about():
    x, y = tiny_data()
    with pytest.warns(UserWarning, match="inputs are int64 integers up to 255 and are used as they are"):
        tiny_net().fit(x.astype(np.int64).tolist(), y, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_net().fit(x, y, epochs=1, verbose=0)  # uint8: scaled, no warning
        tiny_net().predict((x > 128).astype(np.int64))  # 0/1 integers: nothing to scale
