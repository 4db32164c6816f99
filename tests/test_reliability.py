"""Nothing lost, nothing trusted blindly: real kills, real crafted files, real broken servers."""

import dataclasses
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import synthetic_images, write_idx_set
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import fcnet
from fcnet import datasets
from fcnet.checkpoint import Checkpoint, load_checkpoint
from fcnet.datasets import FILES
from fcnet.errors import DataError
from fcnet.idx import read_idx, write_idx

FCNET = [sys.executable, "-m", "fcnet"]


def run(*args):
    return subprocess.run([*FCNET, *map(str, args)], capture_output=True, text=True, timeout=300)


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


@pytest.fixture(scope="module")
def slow_set(tmp_path_factory):
    """A synthetic set big enough that an epoch takes a noticeable time at batch 8 (a few tenths of a second)."""
    folder = tmp_path_factory.mktemp("data")
    write_idx_set(folder, n_train=2400, n_test=200)
    return folder


def lab_args(data, out, epochs=6):
    # One thread count for every run compared here: one thread rounds differently from several (fcnet.threads),
    # and left to itself each run would take the cores free when it starts.
    return ["train", "--dataset", f"idx:{data}", "--epochs", epochs, "--batch-size", "8", "--optimizer", "adam",
            "--lr", "0.001", "--quiet", "--no-figures", "--out", out, "--threads", os.cpu_count() or 1]


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


# -- model files ----------------------------------------------------------------------------------------------

class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def saved(tmp_path):
    model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    return tmp_path, arrays, json.loads(str(arrays["config"]))


def _write(path, arrays, config=None):
    if config is not None:
        arrays = {**arrays, "config": np.array(json.dumps(config))}
    np.savez(path, **arrays)
    return path


