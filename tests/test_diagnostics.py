"""fcnet.diagnostics.Diagnostics: the same numbers on the NumPy and the compiled engine, equal to a direct NumPy
recomputation; the compiled engine stops where a callback needs exact weights; the GPU refuses; notices."""

from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fcnet
from fcnet.callbacks import Callback
from fcnet.diagnostics import Diagnostics
from fcnet.training import _sync_steps

pytest.importorskip("numba")


def data(n=330, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 20), dtype=np.uint8), rng.integers(0, 5, n)


def model(optimizer="adam"):
    net = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=20), fcnet.Dense(12, "tanh"),
                            fcnet.Dense(5, "softmax")], seed=0, dtype="float64")
    net.compile({"name": optimizer, "learning_rate": 0.01}, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


class Weights(Callback):
    """The kernels after every step (exact on the NumPy engine)."""

    def __init__(self):
        self.seen = {}

    def on_batch_end(self, batch, logs):
        self.seen[(self.model.optimizer.iterations, batch)] = [layer.params["W"].copy() for layer in self.model.layers]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_engine_records_the_same_diagnostics_as_numpy_recomputes_them(optimizer):
    x, y = data()
    probe = x[:64], y[:64]
    runs = {}
    for engine in ("numpy", "numba"):
        diag, weights = Diagnostics(*probe, every=4), Weights()
        net = model(optimizer)
        assert net.fit(x, y, epochs=3, batch_size=32, verbose=0, engine=engine, callbacks=[diag, weights]).engine \
            == engine
        runs[engine] = (diag, weights, net)
    (ref, seen, net), (compiled, _, _) = runs["numpy"], runs["numba"]
    assert [(r["epoch"], r["step"], r["iterations"]) for r in ref.records] == [
        (e, s, 11 * e + s + 1) for e in range(3) for s in (3, 7)]  # 11 steps an epoch: steps 3 and 7
    assert [(r["epoch"], r["step"]) for r in compiled.records] == [(r["epoch"], r["step"]) for r in ref.records]
    for a, b in zip(ref.records, compiled.records):
        for la, lb in zip(a["layers"], b["layers"]):
            for key, value in la.items():
                if isinstance(value, float):
                    assert lb[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key
                else:
                    assert lb[key] == value, key
    # direct recomputation: the update ratios from the kernels the NumPy engine had after each record's step and
    # the step before it; the rest from the final weights, which the last record (the epoch's step 7 of 11) is not
    xp = probe[0].astype(np.float64) / 255
    for record in ref.records:
        t, step = record["iterations"], record["step"]
        now, before = seen.seen[(t, step)], seen.seen[(t - 1, step - 1)]
        assert [layer["update_ratio"] for layer in record["layers"]] == pytest.approx(
            [np.linalg.norm(n - b) / np.linalg.norm(n) for n, b in zip(now, before)], rel=1e-12)
    final = Diagnostics(*probe)
    final.model = net
    first = final.measure()["layers"]
    a1 = np.maximum(xp @ net.layers[0].params["W"] + net.layers[0].params["b"], 0)
    assert first[0]["act_mean"] == pytest.approx(a1.mean(), rel=1e-12)
    assert first[0]["dead"] == pytest.approx(np.mean(np.all(a1 == 0, axis=0)))
    _, grads = net.loss_and_gradients(*probe)
    assert [layer["grad_norm"] for layer in first] == pytest.approx([np.linalg.norm(g) for g in grads[::2]],
                                                                   rel=1e-12)
    assert sum(first[1]["act_hist"]) == 64 * 12 and first[1]["saturated"] is not None and first[0]["dead"] is not None


def test_dead_and_saturated_units_are_counted():
    x, y = data(64)
    net = model()
    net.layers[0].params["b"][:8] = -1e3  # half the ReLU units can never fire
    net.layers[1].params["W"][...] *= 1e3  # tanh pushed to ±1
    diag = Diagnostics(x, y, every=1)
    diag.model = net
    stats = diag.measure()["layers"]
    assert stats[0]["dead"] >= 0.5 and stats[1]["saturated"] > 0.9 and stats[2]["dead"] is None


def test_the_compiled_engine_stops_where_a_callback_needs_the_exact_model(capsys):
    x, y = data()

    class Every3(Callback):
        def __init__(self):
            self.seen = []

        def sync_steps(self, steps):
            return range(2, steps, 3)

        def on_batch_end(self, batch, logs):
            if batch % 3 == 2:
                self.seen.append((self.model.optimizer.iterations, self.model.layers[0].params["W"].copy()))

    runs = []
    for engine in ("numpy", "numba"):
        cb = Every3()
        model("sgd").fit(x, y, epochs=2, batch_size=32, verbose=2, engine=engine, callbacks=[cb])
        runs.append(cb.seen)
    assert [t for t, _ in runs[1]] == [t for t, _ in runs[0]] == [3, 6, 9, 14, 17, 20]
    for (_, a), (_, b) in zip(*runs):
        assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())
    assert "Every3" not in capsys.readouterr().err  # it named its steps: no notice


def test_a_callback_reading_the_model_on_the_compiled_engine_gets_a_notice_and_the_gpu_refuses_sync_steps(capsys):
    x, y = data()

    class GradNorm(Callback):
        def on_batch_end(self, batch, logs):
            self.last = float(np.linalg.norm(self.model.layers[0].grads["W"]))

    class LossOnly(GradNorm):
        reads_weights = False

    model().fit(x, y, epochs=1, verbose=2, engine="numba", callbacks=[GradNorm(), LossOnly()])
    err = capsys.readouterr().err
    assert err.count("GradNorm.on_batch_end sees the model after each call of engine 'numba'") == 1
    assert "LossOnly" not in err
    model().fit(x, y, epochs=1, verbose=2, engine="numpy", callbacks=[GradNorm()])
    assert "GradNorm" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="Diagnostics reads the model between steps, and engine 'cuda'"):
        _sync_steps(SimpleNamespace(name="cuda"), [Diagnostics(x[:8], y[:8], every=5)], 11, 0)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        Diagnostics(x, y, every=0)


def test_the_histograms_count_as_numpy_does():
    from fcnet.diagnostics import ACT_BINS, GRAD_BINS, _counts

    v = np.random.default_rng(0).normal(0, 2, 5000)
    assert _counts(v, ACT_BINS) == np.histogram(np.clip(v, ACT_BINS[0], ACT_BINS[-1]), ACT_BINS)[0].tolist()
    logs = np.log10(np.abs(v)) * 3
    kept = logs[logs >= GRAD_BINS[0]]
    assert _counts(logs, GRAD_BINS, low=False) == np.histogram(np.minimum(kept, GRAD_BINS[-1]), GRAD_BINS)[0].tolist()
