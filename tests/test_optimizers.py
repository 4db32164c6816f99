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
