"""Every registered formula on every engine present and on ONNX export: refused with a reason, or equal to the
NumPy reference (float64 to 1e-12 on the CPU, 1e-10 on the GPU; float32 to 2e-5 and 1e-4).

The cases are generated from the registries (fcnet.activations, fcnet.losses, fcnet.optimizers, fcnet.options), and
a test fails when a registered name has no case here, so a new formula cannot escape this suite; a fake activation,
optimizer and option, registered for a test, are refused by every compiled engine and by export.
"""

import numpy as np
import pytest
from conftest import OPTIMIZERS, TOLERANCE
from numpy.testing import assert_allclose

import fcnet
from fcnet import activations, losses, optimizers, options
from fcnet.engines import base, choose_engine, cuda

numba_engine = pytest.importorskip("fcnet.engines.numba", reason="Numba is not installed")

GPU = cuda.unavailable() is None
COMPILED = ("numba", "cuda") if GPU else ("numba",)
SUPPORT = {"numba": numba_engine.SUPPORT, "cuda": cuda.SUPPORT}
DTYPES = ("float64", "float32")

def labels(n, k, rng):
    return rng.integers(0, k, n)


# Each registered loss: an output layer it fits, and its targets.
LOSSES = {
    "sparse_categorical_crossentropy": ("softmax", labels),
    "categorical_crossentropy": ("softmax", lambda n, k, rng: np.eye(k)[labels(n, k, rng)]),
    "binary_crossentropy": ("sigmoid", lambda n, k, rng: (rng.random((n, k)) < 0.3).astype(float)),
    "mse": ("linear", lambda n, k, rng: rng.normal(size=(n, k))),
    "mae": ("linear", lambda n, k, rng: rng.normal(size=(n, k))),
    "huber": ("linear", lambda n, k, rng: 2 * rng.normal(size=(n, k))),
}

# Each registered option, switched on: (Dense keyword arguments of the hidden layers, optimizer options, loss
# options, a schedule instead of a constant rate).
OPTIONS = {
    "dropout": ({"dropout": 0.25}, {}, {}),
    "batch_norm": ({"batch_norm": True}, {}, {}),
    "l2": ({"kernel_regularizer": fcnet.regularizers.L2(0.01)}, {}, {}),
    "weight_decay": ({}, {"weight_decay": 0.02}, {}),
    "clipvalue": ({}, {"clipvalue": 0.002}, {}),
    "clipnorm": ({}, {"clipnorm": 0.05}, {}),
    "global_clipnorm": ({}, {"global_clipnorm": 0.08}, {}),
    "schedule": ({}, {"learning_rate": fcnet.schedules.CosineDecay(0.0, 30, warmup_target=0.05, warmup_steps=5)},
                 {}),
    "label_smoothing": ({}, {}, {"label_smoothing": 0.2}),
}


def test_every_registered_name_has_a_parity_case():
    """A formula registered without a case here would escape the suite: say which."""
    assert {name.split("-")[0] for name in OPTIMIZERS} == set(optimizers.REGISTRY)
    assert set(LOSSES) == set(losses.REGISTRY)
    assert set(OPTIONS) == set(options.OPTIONS)
    for engine in COMPILED:  # an allow-list names registered things only (Support checks it when built)
        assert set(SUPPORT[engine].hidden) <= set(activations.REGISTRY)


def make_model(hidden=("relu", "tanh"), output="softmax", optimizer="adam", loss="sparse_categorical_crossentropy",
               dtype="float64", layer_options=None, optimizer_options=None, loss_options=None):
    layer_options = layer_options or {}
    layers = [fcnet.Dense(16, hidden[0], input_dim=20, **layer_options),
              *(fcnet.Dense(12, a, **layer_options) for a in hidden[1:]), fcnet.Dense(5, output)]
    model = fcnet.Sequential(layers, seed=0, dtype=dtype)
    config = {**OPTIMIZERS[optimizer]().get_config(), **(optimizer_options or {})}
    metrics = ["accuracy"] if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") else None
    model.compile(optimizers.get(config), {"name": loss, **(loss_options or {})}, metrics=metrics)
    return model


