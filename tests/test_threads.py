"""BLAS threads on a busy machine (fcnet.threads): fixed by the user, or the cores the rest of the machine leaves."""

import subprocess
import sys
import time

import numpy as np
import pytest

import fcnet
from fcnet import blas, threads
from fcnet.callbacks import Callback

if blas.get_threads() is None:
    pytest.skip("NumPy's OpenBLAS thread count cannot be read here", allow_module_level=True)


class Seen(Callback):
    """The BLAS thread count at every epoch's start and at its first step."""

    def __init__(self):
        self.seen = []

    def on_epoch_begin(self, epoch, logs):
        self.seen.append(blas.get_threads())

    def on_batch_end(self, batch, logs):
        if batch == 0:
            self.seen.append(blas.get_threads())



@pytest.fixture(autouse=True)
def _choose_freely(monkeypatch):
    """The suite fixes one thread (tests/conftest.py); these tests are about the choice, so they clear it."""
    monkeypatch.delenv("FCNET_THREADS", raising=False)


def lab():
    model = fcnet.Sequential([fcnet.Dense(300, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def data(n):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


def test_a_fixed_count_holds_for_the_fit_and_the_old_one_comes_back(monkeypatch):
    x, y = data(300)
    before = blas.get_threads()
    for given, env in ((1, None), (None, "1")):
        if env:
            monkeypatch.setenv("FCNET_THREADS", env)
        cb = Seen()
        lab().fit(x, y, epochs=2, verbose=0, callbacks=[cb], threads=given)
        assert cb.seen == [1] * 4 and blas.get_threads() == before
    for bad in ("0", "two", "1.5", "-3"):
        monkeypatch.setenv("FCNET_THREADS", bad)
        with pytest.raises(ValueError, match=rf"^threads \(FCNET_THREADS\) must be a positive integer, got '{bad}'$"):
            lab().fit(x, y, verbose=0)


def test_the_count_is_the_cores_the_other_running_tasks_leave(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(blas, "get_threads", lambda: 4)
    for others, expected in ((0, 4), (1, 3), (3, 1), (9, 1), (None, 4)):
        monkeypatch.setattr(threads, "_others_running", lambda others=others: others)
        assert threads.choose() == expected
    monkeypatch.setattr(blas, "get_threads", lambda: 2)  # never more than OpenBLAS was given
    monkeypatch.setattr(threads, "_others_running", lambda: 0)
    assert threads.choose() == 2 and threads.choose(3) == 3


def test_one_thread_rounds_differently_so_the_count_is_recorded_and_a_resume_keeps_it(idx_dir, tmp_path):
    from fcnet import TrainConfig, train_run
    from fcnet.run import checkpoint_config

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 784), dtype=np.float32), rng.standard_normal((784, 300), dtype=np.float32)
    before = blas.get_threads()
    products = []
    for n in (1, 2, 1, 2):
        blas.set_threads(n)
        products.append(a @ b)
    blas.set_threads(before)
    # A count gives the same bits every time; another count may round differently (it does with OpenBLAS's
    # AVX-512 kernels here), which is why the count is chosen once and recorded, not varied.
    assert np.array_equal(products[0], products[2]) and np.array_equal(products[1], products[3])
    config = TrainConfig(dataset=f"idx:{idx_dir}", hidden=(16,), epochs=1, threads=1)
    train_run(config, out=tmp_path / "run", verbose=0, figures=False)
    assert checkpoint_config(tmp_path / "run").threads == 1
    resumed = train_run(config.replace(epochs=2, threads=None), out=tmp_path / "run", resume=True, verbose=0,
                        figures=False)
    assert resumed.config.threads == 1 and resumed.metrics.config["threads"] == 1


@pytest.mark.slow
def test_with_a_busy_process_beside_it_fit_takes_one_thread_fewer():
    x, y = data(20_000)  # a lab epoch of ~0.1 s or more: long enough to read the CPU counters
    if blas.get_threads() < 2:
        pytest.skip("one BLAS thread already")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        cb = Seen()
        lab().fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[cb])
    finally:
        busy.kill()
        busy.wait()
    assert cb.seen[-1] == blas.get_threads() - 1 or cb.seen[-1] == 1
    assert len(set(cb.seen)) == 1  # one count for the whole fit
