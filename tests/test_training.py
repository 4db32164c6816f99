"""The training loop (fcnet.training.fit): per-epoch feedback anywhere — a terminal, a notebook, a log file — and
class weights, as a Keras user and a course notebook expect."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import tiny_data, tiny_net
from numpy.testing import assert_allclose

from fcnet.callbacks import ProgressBar, progress_callbacks


@pytest.mark.slow
def test_fit_with_output_redirected_prints_one_line_per_epoch(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, fcnet
        x = np.random.default_rng(0).integers(0, 256, (200, 12), dtype=np.uint8)
        y = np.random.default_rng(1).integers(0, 3, 200)
        m = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=12), fcnet.Dense(3, "softmax")], seed=0)
        m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x, y, epochs=3, batch_size=32)
    """)
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, check=True, timeout=120)
    lines = (tmp_path / "out").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("loss" in line and "accuracy" in line and "time" in line for line in lines)
    assert (tmp_path / "err").read_text() == ""


def test_verbose_1_in_a_terminal_or_notebook_leaves_a_line_with_the_metrics(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # as inside a Jupyter kernel
    assert isinstance(progress_callbacks("auto", 2, 4)[0], ProgressBar)
    x, y = tiny_data()
    tiny_net().fit(x, y, epochs=2, batch_size=32, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss" in err and "accuracy" in err  # the finished bar keeps the metrics
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert [type(c).__name__ for c in progress_callbacks(1, 2, 4)] == ["EpochLog"]  # a log file: lines instead
    assert progress_callbacks(0, 2, 4) == []
    with pytest.raises(ValueError, match="verbose must be 'auto', 0, 1 or 2"):
        progress_callbacks(3, 2, 4)


def test_class_weight_scales_each_examples_loss_and_gradient():
    x, y = tiny_data()
    weights = {0: 2.0, 2: 0.5}
    model, ref = tiny_net(), tiny_net()
    xb, yb = model.to_float(x[:32]), y[:32]
    w = np.array([weights.get(int(c), 1.0) for c in yb])
    loss, _ = model.forward_backward(xb, yb, w)
    assert loss == pytest.approx(float(np.mean(w * ref.loss.per_example(ref.forward(xb)[0], yb))), rel=1e-6)
    # the weighted gradient equals a weighted sum of per-example gradients
    grads = [g.copy() for g in model.gradients]
    per_example = []
    for i in range(32):
        ref.forward_backward(xb[i:i + 1], yb[i:i + 1])
        per_example.append([w[i] * g / 32 for g in ref.gradients])
    for k, g in enumerate(grads):
        assert_allclose(g, sum(p[k] for p in per_example), rtol=1e-4, atol=1e-6)
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, class_weight=weights)
    assert history.engine == "numpy"
    unweighted = tiny_net().fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert history.history["loss"] != unweighted.history["loss"]
    with pytest.raises(ValueError, match="class_weight: 7 is not a class in 0..2"):
        tiny_net().fit(x, y, class_weight={7: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="engine 'numba' cannot train this model: class weights are not compiled"):
        pytest.importorskip("numba")
        tiny_net().fit(x, y, class_weight=weights, verbose=0, engine="numba")