def data(n=330, targets=labels, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 20), dtype=np.uint8), targets(n, 5, rng)


def refused_or_equal(engine, make, x, y, epochs=2):
    """Refusal with the reason the engine's allow-list gives, or two epochs (330 rows in batches of 32: the last
    has 10) equal to NumPy's: weights, optimizer state and steps, learning rate, losses, accuracies, and the
    numbers drawn from the model's generator. Returns the reference model, or None when refused."""
    model = make()
    reason = base.unsupported(model, model.check_targets(y, len(x)), SUPPORT[engine])
    if reason:
        with pytest.raises(ValueError, match=f"engine '{engine}' cannot train this model: {reason}"):
            make().fit(x, y, epochs=1, verbose=0, engine=engine)
        if engine == "numba":  # "auto" falls back to the reference and says why
            assert choose_engine(model, model.check_targets(y, len(x))) == "numpy"
        return None
    runs = [make() for _ in range(2)]
    histories = [m.fit(x, y, epochs=epochs, batch_size=32, verbose=0, engine=e) for m, e in zip(runs, ("numpy",
                                                                                                    engine))]
    (ref, h_ref), (other, h_other) = zip(runs, histories)
    assert h_other.engine == engine
    tol = TOLERANCE[engine, str(ref.dtype)]
    for p, q in zip(ref.parameters, other.parameters):
        assert_allclose(q, p, rtol=0, atol=tol * np.abs(p).max())
    assert other.optimizer.iterations == ref.optimizer.iterations == epochs * 11
    assert other.optimizer.learning_rate == pytest.approx(ref.optimizer.learning_rate, rel=1e-12)
    for key, value in ref.optimizer.get_state(ref.parameters).items():
        value = np.asarray(value)
        assert_allclose(other.optimizer.get_state(other.parameters)[key], value, rtol=0,
                        atol=tol * max(np.abs(value).max(), 1e-30))
    assert_allclose(h_other.history["loss"], h_ref.history["loss"], rtol=tol)
    assert h_other.history.get("accuracy") == h_ref.history.get("accuracy")
    assert ref.rng.bit_generator.state == other.rng.bit_generator.state  # the same numbers were drawn
    return ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])  # plain SGD's fused weight update, and a rule with state
@pytest.mark.parametrize("activation", list(activations.REGISTRY))
@pytest.mark.parametrize("engine", COMPILED)
def test_every_hidden_activation(engine, activation, optimizer, dtype):
    x, y = data()
    refused_or_equal(engine, lambda: make_model((activation, activation), optimizer=optimizer, dtype=dtype), x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(activations.REGISTRY))
