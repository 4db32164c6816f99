"""The CUDA engine (fcnet.engines.cuda) on a GPU: what tests/engines/test_contract.py and test_parity.py do not
already run on every engine.

Skipped where CuPy or a GPU is missing. Run on a GPU machine with ``PYTHONPATH=src python3 -m pytest
tests/engines``.
"""

import warnings

import numpy as np
import pytest
from conftest import synthetic_images
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet.callbacks import Callback
from fcnet.engines import cuda
from fcnet.gradcheck import biases_off_the_kinks, gradcheck
from fcnet.optimizers import SGD, Adam, RMSprop

pytestmark = [pytest.mark.gpu]

if cuda.unavailable():
    pytest.skip(f"no GPU for the CUDA engine: {cuda.unavailable()}", allow_module_level=True)

OPTIMIZERS = {"sgd": lambda: SGD(0.1), "momentum": lambda: SGD(0.05, momentum=0.9),
              "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True), "adam": lambda: Adam(1e-3),
              "rmsprop": lambda: RMSprop(1e-3, epsilon_form="torch")}


def lab(dtype, optimizer="sgd", hidden=(300,), activation="relu"):
    layers = [fcnet.Dense(hidden[0], activation, input_dim=784), *(fcnet.Dense(h, activation) for h in hidden[1:]),
              fcnet.Dense(10, "softmax")]
    model = fcnet.Sequential(layers, seed=0, dtype=dtype)
    model.compile(OPTIMIZERS[optimizer](), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def images():
    return synthetic_images(3200, np.random.default_rng(0))


@pytest.fixture(params=["fused head", "GEMM head"])
def head(request, monkeypatch):
    """The output layer by the fused head kernels, or (HEAD_MAX 0) by cuBLAS and softmax_ce as wider outputs are."""
    if request.param == "GEMM head":
        monkeypatch.setattr(cuda, "HEAD_MAX", 0)
    return request.param == "fused head"


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fifty_steps_of_the_lab_network_give_the_numpy_weights(images, optimizer, dtype, rtol, head):
    x, y = images  # 3200 images in batches of 64: 50 steps
    models = {engine: lab(dtype, optimizer) for engine in ("numpy", "cuda")}
    for engine, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a failed graph capture warns: here it must not happen
            model.fit(x, y, epochs=1, batch_size=64, verbose=0, engine=engine)
    ref, gpu = models["numpy"], models["cuda"]
    assert gpu.optimizer.iterations == ref.optimizer.iterations == 50
    for p, q in zip(ref.parameters, gpu.parameters):
        assert_allclose(q, p, rtol=0, atol=rtol * np.abs(p).max())


def test_the_engine_replays_captured_graphs(images):
    x, y = images
    model = lab("float32")
    x = model.check_inputs(x)
    engine = cuda.CudaEngine(model, 64, x, model.check_targets(y, len(x)))
    assert engine.graphs is True and engine.chunks == [(0, 50, 64)]  # 3200 rows: one chunk of 50 steps
    assert engine.head is True  # ten outputs: the fused head kernels


@pytest.mark.parametrize("hidden", [(), (12, 9)], ids=["no hidden layer", "two hidden layers"])
def test_networks_of_other_depths_give_the_numpy_weights(images, hidden, head):
    x, y = images
    models = {}
    for engine in ("numpy", "cuda"):
        layers = [fcnet.Dense(h, "tanh") for h in hidden] + [fcnet.Dense(10, "softmax")]
        model = models[engine] = fcnet.Sequential(layers, seed=0, dtype="float64")
        model.compile(SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=50, verbose=0, engine=engine)  # 3200 = 64 steps of 50
    for p, q in zip(models["numpy"].parameters, models["cuda"].parameters):
        assert_allclose(q, p, rtol=0, atol=1e-10 * np.abs(p).max())


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "linear"])
def test_gradients_computed_on_the_gpu_pass_gradcheck_in_float64(activation):
    rng = np.random.default_rng(3)
    x, y = rng.random((16, 784)), rng.integers(0, 10, 16)
    model = lab("float64", hidden=(12, 9), activation=activation)
    model.build(784)
    biases_off_the_kinks(model, x, rng)
    result = gradcheck(model, x, y, engine="cuda")
    assert result.passed, result.table()
    _, on_gpu = cuda.loss_and_gradients(model, x, y)
    _, on_cpu = model.loss_and_gradients(x, y)
    for g, r in zip(on_gpu, on_cpu):
        assert_allclose(g, r, rtol=1e-10, atol=1e-14)


