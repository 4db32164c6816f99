"""fcnet against PyTorch autograd and torch.optim, in float64 (torch comes with the dev extra)."""

import numpy as np
import pytest
from conftest import follow_torch  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

import fcnet
from fcnet import activations
from fcnet.torchcheck import torch_check, torch_optimizer

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'fcnet[torch]')")

LOSS_KINDS = ["sparse", "categorical", "sparse_logits", "categorical_logits", "mse"]


def make(hidden, activation, loss_kind, n_in, n_out, seed):
    logits = loss_kind.endswith("logits")
    layers = [fcnet.Dense(w, activation) for w in hidden] + [fcnet.Dense(n_out, None if logits else "softmax")]
    model = fcnet.Sequential(layers, seed=seed, dtype="float64")
    model.build(n_in)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.params["b"][:] = rng.normal(0, 0.3, layer.units)
    loss = {"sparse": "sparse_categorical_crossentropy", "categorical": "categorical_crossentropy", "mse": "mse",
            "sparse_logits": fcnet.losses.SparseCategoricalCrossentropy(from_logits=True),
            "categorical_logits": fcnet.losses.CategoricalCrossentropy(from_logits=True)}[loss_kind]
    model.compile("sgd", loss)
    return model, rng


@settings(max_examples=60, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 8), min_size=0, max_size=4),
    activation=st.sampled_from(activations.NAMES),
    loss_kind=st.sampled_from(LOSS_KINDS),
    n_in=st.integers(1, 6),
    n_out=st.integers(2, 5),
    batch_size=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_loss_and_gradients_equal_torch_autograd(hidden, activation, loss_kind, n_in, n_out, batch_size, seed):
    model, rng = make(hidden, activation, loss_kind, n_in, n_out, seed)
    x, y = rng.normal(size=(batch_size, n_in)), rng.integers(0, n_out, batch_size)
    if loss_kind.startswith("categorical"):
        y = rng.dirichlet(np.ones(n_out), size=batch_size)  # soft targets exercise the general formula
    result = torch_check(model, x, y)
    assert result.passed, result.table()
    assert result.max_rel_error < 1e-10


OPTIMIZERS = [
    fcnet.SGD(lr=0.1),
    fcnet.SGD(lr=0.05, momentum=0.9),
    fcnet.SGD(lr=0.05, momentum=0.9, nesterov=True),
    fcnet.Adam(lr=0.01, epsilon_form="torch"),
    fcnet.Adam(lr=0.01, beta_1=0.8, beta_2=0.99, eps=1e-8, epsilon_form="torch"),
    fcnet.RMSprop(lr=0.01, epsilon_form="torch"),
    fcnet.RMSprop(lr=0.01, rho=0.8, eps=1e-6, epsilon_form="torch"),
    fcnet.SGD(lr=0.05, weight_decay=0.1),
    fcnet.Adam(lr=0.01, epsilon_form="torch", weight_decay=0.1),
    fcnet.optimizers.AdamW(lr=0.01, epsilon_form="torch"),
]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: str(o.get_config()))
def test_trajectories_equal_torch_optim(optimizer):
    model, rng = make([8, 6], "tanh", "sparse", 5, 3, seed=1)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    params = [torch.tensor(p.copy(), requires_grad=True) for p in model.parameters]
    follow_torch(model, params, torch_optimizer(optimizer, params), rng)
    for mine, theirs in zip(model.parameters, params):
        assert_allclose(mine, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert not np.allclose(model.parameters[0], make([8, 6], "tanh", "sparse", 5, 3, seed=1)[0].parameters[0])


@pytest.mark.parametrize("option, value", [("clipnorm", 0.05), ("global_clipnorm", 0.08), ("clipvalue", 0.01)])
def test_clipped_trajectories_equal_torch_with_keras_clipping(option, value):
    """Keras' clipping formulas written on torch's gradients, then torch.optim.AdamW: fcnet's in-optimizer
    clipping gives the same weights (each limit is below the gradients' size, so every step clips)."""
    model, rng = make([8, 6], "tanh", "sparse", 5, 3, seed=2)
    model.compile(fcnet.Adam(lr=0.01, epsilon_form="torch", weight_decay=0.02, **{option: value}),
                  "sparse_categorical_crossentropy")
    params = [torch.tensor(p.copy(), requires_grad=True) for p in model.parameters]
    clipped = 0

    def clip(params):
        nonlocal clipped
        norms = [p.grad.norm() for p in params]
        if option == "clipvalue":
            clipped += sum(bool((p.grad.abs() > value).any()) for p in params)
            for p in params:
                p.grad.clamp_(-value, value)
        elif option == "clipnorm":
            clipped += sum(bool(n > value) for n in norms)
            for p, n in zip(params, norms):
                p.grad.mul_(value / max(float(n), value))
        else:
            total = float(torch.sqrt(sum(n**2 for n in norms)))
            clipped += total > value
            for p in params:
                p.grad.mul_(value / max(total, value))

    follow_torch(model, params, torch_optimizer(model.optimizer, params), rng, before_step=clip)
    assert clipped >= 25
    for mine, theirs in zip(model.parameters, params):
        assert_allclose(mine, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_weight_decay_after_the_step_instead_of_before_fails_the_torch_trajectory(monkeypatch):
    """An injected bug — decay applied to the updated weights — is caught by the AdamW comparison."""
    original = fcnet.optimizers.Optimizer.apply_gradients

    def late_decay(self, grads_and_params):
        pairs = list(grads_and_params)
        decay, self.weight_decay = self.weight_decay, None
        original(self, pairs)
        self.weight_decay = decay
        for _, p in pairs:
            p *= 1 - self.learning_rate * decay

    monkeypatch.setattr(fcnet.optimizers.Optimizer, "apply_gradients", late_decay)
    with pytest.raises(AssertionError):
        test_trajectories_equal_torch_optim(fcnet.optimizers.AdamW(lr=0.01, epsilon_form="torch", weight_decay=0.5))


def test_keras_adam_differs_from_torch_adam_only_by_epsilon_placement():
    # Keras' epsilon-hat form equals torch's with epsilon scaled by sqrt(1 - beta_2^t): with one step, exactly.
    g = np.array([0.3, -0.02, 1e-6])
    keras_p, torch_p = np.zeros(3), np.zeros(3)
    fcnet.Adam(lr=0.1, epsilon=1e-3).apply_gradients([(g, keras_p)])
    fcnet.Adam(lr=0.1, epsilon=1e-3 / np.sqrt(1 - 0.999), epsilon_form="torch").apply_gradients([(g, torch_p)])
    assert_allclose(keras_p, torch_p, rtol=1e-12)


def test_a_broken_backward_pass_fails_the_torch_check(monkeypatch):
    monkeypatch.setattr(activations.Tanh, "backward", lambda self, da, a, z=None: da * (1 - a))
    model, rng = make([6, 6], "tanh", "sparse", 6, 6, seed=0)
    result = torch_check(model, rng.normal(size=(8, 6)), rng.integers(0, 6, 8))
    assert not result.passed and result.max_rel_error > 1e-2
    assert result[0].passed  # the loss itself is right; its gradients are not


def test_cli_runs_both_checks(capsys):
    from fcnet.cli import main

    assert main(["gradcheck", "--hidden", "16", "--activation", "sigmoid", "--inputs", "12"]) == 0
    out = capsys.readouterr().out
    assert "finite differences" in out and "torch autograd (float64, tolerance 1e-10)" in out
