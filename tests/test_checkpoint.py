"""Checkpoints and resumes (fcnet.checkpoint): real kills and Ctrl-C mid-epoch resume bit-identically, a diverging
run keeps its last good checkpoint, and crafted checkpoint fields are one-line errors."""

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import FCNET, run, synthetic_images, write_idx_set, write_npz
from numpy.testing import assert_array_equal

import fcnet
from fcnet.checkpoint import Checkpoint, load_checkpoint
from fcnet.errors import DataError


def lab_args(data, out, epochs=6):
    # One thread count for every run compared here: one thread rounds differently from several (fcnet.threads),
    # and left to itself each run would take the cores free when it starts.
    return ["train", "--dataset", f"idx:{data}", "--epochs", epochs, "--batch-size", "8", "--optimizer", "adam",
            "--lr", "0.001", "--quiet", "--no-figures", "--out", out, "--threads", os.cpu_count() or 1]


@pytest.fixture(scope="module")
def slow_set(tmp_path_factory):
    """A synthetic set big enough that an epoch takes a noticeable time at batch 8 (a few tenths of a second)."""
    folder = tmp_path_factory.mktemp("data")
    write_idx_set(folder, n_train=2400, n_test=200)
    return folder


def start_and_wait_for_checkpoint(args, folder, timeout=120):
    """Start ``fcnet train`` and return once its first checkpoint exists, the process still running."""
    proc = subprocess.Popen([*FCNET, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not (folder / "checkpoint.npz").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert proc.poll() is None, "training finished before it could be interrupted"
    return proc


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical_to_an_uninterrupted_run(slow_set, tmp_path):
    full = run(*lab_args(slow_set, tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    proc = start_and_wait_for_checkpoint(lab_args(slow_set, tmp_path / "killed"), tmp_path / "killed")
    time.sleep(0.03)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, state = load_checkpoint(tmp_path / "killed")  # never torn: the old checkpoint or the new one
    assert 1 <= state["epoch"] < 6
    assert not (tmp_path / "killed" / "model.npz").exists()
    resumed = run("train", "--resume", tmp_path / "killed", "--quiet", "--no-figures")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {state['epoch']}" in resumed.stdout
    a, b = fcnet.load_model(tmp_path / "full" / "model.npz"), fcnet.load_model(tmp_path / "killed" / "model.npz")
    for x, y in zip(a.parameters, b.parameters):
        assert_array_equal(x, y)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "killed"))
    for key in ("loss", "accuracy"):
        assert [e[key] for e in ma["epochs"]] == [e[key] for e in mb["epochs"]]
    assert ma["test"] == mb["test"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(slow_set, tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait_for_checkpoint(lab_args(slow_set, out), out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    _, state = load_checkpoint(out)
    assert lines[0] == (f"fcnet: interrupted; epoch {state['epoch']} is saved in {out}; "
                        f"resume with: fcnet train --resume {out}")
    assert not list(out.glob(".tmp-*"))  # no half-written checkpoint left behind


def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    x, _ = synthetic_images(400, np.random.default_rng(0))
    y = np.random.default_rng(1).integers(0, 10, 400)  # unlearnable: the gradients stay large
    model = fcnet.Sequential([fcnet.Dense(32, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile(fcnet.SGD(lr=0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])

    class Explode(fcnet.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.model.optimizer.learning_rate = 1e15  # weights overflow float32 within a few steps

    with pytest.raises(fcnet.DivergenceError, match=r"at epoch 3, batch \d+ \(mean loss so far this epoch: "
                                                    r"[0-9.e+-]+|none\); try a lower learning rate"):
        model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[Checkpoint(tmp_path, {}), Explode()])
    good, state = load_checkpoint(tmp_path)
    assert state["epoch"] == 2
    assert all(np.isfinite(p).all() for p in good.parameters)


@pytest.mark.slow
def test_cli_divergence_exits_1_in_one_line(tmp_path, idx_dir):
    r = run("train", "--dataset", f"idx:{idx_dir}", "--lr", "1e6", "--epochs", "3", "--out", tmp_path / "run")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("fcnet: error: loss became") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("field, value, message", [
    ("epoch", "2", "the epoch reached must be an integer ≥ 0, got '2'"),
    ("epoch", 1.5, "the epoch reached must be an integer"),
    ("history", {"loss": [0.5], "accuracy": [0.5, 0.4]}, "lists of one value per epoch"),
    ("rng_state", {"bit_generator": "nope"}, "the generator's state cannot be restored"),
])
def test_crafted_checkpoint_fields_are_one_line_errors(idx_dir, tmp_path, field, value, message):
    out = tmp_path / "run"
    fcnet.train_run(fcnet.TrainConfig(dataset=f"idx:{idx_dir}", hidden=(8,), epochs=2), out=out, verbose=0,
                    figures=False)
    with np.load(out / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    config = json.loads(str(arrays["config"]))
    config["extra"][field] = value
    write_npz(out / "checkpoint.npz", arrays, config)
    with pytest.raises(DataError, match=re.escape(message)):
        load_checkpoint(out)
    r = run("train", "--resume", out, "--epochs", "3")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