def test_a_diverging_epoch_leaves_the_state_of_the_step_before_as_numpy_does():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (5 * 8192, 20), dtype=np.uint8), rng.integers(0, 5, 5 * 8192)

    class Explode(Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.optimizer.learning_rate = 1e30

    runs = {}
    for engine in ("numpy", "cuda"):
        model = fcnet.Sequential([fcnet.Dense(16, "relu", input_dim=20), fcnet.Dense(5, "softmax")], seed=0,
                                 dtype="float32")
        model.compile(SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
        with pytest.raises(fcnet.DivergenceError, match=r"at epoch 2, batch (\d+)") as err:
            model.fit(x, y, epochs=3, batch_size=4096, verbose=0, engine=engine, callbacks=[Explode()])
        runs[engine] = (model, str(err.value))
    (ref, ref_err), (gpu, gpu_err) = runs["numpy"], runs["cuda"]
    batch = lambda message: message.split("batch ")[1].split()[0]  # noqa: E731
    assert batch(gpu_err) == batch(ref_err)  # 2 steps per chunk: the chunks queued after it changed nothing
    assert gpu.optimizer.iterations == ref.optimizer.iterations
    for p, q in zip(ref.parameters, gpu.parameters):
        assert np.isfinite(q).all()
        assert_allclose(q, p, rtol=1e-4, atol=1e-4 * np.abs(p).max())


def test_predict_and_evaluate_on_the_gpu_equal_the_cpu_and_a_saved_model_moves_freely(images, tmp_path):
    x, y = images
    model = lab("float32", "adam")
    history = model.fit(x, y, epochs=2, batch_size=128, verbose=0, engine="cuda", validation_split=0.1)
    assert history.engine == "cuda" and history.history["val_accuracy"][-1] > 0.8
    assert_allclose(model.predict(x, engine="cuda"), model.predict(x), rtol=1e-4, atol=1e-6)
    gpu, cpu = model.evaluate(x, y, engine="cuda"), model.evaluate(x, y)
    assert gpu.accuracy == cpu.accuracy and abs(gpu.loss - cpu.loss) < 1e-5
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert_array_equal(loaded.predict(x), model.predict(x))
    for p, q in zip(loaded.optimizer.get_state(loaded.parameters).values(),
                    model.optimizer.get_state(model.parameters).values()):
        assert_array_equal(p, q)


def test_stopping_and_resuming_on_the_gpu_is_bit_identical(images):
    x, y = images
    straight, resumed = lab("float32", "adam"), lab("float32", "adam")
    straight.fit(x, y, epochs=3, batch_size=100, verbose=0, engine="cuda")
    resumed.fit(x, y, epochs=1, batch_size=100, verbose=0, engine="cuda")
    resumed.fit(x, y, epochs=3, initial_epoch=1, batch_size=100, verbose=0, engine="cuda")
    for p, q in zip(straight.parameters, resumed.parameters):
        assert_array_equal(p, q)


def test_a_model_the_gpu_does_not_cover_is_refused_in_one_line(images):
    x, y = images
    model = fcnet.Sequential([fcnet.Dense(10, "relu", input_dim=784), fcnet.Dense(10, "softmax")])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="^engine 'cuda' cannot train this model: only cross-entropy"):
        model.fit(x, np.eye(10)[y], engine="cuda", verbose=0)