CRAFTED = {
    "pickled": lambda d, a, c: _write(d / "f.npz", {**a, "param_0": np.array([Evil(d / "pwned")], dtype=object)}),
    "wrong dtype": lambda d, a, c: _write(d / "f.npz", {**a, "param_0": a["param_0"].astype(np.float64)}),
    "wrong shape": lambda d, a, c: _write(d / "f.npz", {**a, "param_0": a["param_0"][:-1]}),
    "missing array": lambda d, a, c: _write(d / "f.npz", {k: v for k, v in a.items() if k != "param_3"}),
    "extra array": lambda d, a, c: _write(d / "f.npz", {**a, "param_9": np.zeros(3, np.float32)}),
    "NaN weights": lambda d, a, c: _write(d / "f.npz", {**a, "param_2": np.full_like(a["param_2"], np.nan)}),
    "unknown version": lambda d, a, c: _write(d / "f.npz", a, {**c, "format_version": 99}),
    "not fcnet": lambda d, a, c: _write(d / "f.npz", a, {**c, "format": "something-else"}),
    "config not JSON": lambda d, a, c: _write(d / "f.npz", {**a, "config": np.array("{not json")}),
    "no config": lambda d, a, c: _write(d / "f.npz", {k: v for k, v in a.items() if k != "config"}),
    "truncated zip": lambda d, a, c: (d / "f.npz").write_bytes((d / "good.npz").read_bytes()[:3000]) and d / "f.npz",
    "random bytes": lambda d, a, c: (d / "f.npz").write_bytes(os.urandom(500)) and d / "f.npz",
    "empty": lambda d, a, c: (d / "f.npz").write_bytes(b"") or d / "f.npz",
    # a few KB claiming a network of 10^12 weights: refused before anything is allocated
    "huge units": lambda d, a, c: _write(d / "f.npz", a, {**c, "model": {**c["model"], "layers": [
        {**c["model"]["layers"][0], "units": 10**6, "input_dim": 10**6}, c["model"]["layers"][1]]}}),
    "width not a number": lambda d, a, c: _write(d / "f.npz", a, {**c, "model": {**c["model"], "layers": [
        {**c["model"]["layers"][0], "units": "8"}, c["model"]["layers"][1]]}}),
    "optimizer state of another shape": lambda d, a, c: _write(d / "f.npz", {**a, "opt_m_0": np.zeros((3, 3))}),
    "extra optimizer array": lambda d, a, c: _write(d / "f.npz", {**a, "opt_junk": np.zeros(10)}),
    "deeply nested config": lambda d, a, c: _write(d / "f.npz", {**a, "config": np.array("[" * 200_000)}),
}
MESSAGES = {
    "pickled": "not a readable fcnet model file", "wrong dtype": "param_0 is float64",
    "wrong shape": "param_0 has shape [783, 8]",
    "missing array": "missing ['param_3']", "extra array": "unexpected ['param_9']",
    "NaN weights": "param_2 contains NaN",
    "unknown version": "unknown model format version 99", "not fcnet": "not an fcnet model file",
    "config not JSON": "invalid model config", "no config": "no model config", "truncated zip": "not a readable",
    "random bytes": "not a readable", "empty": "not a readable",
    "huge units": "param_0 has shape [784, 8], the config needs [1000000, 1000000]",
    "width not a number": "layer widths must be integers",
    "optimizer state of another shape": "opt_m_0 is float64[3, 3]",
    "extra optimizer array": "optimizer state does not match the optimizer",
    "deeply nested config": "invalid model config",
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_model_files_are_rejected_in_one_line(saved, kind):
    folder, arrays, config = saved
    path = CRAFTED[kind](folder, arrays, config)
    with pytest.raises(DataError, match=MESSAGES[kind].replace("[", r"\[").replace("]", r"\]")) as info:
        fcnet.load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    r = run("summary", path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (folder / "pwned").exists()  # nothing was unpickled, nothing ran


def test_input_width_is_checked_against_the_loaded_model(saved, tmp_path):
    folder, _, _ = saved
    model = fcnet.load_model(folder / "good.npz")
    with pytest.raises(ValueError, match="inputs have 100 features but the model expects 784"):
        model.predict(np.zeros((2, 100)))
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for stem, array in zip(FILES, [*synthetic_images(50, rng, side=20), *synthetic_images(20, rng, side=20)]):
        write_idx(small / (stem + ".gz"), array)
    r = run("evaluate", folder / "good.npz", "--dataset", f"idx:{small}")
    assert r.returncode == 1
    assert r.stderr.strip() == f"fcnet: error: idx:{small}: images have 400 pixels but the model expects 784 inputs"


# -- data files and downloads ---------------------------------------------------------------------------------

VALID = gzip.decompress(gzip.compress(b"\0\0\x08\x03" + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
                                      + (5).to_bytes(4, "big") + bytes(range(60))))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(data=st.data(), compress=st.booleans())
def test_mutated_idx_files_give_consistent_arrays_or_data_errors(tmp_path_factory, data, compress):
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
        at = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[at] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[at:]
        elif kind == "append":
            blob += data.draw(st.binary(min_size=1, max_size=8))
        else:
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path_factory.mktemp("mut") / "f"
    raw = bytes(blob)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    try:
        a = read_idx(path)
    except DataError:
        return
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    assert list(a.shape) == dims and a.nbytes == len(raw) - 4 - 4 * raw[3]


def _patch_registry(monkeypatch, name, blobs, mirrors):
    md5 = {stem: hashlib.md5(b).hexdigest() for stem, b in blobs.items()}
    monkeypatch.setitem(datasets.REGISTRY, name, dataclasses.replace(datasets.REGISTRY[name], md5=md5,
                                                                     mirrors=mirrors, sha256={}))
    monkeypatch.setattr(datasets, "SYSTEM_ROOT", datasets.cache_dir() / "none")
    monkeypatch.setenv("HOME", str(datasets.cache_dir() / "home"))


def _blobs(tmp_path, **kwargs):
    write_idx_set(tmp_path / "src", n_train=100, n_test=30, **kwargs)
    return {stem: (tmp_path / "src" / (stem + ".gz")).read_bytes() for stem in FILES}


def test_dropped_connection_moves_on_to_the_next_mirror(tmp_path, monkeypatch, mirror):
    blobs = _blobs(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/drop/{stem}.gz"] = "drop"
        mirror.routes[f"/ok/{stem}.gz"] = blob
    _patch_registry(monkeypatch, "mnist", blobs, (mirror.url + "/drop/", mirror.url + "/ok/"))
    (x, _), _ = datasets.load("mnist")
    assert len(x) == 100 and f"/drop/{FILES[0]}.gz" in mirror.hits


def test_a_corrupt_file_in_the_cache_is_fetched_again(tmp_path, monkeypatch, mirror, caplog):
    blobs = _blobs(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/m/{stem}.gz"] = blob
    _patch_registry(monkeypatch, "mnist", blobs, (mirror.url + "/m/",))
    datasets.load("mnist")
    cached = datasets.cache_dir() / "mnist" / (FILES[1] + ".gz")
    cached.write_bytes(gzip.compress(b"\0\0\x08\x01" + (100).to_bytes(4, "big") + bytes(100)))  # valid IDX, wrong data
    hits = len(mirror.hits)
    (_, y), _ = datasets.load("mnist")
    assert len(mirror.hits) == hits + 1 and "downloading it again" in caplog.text
    assert cached.read_bytes() == blobs[FILES[1]]
    assert y.any()


def test_labels_outside_the_classes_are_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    arrays = write_idx_set(folder, n_train=50, n_test=20)
    labels = arrays[1].copy()
    labels[7] = 12
    write_idx(folder / (FILES[1] + ".gz"), labels)
    blobs = {stem: (folder / (stem + ".gz")).read_bytes() for stem in FILES}
    _patch_registry(monkeypatch, "kmnist", blobs, ())
    with pytest.raises(DataError, match="train labels must lie in 0..9, found 12"):
        datasets.load("kmnist", data_dir=folder)


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
    _write(out / "checkpoint.npz", arrays, config)
    with pytest.raises(DataError, match=re.escape(message)):
        load_checkpoint(out)
    r = run("train", "--resume", out, "--epochs", "3")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
