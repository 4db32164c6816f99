"""Model files from strangers (fcnet.saving, fcnet.serialization): every crafted or mismatched file is one line,
nothing is unpickled, and a model is checked against the inputs it is given."""

import json
import os

import numpy as np
import pytest
from conftest import run, synthetic_images, write_npz

import fcnet
from fcnet.datasets import FILES
from fcnet.errors import DataError
from fcnet.idx import write_idx

CRAFTED = {
    "pickled": lambda d, a, c: write_npz(d / "f.npz", {**a, "param_0": np.array([Evil(d / "pwned")], dtype=object)}),
    "wrong dtype": lambda d, a, c: write_npz(d / "f.npz", {**a, "param_0": a["param_0"].astype(np.float64)}),
    "wrong shape": lambda d, a, c: write_npz(d / "f.npz", {**a, "param_0": a["param_0"][:-1]}),
    "missing array": lambda d, a, c: write_npz(d / "f.npz", {k: v for k, v in a.items() if k != "param_3"}),
    "extra array": lambda d, a, c: write_npz(d / "f.npz", {**a, "param_9": np.zeros(3, np.float32)}),
    "NaN weights": lambda d, a, c: write_npz(d / "f.npz", {**a, "param_2": np.full_like(a["param_2"], np.nan)}),
    "unknown version": lambda d, a, c: write_npz(d / "f.npz", a, {**c, "format_version": 99}),
    "not fcnet": lambda d, a, c: write_npz(d / "f.npz", a, {**c, "format": "something-else"}),
    "config not JSON": lambda d, a, c: write_npz(d / "f.npz", {**a, "config": np.array("{not json")}),
    "no config": lambda d, a, c: write_npz(d / "f.npz", {k: v for k, v in a.items() if k != "config"}),
    "truncated zip": lambda d, a, c: (d / "f.npz").write_bytes((d / "good.npz").read_bytes()[:3000]) and d / "f.npz",
    "random bytes": lambda d, a, c: (d / "f.npz").write_bytes(os.urandom(500)) and d / "f.npz",
    "empty": lambda d, a, c: (d / "f.npz").write_bytes(b"") or d / "f.npz",
    # a few KB claiming a network of 10^12 weights: refused before anything is allocated
    "huge units": lambda d, a, c: write_npz(d / "f.npz", a, {**c, "model": {**c["model"], "layers": [
        {**c["model"]["layers"][0], "units": 10**6, "input_dim": 10**6}, c["model"]["layers"][1]]}}),
    "width not a number": lambda d, a, c: write_npz(d / "f.npz", a, {**c, "model": {**c["model"], "layers": [
        {**c["model"]["layers"][0], "units": "8"}, c["model"]["layers"][1]]}}),
    "optimizer state of another shape": lambda d, a, c: write_npz(d / "f.npz", {**a, "opt_m_0": np.zeros((3, 3))}),
    "extra optimizer array": lambda d, a, c: write_npz(d / "f.npz", {**a, "opt_junk": np.zeros(10)}),
    "deeply nested config": lambda d, a, c: write_npz(d / "f.npz", {**a, "config": np.array("[" * 200_000)}),
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


@pytest.fixture
def saved(tmp_path):
    model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    return tmp_path, arrays, json.loads(str(arrays["config"]))


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


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
