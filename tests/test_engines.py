"""The engine contract of fcnet.engines, run on every engine present, and the compiled engines (fcnet.jit; fcnet.cuda
where a GPU answers) against the NumPy reference they transcribe."""

import sys

import numpy as np
import pytest
from conftest import synthetic_images
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.callbacks import Callback
from fcnet.coverage import STEP_ROWS
from fcnet.engines import choose_engine, make_engine
from fcnet.optimizers import SGD, Adam, RMSprop
from fcnet.training import train_epoch

pytest.importorskip("numba")


def _gpu():
    from fcnet import cuda

    return cuda.unavailable() is None


GPU = _gpu()
COMPILED = ("numba", "cuda") if GPU else ("numba",)
ENGINES = ("numpy", *COMPILED)
# How close a compiled engine stays to NumPy, relative to the largest entry: OpenBLAS in both on the CPU;
# cuBLAS sums in another order on the GPU.
TOLERANCE = {("numba", "float64"): 1e-12, ("numba", "float32"): 2e-5, ("cuda", "float64"): 1e-10,
             ("cuda", "float32"): 1e-4}

OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "momentum": lambda: SGD(0.05, momentum=0.9),
    "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.01),
    "adam-torch": lambda: Adam(0.01, epsilon_form="torch"),
    "rmsprop": lambda: RMSprop(0.01),
    "rmsprop-torch": lambda: RMSprop(0.01, epsilon_form="torch"),
}
HIDDEN = {"relu-tanh": ("relu", "tanh"), "sigmoid-leaky": ("sigmoid", "leaky_relu"), "linear": ("linear",),
          "gelu-swish": ("gelu", "swish")}


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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("engine", COMPILED)
def test_compiled_epochs_equal_the_numpy_reference(engine, optimizer, hidden, dtype):
    x, y = data()  # 330 rows in batches of 32: the last batch has 10
    if engine == "cuda" and hidden == "gelu-swish":  # compiled on the CPU only
        with pytest.raises(ValueError, match="hidden activation 'gelu' is not compiled"):
            model_for(HIDDEN[hidden], optimizer, dtype).fit(x, y, epochs=1, verbose=0, engine="cuda")
        return
    rtol = TOLERANCE[engine, dtype]
    (ref, h_ref), (jit, h_jit) = train_both(lambda: model_for(HIDDEN[hidden], optimizer, dtype), x, y, engine,
                                            epochs=2, batch_size=32)
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=0, atol=rtol * np.abs(p).max())
    opt_ref, opt_jit = ref.optimizer, jit.optimizer
    assert opt_jit.iterations == opt_ref.iterations == 2 * 11
    for key, value in opt_ref.get_state(ref.parameters).items():
        reference = np.asarray(value)
        assert_allclose(opt_jit.get_state(jit.parameters)[key], reference, rtol=0,
                        atol=rtol * max(np.abs(reference).max(), 1e-30))
    assert_allclose(h_jit.history["loss"], h_ref.history["loss"], rtol=rtol)
    assert h_jit.history["accuracy"] == h_ref.history["accuracy"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw", "rmsprop"])
def test_dropout_and_weight_decay_compiled_equal_the_numpy_reference(optimizer, dtype):
    """The CPU engine draws the dropout masks from the model's generator as the layers do, so the same inputs
    drop, the weights agree, and the generator ends where NumPy's does; the GPU engine refuses both."""
    x, y = data()
    decay = {"sgd": SGD(0.1, weight_decay=0.01), "momentum": SGD(0.05, momentum=0.9, weight_decay=0.02),
             "adamw": fcnet.optimizers.AdamW(0.01), "rmsprop": RMSprop(0.01, weight_decay=0.05)}

    def make():
        model = fcnet.Sequential([fcnet.Dropout(0.2), fcnet.Dense(16, "tanh", input_dim=20), fcnet.Dropout(0.5),
                                  fcnet.Dense(12, "sigmoid"), fcnet.Dense(5, "softmax")], seed=0, dtype=dtype)
        model.compile(fcnet.optimizers.get(decay[optimizer].get_config()), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    (ref, h_ref), (jit, h_jit) = train_both(make, x, y, "numba", epochs=2, batch_size=32, threads=2)
    rtol = TOLERANCE["numba", dtype]
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=0, atol=rtol * np.abs(p).max())
    assert_allclose(h_jit.history["loss"], h_ref.history["loss"], rtol=rtol)
    assert ref.rng.bit_generator.state == jit.rng.bit_generator.state  # the same numbers were drawn
    plain = make()
    plain.layers[1].dropout = plain.layers[2].dropout = 0.0
    plain.fit(x, y, epochs=2, batch_size=32, verbose=0, engine="numba", threads=2)
    assert not np.allclose(plain.parameters[0], jit.parameters[0])  # dropout did something
    if GPU:
        with pytest.raises(ValueError, match="dropout is not compiled"):
            make().fit(x, y, epochs=1, verbose=0, engine="cuda")


PENALTIES = {  # optimizer options, a schedule read every step, L2 kernel penalties, label smoothing (the loss's
    # option): all compiled on the CPU
    "l2": ({}, 0.01),
    "clipvalue": ({"clipvalue": 0.002}, 0.0),
    "clipnorm": ({"clipnorm": 0.05}, 0.0),
    "global_clipnorm+l2": ({"global_clipnorm": 0.08}, 0.005),
    "cosine warm-up": ({"learning_rate": fcnet.schedules.CosineDecay(0.0, 30, warmup_target=0.05, warmup_steps=5),
                        "weight_decay": 0.01}, 0.0),
    "onecycle+clipnorm": ({"learning_rate": fcnet.schedules.OneCycle(0.05, 33), "clipnorm": 0.1}, 0.002),
    "label smoothing+l2": ({"label_smoothing": 0.2}, 0.003),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("case", PENALTIES)
def test_penalties_clipping_and_step_schedules_compiled_equal_the_numpy_reference(case, optimizer, dtype):
    """Each option changes the weights (so the check can fail), and the CPU engine takes it without falling back."""
    x, y = data()
    options, l2 = PENALTIES[case]
    base = {"sgd": SGD(0.1), "momentum": SGD(0.05, momentum=0.9), "adam": Adam(0.01), "rmsprop": RMSprop(0.01)}

    def make(options=options, l2=l2):
        options = dict(options)
        loss = {"name": "sparse_categorical_crossentropy", "label_smoothing": options.pop("label_smoothing", 0.0)}
        config = {**base[optimizer].get_config(), **options}
        reg = fcnet.regularizers.L2(l2) if l2 else None
        model = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=20, kernel_regularizer=reg),
                                  fcnet.Dense(12, "tanh", kernel_regularizer=reg), fcnet.Dense(5, "softmax")],
                                 seed=0, dtype=dtype)
        model.compile(fcnet.optimizers.get(config), loss, metrics=["accuracy"])
        return model

    assert choose_engine(make(), y) == "numba"
    (ref, h_ref), (jit, h_jit) = train_both(make, x, y, "numba", epochs=3, batch_size=32, threads=2)
    rtol = TOLERANCE["numba", dtype]
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=0, atol=rtol * np.abs(p).max())
    assert_allclose(h_jit.history["loss"], h_ref.history["loss"], rtol=rtol)
    assert jit.optimizer.learning_rate == ref.optimizer.learning_rate
    assert jit.optimizer.iterations == ref.optimizer.iterations == 33
    plain = make({}, 0.0)
    plain.fit(x, y, epochs=3, batch_size=32, verbose=0, engine="numba", threads=2)
    assert not np.allclose(plain.parameters[0], jit.parameters[0], rtol=1e-3, atol=0)  # the option did something
    if GPU:
        with pytest.raises(ValueError, match="not compiled"):
            make().fit(x, y, epochs=1, verbose=0, engine="cuda")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_squared_error_regression_compiled_equals_the_numpy_reference(optimizer, dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(330, 20))
    y = np.stack([x[:, :3].sum(axis=1), np.tanh(x[:, 3] * x[:, 4])], axis=1)  # two outputs

    def regressor():
        model = fcnet.Sequential([fcnet.Dense(16, "tanh", input_dim=20), fcnet.Dense(12, "relu"), fcnet.Dense(2)],
                                 seed=0, dtype=dtype)
        model.compile(OPTIMIZERS[optimizer](), "mse")
        return model

    (ref, h_ref), (jit, h_jit) = train_both(regressor, x, y, "numba", epochs=2, batch_size=32)
    assert h_jit.engine == "numba"
    rtol = TOLERANCE["numba", dtype]
    for p, q in zip(ref.parameters, jit.parameters):
        assert_allclose(q, p, rtol=0, atol=rtol * np.abs(p).max())
    assert_allclose(h_jit.history["loss"], h_ref.history["loss"], rtol=rtol)


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


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("engine", ["numpy", "numba"])  # the learning rate read per call (the GPU: tests/test_gpu.py)
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


