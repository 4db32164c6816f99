"""The five seed notebooks' models, trained through fcnet on the real Fashion-MNIST (MNIST is offline here)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytestmark = [pytest.mark.e2e]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _real_data(fashion):
    """Load Fashion-MNIST once for the session (the examples load it by name)."""


def test_seed000_sgd_sigmoid_then_one_gradient_step(capsys):
    result = example("seed000_keras_sgd").main("fashion-mnist", epochs=2, verbose=0)
    assert set(result["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result["test"].accuracy > 0.70
    before, after = result["step_losses"]
    assert after < before  # one full-batch gradient step lowers the full-batch loss
    assert result["final_test"].accuracy >= result["test"].accuracy - 0.01


def test_seed001_lab_prints_per_epoch_table(capsys):
    result = example("seed001_lab").main("fashion-mnist", epochs=3)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 3 and "total training time" in out and "test accuracy" in out
    assert result["history"]["accuracy"][-1] > 0.86
    assert result["test"].accuracy > 0.84


def test_seed002_baseline_and_deeper_reach_the_seed_accuracy():
    result = example("seed002_fashion").main()
    assert result["baseline"].accuracy >= 0.855  # seed: 0.8589 in 3 epochs
    assert result["deeper"].accuracy >= 0.875  # seed: 0.8812 in 10 epochs


def test_seed002_gradient_tape_examples():
    module = example("seed002_fashion")
    assert module.square_derivative(3.0) == 6.0
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    dw, db = module.linear_gradients(x, w, b)
    r = x @ w + b  # closed form of d/dW, d/db of mean over all entries of (xW + b)²
    assert_allclose(dw, 2 * x.T @ r / r.size, rtol=1e-13)
    assert_allclose(db, 2 * r.sum(axis=0) / r.size, rtol=1e-13)


def test_seed003_rmsprop_469_updates_per_epoch():
    result = example("seed003_chollet").main("fashion-mnist", epochs=1)
    assert result["updates"] == math.ceil(60000 / 128) == 469
    assert result["test"].accuracy > 0.80


def test_seed004_adam_predict_argmax(capsys):
    result = example("seed004_adam").main("fashion-mnist", epochs=2)
    assert result["test"].accuracy > 0.85
    assert (result["predicted"] == result["true"]).mean() >= 0.7
    assert "True: Ankle boot  Pred: Ankle boot" in capsys.readouterr().out  # the first test image