@pytest.mark.parametrize("engine", COMPILED)
def test_every_output_activation(engine, activation, dtype):
    """Softmax against labels; every other output under squared error against float targets."""
    loss = "sparse_categorical_crossentropy" if activation == "softmax" else "mse"
    x, y = data(targets=LOSSES[loss][1])
    refused_or_equal(engine, lambda: make_model(output=activation, loss=loss, dtype=dtype), x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("engine", COMPILED)
def test_every_optimizer(engine, optimizer, dtype):
    x, y = data()
    refused_or_equal(engine, lambda: make_model(optimizer=optimizer, dtype=dtype), x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("engine", COMPILED)
def test_every_loss(engine, loss, dtype):
    output, targets = LOSSES[loss]
    x, y = data(targets=targets)
    refused_or_equal(engine, lambda: make_model(output=output, loss=loss, dtype=dtype), x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("engine", COMPILED)
def test_every_option(engine, option, optimizer, dtype):
    layer, opt, loss = OPTIONS[option]
    x, y = data()
    make = lambda: make_model(optimizer=optimizer, dtype=dtype, layer_options=layer,  # noqa: E731
                              optimizer_options=opt, loss_options=loss)
    ref = refused_or_equal(engine, make, x, y)
    if ref is not None:  # the option did something, so the comparison could fail
        plain = make_model(optimizer=optimizer, dtype=dtype)
        plain.fit(x, y, epochs=2, batch_size=32, verbose=0, engine="numpy")
        assert not np.allclose(plain.parameters[0], ref.parameters[0], rtol=1e-6, atol=0)


def test_options_combine_on_the_compiled_engine():
    """Clipping holds every update until the backward pass is done; with L2, weight decay, dropout and a
    schedule beside it, the order of all of them is the reference's."""
    x, y = data()
    make = lambda: make_model(optimizer="sgd-momentum", layer_options={  # noqa: E731
        "dropout": 0.1, "kernel_regularizer": fcnet.regularizers.L2(0.005)}, optimizer_options={
        "global_clipnorm": 0.08, "weight_decay": 0.01, "learning_rate": fcnet.schedules.OneCycle(0.05, 33)},
        loss_options={"label_smoothing": 0.1})
    assert refused_or_equal("numba", make, x, y) is not None


# -- export ------------------------------------------------------------------------------------------------------


def _onnxruntime():
    pytest.importorskip("onnx", reason="onnx is not installed: pip install 'fcnet[onnx]'")
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def exported_or_refused(tmp_path, model, rtol, atol):
    from fcnet.errors import FcnetError
    from fcnet.export import SUPPORT as EXPORT

    ort = _onnxruntime()
    rng = np.random.default_rng(0)
    for layer in model.layers:  # biases off zero, so that the Add nodes matter
        layer.params["b"][:] = rng.normal(0, 0.3, layer.units)
    reason = base.unsupported(model, None, EXPORT, training=False)
    if reason:
        with pytest.raises(FcnetError, match=f"cannot export this model to ONNX: {reason}"):
            model.export_onnx(tmp_path / "m.onnx")
        return
    x = rng.normal(size=(37, 20)).astype(model.dtype)
    path = model.export_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert_allclose(session.run(["output"], {"input": x})[0], model.predict(x), rtol=rtol, atol=atol)


EXPORT_TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-14)}  # onnxruntime's float32 tanh: ~2e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("position", ["hidden", "output"])
@pytest.mark.parametrize("activation", list(activations.REGISTRY))
def test_every_activation_exports_to_onnx(tmp_path, activation, position, dtype):
    hidden, output = ((activation, activation), "softmax") if position == "hidden" else (("relu",), activation)
    model = make_model(hidden, output, loss="sparse_categorical_crossentropy" if output == "softmax" else "mse",
                       dtype=dtype)
    rtol, atol = EXPORT_TOLERANCE[dtype]
    if activation == "gelu" and dtype == "float64":
        rtol, atol = 1e-6, 1e-7  # onnxruntime's Erf is float32 only
    exported_or_refused(tmp_path, model, rtol, atol)


@pytest.mark.parametrize("option", [name for name, option in options.OPTIONS.items() if option.inference])
def test_every_option_of_the_forward_pass_exports_to_onnx(tmp_path, option):
    model = make_model(layer_options=OPTIONS[option][0])
    model.fit(*data(), epochs=1, verbose=0, engine="numpy")  # batch normalization's moving averages move
    exported_or_refused(tmp_path, model, *EXPORT_TOLERANCE["float64"])


# -- what is not registered with an engine is refused there ------------------------------------------------------


class Cube(activations.Activation):
    """``f(z) = z³``: a formula no engine has a twin of."""

    name = "cube"
    needs_z = True

    def forward(self, z, out=None):
        return np.power(z, 3, out=out)

    def backward(self, da, a, z=None):
        da *= 3 * z * z
        return da


class SignSGD(optimizers.Optimizer):
    """``p ← p − lr · sign(g)``: an update rule no engine has a twin of."""

    name = "signsgd"

    def __init__(self, learning_rate=0.01, **kwargs):
        super().__init__(learning_rate, **kwargs)

    def _update(self, param, grad, state):
        param -= self.learning_rate * np.sign(grad)

    def get_config(self):
        return self._with_options({"name": self.name, "learning_rate": self.learning_rate})


@pytest.fixture
def registered(monkeypatch):
    """Register the fakes for one test, and a fake option that is always in use."""
    activations.REGISTRY.register(Cube)
    optimizers.REGISTRY.register(SignSGD)
    monkeypatch.setitem(options.OPTIONS, "fake", options.Option("fake", "a fake option", lambda m: m.name == "fake",
                                                                inference=True))
    yield
    activations.REGISTRY.unregister("cube")
    optimizers.REGISTRY.unregister("signsgd")


def test_a_registered_activation_without_twins_is_refused_everywhere_but_the_reference(registered, tmp_path):
    from fcnet.errors import FcnetError
    from fcnet.gradcheck import gradcheck

    x, y = data()
    model = make_model(("cube",), dtype="float64")
    assert isinstance(model.layers[0].activation, Cube)
    for engine in ("numba", "cuda"):
        assert base.unsupported(model, y, SUPPORT[engine]) == "hidden activation 'cube' is not compiled"
    with pytest.raises(ValueError, match="engine 'numba' cannot train this model: hidden activation 'cube'"):
        model.fit(x, y, epochs=1, verbose=0, engine="numba")
    assert model.fit(x, y, epochs=1, verbose=0).engine == "numpy"  # auto: the reference runs any formula
    assert gradcheck(model, x[:8], y[:8]).passed  # and its backward pass is right
    with pytest.raises(FcnetError, match="cannot export this model to ONNX: hidden activation 'cube' is not exported"):
        model.export_onnx(tmp_path / "m.onnx")


def test_a_registered_optimizer_without_a_compiled_rule_is_refused(registered):
    x, y = data()
    model = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=20), fcnet.Dense(5, "softmax")], seed=0)
    model.compile("signsgd", "sparse_categorical_crossentropy")
    for engine in ("numba", "cuda"):
        assert base.unsupported(model, y, SUPPORT[engine]) == "optimizer SignSGD is not compiled"
    with pytest.raises(ValueError, match="has no compiled rule"):
        base.OptimizerRule(model.optimizer)
    before = model.get_weights()[0].copy()
    assert model.fit(x, y, epochs=1, verbose=0).engine == "numpy"
    assert not np.array_equal(before, model.get_weights()[0])


