"""The engine contract of fcnet.engines.base, run on every engine present (fcnet.engines.cuda where a GPU answers):
batches, the check before the update, randomness, what callbacks see, the choice of engine. What each formula
computes is tests/engines/test_parity.py's."""

import sys

import numpy as np
import pytest
from conftest import OPTIMIZERS, TOLERANCE, synthetic_images
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.callbacks import Callback
from fcnet.engines import choose_engine, engine_choice, make_engine
from fcnet.engines.base import STEP_ROWS
from fcnet.optimizers import SGD
from fcnet.training import train_epoch

try:
    import numba  # noqa: F401
except ImportError:
    HAVE_NUMBA = False
else:
    HAVE_NUMBA = True
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")


def _gpu():
    from fcnet.engines import cuda

    return cuda.unavailable() is None


GPU = _gpu()
COMPILED = ("numba",) * HAVE_NUMBA + ("cuda",) * GPU
ENGINES = ("numpy", *COMPILED)
CPU_ENGINES = ("numpy", "numba") if HAVE_NUMBA else ("numpy",)



def data(n=330, n_in=20, classes=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, n_in), dtype=np.uint8), rng.integers(0, classes, n)


def model_for(hidden, optimizer, dtype, output="softmax", loss="sparse_categorical_crossentropy"):
    layers = [fcnet.Dense(16, hidden[0], input_dim=20), *(fcnet.Dense(12, a) for a in hidden[1:]),
              fcnet.Dense(5, output)]
    model = fcnet.Sequential(layers, seed=0, dtype=dtype)
    model.compile(OPTIMIZERS[optimizer](), loss, metrics=["accuracy"])
    return model


def train_both(make, x, y, compiled="numba", **fit):
    """The same model trained by each engine: [(model, history)] for numpy, then ``compiled``."""
    runs = []
    for engine in ("numpy", compiled):
        model = make()
        history = model.fit(x, y, verbose=0, engine=engine, **fit)
        assert history.engine == engine
        runs.append((model, history))
    return runs


@pytest.mark.parametrize("engine", COMPILED)
def test_logits_output_float_inputs_and_a_validation_split(engine):
    x, y = data()
    x = x.astype(np.float64) / 255
    make = lambda: model_for(("relu",), "adam", "float64", output="linear",  # noqa: E731
                             loss={"name": "sparse_categorical_crossentropy", "from_logits": True})
    (ref, h_ref), (jit, h_jit) = train_both(make, x, y, engine, epochs=3, batch_size=7, validation_split=0.2)
    rtol = TOLERANCE[engine, "float64"]
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=rtol, atol=1e-14)
    assert_allclose(h_jit.history["val_loss"], h_ref.history["val_loss"], rtol=rtol)


@pytest.mark.parametrize("engine", COMPILED)
def test_the_lab_network_on_images_reaches_the_same_accuracy(engine):
    x, y = synthetic_images(2000, np.random.default_rng(0))
    make = lambda: _lab("float32")  # noqa: E731
    (ref, _), (jit, h_jit) = train_both(make, x, y, engine, epochs=2, batch_size=64)
    assert h_jit.history["accuracy"][-1] > 0.9
    assert_allclose(jit.predict(x[:200]), ref.predict(x[:200]), atol=1e-4)
    assert_array_equal(jit.predict_classes(x), ref.predict_classes(x))


