import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet import optimizers

G1 = np.array([0.5, -1.0, 2.0])
G2 = np.array([-0.25, 0.5, 1.0])
P0 = np.array([1.0, 2.0, -3.0])


def _run(opt, grads):
    p = P0.copy()
    for g in grads:
        opt.apply_gradients([(g, p)])
    return p


def test_sgd_plain_step():
    assert_allclose(_run(fcnet.SGD(lr=0.1), [G1]), P0 - 0.1 * G1, rtol=1e-15)


def test_sgd_momentum_two_steps_by_hand():
    v1 = -0.1 * G1
    v2 = 0.9 * v1 - 0.1 * G2
    assert_allclose(_run(fcnet.SGD(lr=0.1, momentum=0.9), [G1, G2]), P0 + v1 + v2, rtol=1e-15)


def test_sgd_nesterov_two_steps_by_hand():
    v1 = -0.1 * G1
    p1 = P0 + 0.9 * v1 - 0.1 * G1
    v2 = 0.9 * v1 - 0.1 * G2
    p2 = p1 + 0.9 * v2 - 0.1 * G2
    assert_allclose(_run(fcnet.SGD(lr=0.1, momentum=0.9, nesterov=True), [G1, G2]), p2, rtol=1e-15)


def test_adam_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    m = v = np.zeros(3)
    p = P0.copy()
    for t, g in enumerate([G1, G2], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    assert_allclose(_run(fcnet.Adam(lr=lr), [G1, G2]), p, rtol=1e-14)


def test_adam_first_step_moves_each_weight_by_about_lr():
    # With bias correction the first step is lr * g / (|g| + eps') = ±lr.
    assert_allclose(_run(fcnet.Adam(learning_rate=0.01), [G1]), P0 - 0.01 * np.sign(G1), rtol=1e-6)


@pytest.mark.parametrize("form", ["keras", "torch"])
def test_rmsprop_two_steps_by_hand(form):
    lr, rho, eps = 0.01, 0.9, 1e-3  # an epsilon large enough for its placement to show
    v, p = np.zeros(3), P0.copy()
    for g in [G1, G2]:
        v = rho * v + (1 - rho) * g * g
        p = p - lr * g / (np.sqrt(v + eps) if form == "keras" else np.sqrt(v) + eps)
    assert_allclose(_run(fcnet.RMSprop(lr=lr, eps=eps, epsilon_form=form), [G1, G2]), p, rtol=1e-14)


def test_keras_defaults():
    assert optimizers.get("sgd").get_config() == {"name": "sgd", "learning_rate": 0.01, "momentum": 0.0,
                                                  "nesterov": False}
    assert optimizers.get("adam").get_config() == {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9,
                                                   "beta_2": 0.999, "epsilon": 1e-7}
    assert optimizers.get("rmsprop").get_config() == {"name": "rmsprop", "learning_rate": 0.001, "rho": 0.9,
                                                      "epsilon": 1e-7}


def test_state_is_per_parameter_and_survives_get_set_state():
    a, b = np.ones(2), np.ones(3)
    opt = fcnet.Adam(lr=0.1)
    opt.apply_gradients([(np.full(2, 1.0), a), (np.full(3, -1.0), b)])
    state = {k: v.copy() for k, v in opt.get_state([a, b]).items()}
    assert set(state) == {"iterations", "m_0", "v_0", "m_1", "v_1"}
    fresh = fcnet.Adam(lr=0.1)
    a2, b2 = a.copy(), b.copy()
    fresh.set_state([a2, b2], state)
    opt.apply_gradients([(np.full(2, 0.5), a), (np.full(3, 0.5), b)])
    fresh.apply_gradients([(np.full(2, 0.5), a2), (np.full(3, 0.5), b2)])
    assert_allclose(a2, a, rtol=0)
    assert_allclose(b2, b, rtol=0)


def test_shape_mismatch_and_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="gradient of shape"):
        fcnet.SGD().apply_gradients([(np.ones(2), np.ones(3))])
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        fcnet.SGD(lr=-1)
    with pytest.raises(ValueError, match="momentum must be in"):
        fcnet.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        optimizers.get("adagrad")


# -- Keras' options: decoupled weight decay and gradient clipping ---------------------------------------------

def test_decoupled_weight_decay_with_momentum_two_steps_by_hand():
    lr, mu, wd = 0.1, 0.9, 0.5
    p1 = P0 * (1 - lr * wd)
    v1 = -lr * G1
    p1 = p1 + v1
    p2 = p1 * (1 - lr * wd)
    v2 = mu * v1 - lr * G2
    assert_allclose(_run(fcnet.SGD(lr=lr, momentum=mu, weight_decay=wd), [G1, G2]), p2 + v2, rtol=1e-15)