def test_a_registered_option_is_refused_until_an_engine_lists_it(registered, tmp_path):
    from fcnet.errors import FcnetError

    x, y = data()
    model = make_model(dtype="float64")
    model.name = "fake"  # the fake option's test of use
    for engine in ("numba", "cuda"):
        assert base.unsupported(model, y, SUPPORT[engine]) == "a fake option is not compiled"
    with pytest.raises(FcnetError, match="a fake option is not exported"):
        model.export_onnx(tmp_path / "m.onnx")


def test_a_subclass_of_a_registered_formula_is_not_compiled():
    class MyReLU(activations.ReLU):  # a subclass may change the formulas
        pass

    x, y = data()
    model = fcnet.Sequential([fcnet.Dense(4, MyReLU(), input_dim=20), fcnet.Dense(5, "softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert base.unsupported(model, y, SUPPORT["numba"]) == "hidden activation MyReLU (not the registered 'relu') " \
                                                            "is not compiled"


def test_an_allow_list_may_name_registered_formulas_only():
    with pytest.raises(ValueError, match=r"allows unregistered names: \['cube'\]"):
        base.Support("test", hidden={"cube": 7}, outputs={}, losses={}, optimizers=frozenset(), options=frozenset())


def test_no_kernel_chooses_a_formula_by_default():
    """An unknown code must stop the kernel, never run as another formula (as `default: return v` once did)."""
    assert "default:" not in cuda.SOURCE
    assert cuda.SOURCE.count("__trap()") == 3  # activate, derive, update
