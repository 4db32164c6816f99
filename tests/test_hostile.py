"""Inputs a hostile or careless user gives the runs, sweeps and stores: each is one line, never a traceback."""

import json
import sqlite3

import numpy as np
import pytest
from conftest import synthetic_images

import fcnet
from fcnet.cli import main
from fcnet.datasets import FILES
from fcnet.errors import FcnetError
from fcnet.idx import write_idx
from fcnet.sweep import load_spec


@pytest.mark.parametrize("text, message", [
    ("grid = [1, 2]\n", "grid must be a table"),
    ("random = 5\n", "random must be a table"),
    ("[random]\nsamples = 2\nseed = \"x\"\nlr = [0.1]\n", "seed must be an integer"),
    ("[random]\nsamples = 0\n", "samples = N (an integer ≥ 1)"),
])
def test_malformed_sweep_files_are_one_line_errors(tmp_path, text, message, capsys):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(FcnetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fcnet: error:")


def test_runs_refuses_a_database_that_is_not_a_run_store(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.commit()
    db.close()
    assert main(["runs", "list", "--store", str(other)]) == 1
    assert "not an fcnet run store (its tables: customers)" in capsys.readouterr().err
    db = sqlite3.connect(other)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["customers"]  # left as it was
    db.close()
    (tmp_path / "text.sqlite").write_text("not a database at all, just text " * 100)
    assert main(["runs", "list", "--store", str(tmp_path / "text.sqlite")]) == 1
    assert "not an fcnet run store" in capsys.readouterr().err


def test_a_run_folder_that_is_a_file_is_refused_before_training(idx_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--epochs", "1", "--out", str(tmp_path / "taken")]) == 1
    captured = capsys.readouterr()
    assert "is a file, not a run folder" in captured.err and "epoch 1/" not in captured.out
    assert (tmp_path / "taken").read_text() == "mine"


def test_temporary_files_of_a_killed_write_are_cleaned_on_the_next_start(idx_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-abc123-checkpoint.npz").write_bytes(b"half a checkpoint")
    fcnet.train_run(fcnet.TrainConfig(dataset=f"idx:{idx_dir}", hidden=(8,), epochs=1), out=out, verbose=0,
                    figures=False)
    assert not list(out.glob(".tmp-*")) and (out / "model.npz").is_file()


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_a_batch_larger_than_the_data_is_the_whole_data(idx_dir, engine, capsys):
    if engine == "numba":
        pytest.importorskip("numba")
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--epochs", "1", "--batch-size", "1000000000",
                 "--engine", engine, "--quiet"]) == 0
    assert "steps per epoch 1" in capsys.readouterr().out


@pytest.mark.slow
def test_more_than_ten_classes_train_report_and_predict(tmp_path, capsys):
    folder = tmp_path / "twelve"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (x, y), (xt, yt) = synthetic_images(1200, rng, n_classes=12), synthetic_images(240, rng, n_classes=12)
    for stem, array in zip(FILES, (x, y, xt, yt)):
        write_idx(folder / (stem + ".gz"), array)
    assert main(["train", "--dataset", f"idx:{folder}", "--epochs", "3", "--hidden", "32", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["confusion"]) == 12 and len(metrics["per_class"]) == 12
    model = fcnet.load_model(tmp_path / "run" / "model.npz")
    assert model.metadata["class_names"] == [str(i) for i in range(12)]
    from PIL import Image

    Image.fromarray(xt[0]).save(tmp_path / "pic.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "model.npz"), str(tmp_path / "pic.png"), "--style", "fit"]) == 0
    assert capsys.readouterr().out.split(": ")[1].split()[0] in [str(i) for i in range(12)]



@pytest.mark.slow
def test_os_errors_are_one_line(idx_dir, tmp_path):
    import subprocess
    import sys

    (tmp_path / "afile").write_text("x")
    for args in (["train", "--dataset", f"idx:{idx_dir}", "--epochs", "1", "--hidden", "4", "--quiet",
                  "--out", str(tmp_path / "afile" / "run")],
                 ["report", str(idx_dir.parent / "nothing"), "-o", str(tmp_path / "afile" / "r.html")]):
        r = subprocess.run([sys.executable, "-m", "fcnet", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("fcnet: error:")


def test_a_disk_that_fills_while_drawing_keeps_the_model_and_its_metrics(idx_dir, tmp_path, monkeypatch):
    import errno

    from fcnet import report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "save_figures", full)
    with pytest.raises(OSError, match="No space left"):
        fcnet.train_run(fcnet.TrainConfig(dataset=f"idx:{idx_dir}", hidden=(8,), epochs=1), out=tmp_path / "run",
                        verbose=0)
    model = fcnet.load_model(tmp_path / "run" / "model.npz")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == model.metadata["test_accuracy"]
    assert len(metrics["per_class"]) == len(metrics["confusion"]) == 10  # computed before, not by, the figures
    fcnet.train_run(fcnet.TrainConfig(dataset=f"idx:{idx_dir}", hidden=(8,), epochs=1), out=tmp_path / "bare",
                    verbose=0, figures=False)
    bare = json.loads((tmp_path / "bare" / "metrics.json").read_text())
    assert bare["per_class"] == metrics["per_class"] and bare["confusion"] == metrics["confusion"]
