"""The BLAS shortcuts against the NumPy expressions they replace, and training with and without them."""

import numpy as np
import pytest
from conftest import synthetic_images
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet import blas


def test_numpys_own_openblas_is_found():
    assert blas.AVAILABLE  # NumPy's PyPI wheels bundle OpenBLAS; the dev set-up installs one


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("available", [True, False])
def test_axpy_axpby_match_numpy(dtype, available, monkeypatch):
    monkeypatch.setattr(blas, "AVAILABLE", available and blas.AVAILABLE)
    rng = np.random.default_rng(0)
    y, x = rng.normal(size=(300, 40)).astype(dtype), rng.normal(size=(300, 40)).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    expected = y + 0.3 * x
    assert_allclose(blas.axpy(y, x, 0.3), expected, rtol=tol, atol=tol)
    expected = -0.5 * x + 0.9 * y
    assert_allclose(blas.axpby(y, x, -0.5, 0.9), expected, rtol=tol, atol=tol)


def test_non_contiguous_operands_fall_back_to_numpy():
    y = np.zeros((600, 40))
    x = np.ones((40, 600)).T  # not C-contiguous
    assert_array_equal(blas.axpy(y, x, 2.0), np.full((600, 40), 2.0))


@pytest.mark.parametrize("optimizer", [fcnet.SGD(lr=0.1), fcnet.SGD(lr=0.1, momentum=0.9, nesterov=True),
                                       fcnet.Adam(), fcnet.RMSprop()], ids=lambda o: o.get_config()["name"])
def test_training_with_and_without_blas_agrees(optimizer, monkeypatch):
    x, y = synthetic_images(300, np.random.default_rng(0))

    def run():  # 784 x 32 weights: large enough for the BLAS path
        model = fcnet.Sequential([fcnet.Dense(32, "relu", input_dim=784), fcnet.Dense(10, "softmax")],
                                 seed=0, dtype="float64")
        model.compile(fcnet.optimizers.get(optimizer.get_config()), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return model.get_weights()

    with_blas = run()
    monkeypatch.setattr(blas, "AVAILABLE", False)
    for a, b in zip(with_blas, run()):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_plain_sgd_step_leaves_its_own_gradients_behind():
    x, y = synthetic_images(64, np.random.default_rng(1))
    x = x.reshape(64, -1)
    model = fcnet.Sequential([fcnet.Dense(16, "tanh", input_dim=784), fcnet.Dense(10, "softmax")],
                             seed=0, dtype="float64")
    model.compile(fcnet.SGD(lr=0.5), "sparse_categorical_crossentropy")
    before = model.get_weights()
    _, grads = model.loss_and_gradients(x, y)
    model.train_on_batch(model.to_float(x), y)
    for w0, g, w1, live in zip(before, grads, model.parameters, model.gradients):
        assert_allclose(w1, w0 - 0.5 * g, rtol=1e-12, atol=1e-15)
        assert_array_equal(live, g)  # model.gradients is this step's, never stale
