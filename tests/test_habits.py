"""What a Keras user and a course notebook expect: per-epoch feedback anywhere, Keras' spellings and methods."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.callbacks import LivePlot, ProgressBar, progress_callbacks
from fcnet.errors import DataError


def small(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 12), dtype=np.uint8), rng.integers(0, 3, n)


def net(seed=0, optimizer="sgd"):
    model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=12), fcnet.Dense(3, "softmax")], seed=seed)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


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
    x, y = small()
    net().fit(x, y, epochs=2, batch_size=32, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss" in err and "accuracy" in err  # the finished bar keeps the metrics
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert [type(c).__name__ for c in progress_callbacks(1, 2, 4)] == ["EpochLog"]  # a log file: lines instead
    assert progress_callbacks(0, 2, 4) == []
    with pytest.raises(ValueError, match="verbose must be 'auto', 0, 1 or 2"):
        progress_callbacks(3, 2, 4)


def test_keras_spellings_and_methods():
    x, y = small()
    model = net(optimizer="Adam")
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
    x, y = small()
    ev = net().evaluate(x, y, verbose=1)
    expected = f"evaluate: loss {ev.loss:.4f}  accuracy {ev.accuracy:.4f}  (120 examples)"
    assert capsys.readouterr().out.strip() == expected


def test_save_weights_and_load_weights(tmp_path):
    a, b = net(seed=0), net(seed=1)
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


def test_class_weight_scales_each_examples_loss_and_gradient():
    x, y = small()
    weights = {0: 2.0, 2: 0.5}
    model, ref = net(), net()
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
    unweighted = net().fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert history.history["loss"] != unweighted.history["loss"]
    with pytest.raises(ValueError, match="class_weight: 7 is not a class in 0..2"):
        net().fit(x, y, class_weight={7: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="engine 'numba' cannot train this model: class weights are not compiled"):
        pytest.importorskip("numba")
        net().fit(x, y, class_weight=weights, verbose=0, engine="numba")


@pytest.mark.slow
def test_integer_pixels_that_are_not_uint8_are_warned_about():
    x, y = small()
    with pytest.warns(UserWarning, match="inputs are int64 integers up to 255 and are used as they are"):
        net().fit(x.astype(np.int64).tolist(), y, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net().fit(x, y, epochs=1, verbose=0)  # uint8: scaled, no warning
        net().predict((x > 128).astype(np.int64))  # 0/1 integers: nothing to scale


@pytest.mark.slow
def test_live_plot_redraws_the_curves_every_epoch(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = small()
    sizes = []

    class Watch(fcnet.Callback):
        def on_epoch_end(self, epoch, logs):
            sizes.append((tmp_path / "live.png").stat().st_size)

    net().fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LivePlot(tmp_path / "live.png"), Watch()])
    assert len(sizes) == 3 and all(s > 1000 for s in sizes) and len(set(sizes)) > 1