@pytest.mark.parametrize("engine", ["numpy", "numba"])  # the GPU keeps its gradients there
def test_gradients_after_a_step_are_that_steps_on_numpy(engine):
    x, y = data()
    model = model_for(("relu",), "momentum", "float64")
    ref = model_for(("relu",), "momentum", "float64")
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


def test_auto_takes_numba_where_it_can_and_numpy_elsewhere():
    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    assert choose_engine(model, y) == "numba"
    mse = model_for(("relu",), "sgd", "float32", output="linear", loss="mse")
    assert choose_engine(mse, np.eye(5)[y]) == "numba"  # squared error against float targets is compiled
    soft_mse = model_for(("relu",), "sgd", "float32", output="softmax", loss="mse")
    assert choose_engine(soft_mse, np.eye(5)[y]) == "numpy"
    assert soft_mse.fit(x, np.eye(5)[y], epochs=1, verbose=0).engine == "numpy"
    with pytest.raises(ValueError, match="engine 'numba' cannot train this model: only cross-entropy against integer "
                                         "labels, and squared error against float targets with a linear output"):
        soft_mse.fit(x, np.eye(5)[y], epochs=1, verbose=0, engine="numba")
    with pytest.raises(ValueError, match="engine must be one of auto, numpy, numba, cuda, got 'gpu'"):
        model.fit(x, y, engine="gpu")

    class MyReLU(fcnet.activations.ReLU):  # a subclass may change the formulas: not compiled
        pass

    custom = fcnet.Sequential([fcnet.Dense(4, MyReLU(), input_dim=20), fcnet.Dense(5, "softmax")])
    custom.compile("sgd", "sparse_categorical_crossentropy")
    assert choose_engine(custom, y) == "numpy"


def test_without_numba_auto_falls_back_and_numba_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fcnet.jit", None)  # with the attribute gone, importing it raises ImportError
    monkeypatch.delattr(fcnet, "jit", raising=False)
    x, y = data()
    model = model_for(("relu",), "sgd", "float32")
    assert model.fit(x, y, epochs=1, verbose=0).engine == "numpy"
    with pytest.raises(ValueError, match=r"needs Numba: pip install 'fcnet\[fast\]'"):
        make_engine(model, x, y, 32, engine="numba")


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


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "rmsprop"])
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