def test_clipping_by_value_norm_and_global_norm_by_hand():
    # G1 has norm sqrt(5.25) ≈ 2.29: clipnorm 1 scales it to norm 1, clipvalue 0.75 cuts its entries
    assert_allclose(_run(fcnet.SGD(lr=1.0, clipnorm=1.0), [G1]), P0 - G1 / np.linalg.norm(G1), rtol=1e-15)
    assert_allclose(_run(fcnet.SGD(lr=1.0, clipnorm=10.0), [G1]), P0 - G1, rtol=1e-15)  # under the limit: as is
    assert_allclose(_run(fcnet.SGD(lr=1.0, clipvalue=0.75), [G1]), P0 - np.clip(G1, -0.75, 0.75), rtol=1e-15)
    a, b = np.zeros(3), np.zeros(2)
    g_a, g_b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 4.0])  # global norm 5
    fcnet.SGD(lr=1.0, global_clipnorm=1.0).apply_gradients([(g_a, a), (g_b, b)])
    assert_allclose(a, -g_a / 5, rtol=1e-15) and assert_allclose(b, -g_b / 5, rtol=1e-15)
    a, b = np.zeros(3), np.zeros(2)
    fcnet.SGD(lr=1.0, clipnorm=1.0).apply_gradients([(g_a, a), (g_b, b)])  # each array on its own
    assert_allclose(a, -g_a / 3, rtol=1e-15) and assert_allclose(b, -g_b / 4, rtol=1e-15)
    assert_allclose(g_a, [3.0, 0.0, 0.0])  # the caller's gradients are left as they were


@pytest.mark.slow
def test_adamw_is_adam_with_keras_default_decay_and_options_survive_config_and_saving(tmp_path):
    assert optimizers.AdamW().get_config()["weight_decay"] == 0.004
    assert_allclose(_run(optimizers.AdamW(lr=0.01, weight_decay=0.3), [G1, G2]),
                    _run(fcnet.Adam(lr=0.01, weight_decay=0.3), [G1, G2]), rtol=0)
    for opt in (optimizers.AdamW(lr=0.01, weight_decay=0.0, clipnorm=2.0), fcnet.RMSprop(clipvalue=0.5),
                fcnet.SGD(momentum=0.5, weight_decay=1e-4, global_clipnorm=3.0)):
        again = optimizers.get(opt.get_config())
        assert type(again) is type(opt) and again.get_config() == opt.get_config()
    model = fcnet.Sequential([fcnet.Dense(4, "relu", input_dim=3), fcnet.Dense(2, "softmax")], seed=0)
    model.compile(optimizers.AdamW(weight_decay=0.01, clipnorm=1.0), "sparse_categorical_crossentropy")
    model.fit(np.random.default_rng(0).random((20, 3)), np.arange(20) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_config() == model.optimizer.get_config() and loaded.optimizer.name == "adamw"


def test_bad_options_are_refused_in_one_line():
    for kwargs, message in (({"weight_decay": -1}, "weight_decay must be a number ≥ 0"),
                            ({"clipnorm": 0}, "clipnorm must be a positive number"),
                            ({"clipvalue": float("nan")}, "clipvalue must be a positive number"),
                            ({"clipnorm": 1, "global_clipnorm": 1}, "cannot both be set")):
        with pytest.raises(ValueError, match=message):
            fcnet.Adam(**kwargs)
    with pytest.raises(TypeError):
        fcnet.SGD(clip_norm=1.0)  # a misspelt option is not swallowed


def test_the_cpu_engine_compiles_every_option_and_the_gpu_engine_none():
    pytest.importorskip("numba")
    from fcnet.engines import choose_engine, cuda

    x, y = np.random.default_rng(0).random((64, 6)), np.arange(64) % 3
    for opt in (fcnet.Adam(weight_decay=0.01), optimizers.AdamW(), fcnet.SGD(clipnorm=1.0),
                fcnet.RMSprop(clipvalue=0.1), fcnet.SGD(global_clipnorm=0.5)):
        model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=6), fcnet.Dense(3, "softmax")], seed=0)
        model.compile(opt, "sparse_categorical_crossentropy")
        assert choose_engine(model, y) == "numba"  # tests/engines/test_parity.py compares the weights with NumPy's
        assert model.fit(x, y, epochs=1, verbose=0).engine == "numba"
        assert "is not compiled" in cuda.unsupported(model, y)


def test_subnormal_state_is_flushed_and_the_weights_do_not_notice(monkeypatch):
    """Adam's first moment decays by 0.9 a step where the gradient stays 0: within ~800 steps it is subnormal in
    float32 (slow arithmetic). Flushed every FLUSH_EVERY steps, it is 0 instead, and the weights are the same."""
    grads = [np.array([1e-3, 0.5, -2.0], dtype=np.float32)] + [np.array([0.0, 0.5, -2.0], dtype=np.float32)] * 1200

    def run():
        opt, p = fcnet.Adam(lr=0.01), np.array([0.3, -0.2, 0.1], dtype=np.float32)
        for g in grads:
            opt.apply_gradients([(g, p)])
        return p, opt.slots(p)["m"]

    flushed, m = run()
    assert m[0] == 0 and len(grads) % optimizers.FLUSH_EVERY == 1
    monkeypatch.setattr(optimizers, "FLUSH_EVERY", 10**9)
    kept, m_kept = run()
    assert 0 < abs(m_kept[0]) < np.finfo(np.float32).tiny  # without the flush: subnormal
    assert_allclose(flushed, kept, rtol=0, atol=0)
