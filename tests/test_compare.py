"""fcnet compare: the same network, initial weights and data order in fcnet, PyTorch, Keras and JAX."""


import numpy as np
import pytest
from conftest import synthetic_images

import fcnet
from fcnet.cli import main
from fcnet.compare import NotInstalled, make_runner


def _race(framework, optimizer):
    x, y = synthetic_images(512, np.random.default_rng(0))
    x = x.reshape(len(x), -1)
    model = fcnet.Sequential([fcnet.Dense(32, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    try:
        runners = [make_runner("fcnet", model, 32), make_runner(framework, model, 32)]
    except NotInstalled:
        pytest.skip(f"{framework} is not installed (pip install 'fcnet[{framework}]')")
    orders = np.random.default_rng(1)
    losses = {r.name: [] for r in runners}
    for _ in range(3):
        order = orders.permutation(len(x))
        for r in runners:
            losses[r.name].append(r.train_epoch(x, y, order)[1])
    return runners, losses, x, y


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras", "jax", "jax-eigen", "torch-compile"])
@pytest.mark.parametrize("optimizer", [fcnet.SGD(lr=0.1), fcnet.SGD(lr=0.05, momentum=0.9), fcnet.RMSprop(),
                                       fcnet.Adam(), fcnet.SGD(lr=0.05, momentum=0.9, nesterov=True)],
                         ids=["sgd", "momentum", "rmsprop", "adam", "nesterov"])
def test_same_start_same_order_same_losses(framework, optimizer):
    config = optimizer.get_config()
    if framework in ("jax", "jax-eigen", "torch-compile") and config["name"] == "rmsprop":
        pytest.skip("the functional contenders mirror SGD and Adam only")
    if framework == "torch-compile" and config["name"] == "sgd" and (not config["momentum"] or config["nesterov"]):
        pytest.skip("torch.compile takes ~30 s a network: momentum and Adam run its own code (the rest is JAX's)")
    if framework == "torch" and config["name"] in ("rmsprop", "adam"):
        config["epsilon_form"] = "torch"  # torch.optim places epsilon its own way
    runners, losses, x, y = _race(framework, fcnet.optimizers.get(config))
    np.testing.assert_allclose(losses["fcnet"], losses[framework], rtol=2e-4)
    np.testing.assert_allclose(runners[0].predict(x), runners[1].predict(x), atol=2e-4)
    assert runners[0].evaluate(x, y)[1] == pytest.approx(runners[1].evaluate(x, y)[1], abs=0.01)


@pytest.mark.slow
def test_cli_compare_reports_missing_frameworks_and_the_ratio(idx_dir, capsys, monkeypatch):
    from fcnet import compare

    def missing(model, batch_size):
        raise NotInstalled("keras")

    monkeypatch.setitem(compare.RUNNERS, "keras", missing)
    assert main(["compare", "--dataset", f"idx:{idx_dir}", "--hidden", "16", "--epochs", "2",
                 "--framework", "torch,keras"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "keras: not installed (pip install 'fcnet[keras]')" in captured.err
    rows = [line.split() for line in out.splitlines() if line.split()[1:2] in (["fcnet"], ["torch"])]
    assert [(r[0], r[1]) for r in rows] == [("1", "fcnet"), ("1", "torch"), ("2", "fcnet"), ("2", "torch")]
    assert rows[0][3] == rows[1][3]  # the same loss, to the printed digits
    assert "fcnet / torch = " in out
    assert f"(after the first): fcnet {rows[2][2]}, torch {rows[3][2]};" in out  # the compiling epoch left out


def test_unknown_framework_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["compare", "--framework", "mxnet"])
    assert info.value.code == 2


def test_compare_says_not_installed_on_stderr(data, capsys, monkeypatch):
    from fcnet import compare

    def missing(name, model, batch_size):
        raise compare.NotInstalled(name)

    monkeypatch.setattr(compare, "make_runner", missing)
    assert main(["compare", "--framework", "keras", "--dataset", f"idx:{data}", "--epochs", "1", "--hidden", "8"]) == 0
    captured = capsys.readouterr()
    assert "keras: not installed" in captured.err and "not installed" not in captured.out