def _lab(dtype):
    model = fcnet.Sequential([fcnet.Dense(300, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0,
                             dtype=dtype)
    model.compile(SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Losses(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, batch, logs):
        self.seen.append((batch, logs["loss"]))


@pytest.mark.slow
@pytest.mark.parametrize("compiled", COMPILED)
def test_every_step_reaches_the_callbacks_with_its_own_loss(compiled):
    x, y = data(n=20_000)
    runs = []
    for engine in ("numpy", compiled):
        cb = Losses()
        model_for(("relu",), "sgd", "float64").fit(x, y, epochs=1, batch_size=3, verbose=0, callbacks=[cb],
                                                    engine=engine)
        runs.append(cb.seen)
    assert len(runs[1]) == 6667  # more steps than one compiled call takes
    assert [b for b, _ in runs[1]] == list(range(6667))
    assert_allclose([v for _, v in runs[1]], [v for _, v in runs[0]], rtol=TOLERANCE[compiled, "float64"])


class Snapshots(Callback):
    """The weights, optimizer state and iteration count after every step (batch size large enough that the
    compiled engine takes one step per call, so its callbacks see each step's weights too)."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, batch, logs):
        opt = self.model.optimizer
        self.seen.append((self.model.get_weights(), {k: v.copy() for k, v in opt.get_state(self.model.parameters)
                                                     .items()}))


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam"])
@pytest.mark.parametrize("engine", CPU_ENGINES)  # the learning rate read per call (the GPU: test_gpu.py)
def test_a_diverging_step_leaves_the_weights_and_state_of_the_step_before(engine, optimizer):
    x, y = data(n=5 * STEP_ROWS)
    model = model_for(("relu",), optimizer, "float32")

    class Explode(Snapshots):
        def on_batch_end(self, batch, logs):
            super().on_batch_end(batch, logs)
            if batch == 1:  # the compiled engine reads the rate at its next call: one step per call here
                self.model.optimizer.learning_rate = 1e30

    cb = Explode()
    with pytest.raises(fcnet.DivergenceError, match=r"at epoch 1, batch (\d+) .*lower learning rate") as err:
        model.fit(x, y, epochs=1, batch_size=STEP_ROWS, verbose=0, engine=engine, callbacks=[cb])
    failed = int(err.value.args[0].split("batch ")[1].split()[0])
    assert failed >= 3 and len(cb.seen) == failed - 1  # the failing step reached no callback
    weights, state = cb.seen[-1]
    for p, w in zip(model.parameters, weights):
        assert_array_equal(p, w)
    for key, value in model.optimizer.get_state(model.parameters).items():
        assert_array_equal(value, state[key])
    assert model.optimizer.iterations == failed - 1


def test_every_engine_draws_the_same_random_numbers():
    x, y = data()
    states = []
    for engine in ENGINES:
        model = model_for(("relu",), "sgd", "float64")
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, engine=engine)
        states.append(model.rng.bit_generator.state)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, engine=engine, shuffle=False)
        assert model.rng.bit_generator.state == states[-1]  # no shuffle, no draw
    assert all(state == states[0] for state in states)


def test_the_engine_is_chosen_and_built_once_per_fit(monkeypatch):
    from fcnet import engines

    built = []
    original = engines.make_engine
    monkeypatch.setattr("fcnet.training.make_engine", lambda *a, **k: built.append(a) or original(*a, **k))
    x, y = data()
    for engine in ENGINES:
        model_for(("relu",), "adam", "float32").fit(x, y, epochs=3, batch_size=32, verbose=0, engine=engine)
    assert len(built) == len(ENGINES)


@pytest.mark.parametrize("engine", CPU_ENGINES)  # the GPU keeps its gradients there
def test_gradients_after_a_step_are_that_steps_on_numpy(engine):
    x, y = data()
    model = model_for(("relu",), "sgd-momentum", "float64")
    ref = model_for(("relu",), "sgd-momentum", "float64")
    model.fit(x[:32], y[:32], epochs=1, batch_size=32, verbose=0, engine=engine, shuffle=False)
    _, grads = ref.loss_and_gradients(x[:32], y[:32])
    for g, r in zip(model.gradients, grads):
        assert_allclose(g, r, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("engine", COMPILED)
def test_learning_rate_changes_between_epochs_are_seen(engine):
    x, y = data()
    make = lambda: model_for(("relu",), "sgd", "float64")  # noqa: E731
    decay = lambda: [fcnet.callbacks.LearningRateDecay(0.5)]  # noqa: E731
    runs = [make().fit(x, y, epochs=3, batch_size=32, verbose=0, engine=e, callbacks=decay()) for e in
            ("numpy", engine)]
    assert_allclose(runs[1].history["loss"], runs[0].history["loss"], rtol=TOLERANCE[engine, "float64"])
    assert runs[1].history["lr"] == [0.1, 0.05, 0.025]


@needs_numba
def test_auto_takes_numba_where_it_can_and_numpy_elsewhere():
    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    assert choose_engine(model, y) == "numba"
    mse = model_for(("relu",), "sgd", "float32", output="linear", loss="mse")
    assert choose_engine(mse, np.eye(5)[y]) == "numba"  # squared error against float targets is compiled
    soft_mse = model_for(("relu",), "sgd", "float32", output="softmax", loss="mse")
    assert choose_engine(soft_mse, np.eye(5)[y]) == "numpy"
    assert soft_mse.fit(x, np.eye(5)[y], epochs=1, verbose=0).engine == "numpy"
    with pytest.raises(ValueError, match="engine 'numba' cannot train this model: mse is compiled against float "
                                         "targets with a linear output only"):
        soft_mse.fit(x, np.eye(5)[y], epochs=1, verbose=0, engine="numba")
    with pytest.raises(ValueError, match="engine must be one of auto, numpy, numba, cuda, got 'gpu'"):
        model.fit(x, y, engine="gpu")

    class MyReLU(fcnet.activations.ReLU):  # a subclass may change the formulas: not compiled
        pass

    custom = fcnet.Sequential([fcnet.Dense(4, MyReLU(), input_dim=20), fcnet.Dense(5, "softmax")])
    custom.compile("sgd", "sparse_categorical_crossentropy")
    assert engine_choice(custom, y) == ("numpy", "the compiled engine cannot train this model: hidden activation "
                                                 "MyReLU (not the registered 'relu') is not compiled")


@needs_numba
def test_auto_says_once_why_it_fell_back_to_numpy(capsys):
    x, y = data()
    model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=20, batch_norm=True), fcnet.Dense(5, "softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=2, verbose=2)
    assert history.engine_note == "the compiled engine cannot train this model: batch normalization is not compiled"
    assert capsys.readouterr().err.count("fcnet: training on NumPy: the compiled engine cannot") == 1
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""
    assert model_for(("relu",), "sgd", "float32").fit(x, y, epochs=1, verbose=0).engine_note is None


def test_without_numba_auto_falls_back_and_numba_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fcnet.engines.numba", None)  # with the attribute gone, importing it raises
    monkeypatch.delattr(fcnet.engines, "numba", raising=False)
    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    assert model.fit(x, y, epochs=1, verbose=0).engine == "numpy"
    with pytest.raises(ValueError, match=r"needs Numba: pip install 'fcnet\[fast\]'"):
        make_engine(model, x, y, 32, engine="numba")


@needs_numba
def test_indices_the_compiled_loop_would_not_check_are_refused():
    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    engine = make_engine(model, x, y, 32, "numba")
    order = np.arange(len(x))
    for bad_order in (order + 1, order - 1, order.astype(float), order.reshape(-1, 1)):
        with pytest.raises(ValueError, match=r"order must be a 1-D array of row indices in 0\.\.329"):
            train_epoch(engine, x, y, bad_order)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.4, found 0\.\.5"):
        train_epoch(engine, x, np.where(y == 4, 5, y), order)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 20\)"):
        train_epoch(engine, x[:, :10], y, order)


@pytest.mark.skipif(GPU, reason="a GPU answers here")
def test_the_gpu_engine_says_in_one_line_why_it_cannot_run(capsys, tmp_path):
    from fcnet.cli import main

    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    with pytest.raises(ValueError, match=r"^engine 'cuda' cannot train this model: (CuPy is not installed|no CUDA)"):
        model.fit(x, y, engine="cuda")
    with pytest.raises(ValueError, match=r"^engine 'cuda' cannot run this model: (CuPy is not installed|no CUDA)"):
        model.predict(x, engine="cuda")
    assert main(["train", "--engine", "cuda", "--epochs", "1", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip()
    assert "engine 'cuda' cannot train here: " in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@needs_numba
@pytest.mark.parametrize("optimizer", ["adam", "sgd-momentum", "rmsprop"])
def test_the_compiled_state_has_no_subnormal_numbers_and_the_same_weights(optimizer, monkeypatch):
    # Feature 0 is lit in the first row only: its weights' gradient is 0 afterwards, and the state decays
    # geometrically into subnormal numbers (slow on x86), which the compiled engine flushes to 0 (the NumPy
    # optimizers every 16 steps, here not at all, to show they arise).
    monkeypatch.setattr(fcnet.optimizers, "FLUSH_EVERY", 10**9)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2000, 20), dtype=np.uint8)
    x[1:, 0] = 0
    y = rng.integers(0, 5, 2000)
    (ref, _), (jit, _) = train_both(lambda: model_for(("relu",), optimizer, "float32"), x, y, epochs=1,
                                    batch_size=2, shuffle=False)
    tiny = np.finfo(np.float32).tiny
    subnormal = lambda a: int(((a != 0) & (np.abs(a) < tiny)).sum())  # noqa: E731
    ref_state, jit_state = ref.optimizer.get_state(ref.parameters), jit.optimizer.get_state(jit.parameters)
    assert sum(subnormal(np.asarray(v)) for v in ref_state.values()) > 0  # the reference keeps them
    assert sum(subnormal(np.asarray(v)) for v in jit_state.values()) == 0
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=0, atol=2e-5 * np.abs(p).max())
