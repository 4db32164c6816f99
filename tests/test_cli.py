import json
import os

import numpy as np
import pytest
from conftest import run

import fcnet
from fcnet.cli import main


@pytest.mark.slow
def test_train_end_to_end_writes_model_and_metrics(idx_dir, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--dataset", f"idx:{idx_dir}", "--hidden", "32,16", "--epochs", "3", "--batch-size", "50",
            "--validation-split", "0.2", "--out", out, "--metrics-json", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("fcnet: 784-32-16-10 relu/softmax, sgd lr 0.1, batch 50, 3 epochs, 480 ")
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/3", "2/3", "3/3"]
    assert "val_accuracy" in lines[3]
    assert "steps per epoch 10" in r.stdout  # ceil(480 / 50)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"config", "architecture", "steps_per_epoch", "epochs", "total_seconds", "test"} <= set(metrics)
    assert metrics["steps_per_epoch"] == 10 and len(metrics["epochs"]) == 3
    assert set(metrics["epochs"][0]) == {"epoch", "seconds", "loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert metrics["test"]["accuracy"] > 0.9
    assert metrics == json.loads((out / "metrics.json").read_text())

    r = run("evaluate", out / "model.npz", "--dataset", f"idx:{idx_dir}")
    assert r.returncode == 0 and f"test accuracy {metrics['test']['accuracy']:.4f}" in r.stdout
    r = run("summary", out / "model.npz")
    assert r.returncode == 0 and "(None, 32)" in r.stdout and "Total params: 25,818" in r.stdout


def test_same_seed_same_metrics(idx_dir, tmp_path):
    for name in ("a", "b"):
        assert main(["train", "--dataset", f"idx:{idx_dir}", "--epochs", "2", "--hidden", "8", "--quiet",
                     "--metrics-json", str(tmp_path / f"{name}.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert [e["loss"] for e in a["epochs"]] == [e["loss"] for e in b["epochs"]]


@pytest.mark.slow
def test_engines_agree_and_the_run_records_which_ran(idx_dir, tmp_path):
    pytest.importorskip("numba")
    for engine in ("numpy", "numba"):
        assert main(["train", "--dataset", f"idx:{idx_dir}", "--epochs", "2", "--hidden", "8", "--quiet",
                     "--engine", engine, "--metrics-json", str(tmp_path / f"{engine}.json")]) == 0
    ref, jit = (json.loads((tmp_path / f"{e}.json").read_text()) for e in ("numpy", "numba"))
    assert (ref["engine"], jit["engine"]) == ("numpy", "numba")
    assert jit["config"]["engine"] == "numba"
    np.testing.assert_allclose([e["loss"] for e in jit["epochs"]], [e["loss"] for e in ref["epochs"]], rtol=1e-5)
    r = run("train", "--dataset", f"idx:{idx_dir}", "--epochs", "1", "--loss", "mse", "--engine", "numba")
    assert r.returncode == 1 and r.stderr.strip() == (
        "fcnet: error: engine 'numba' cannot train this model: mse is compiled against float targets with a linear "
        "output only")


@pytest.mark.slow
def test_predict_images(idx_dir, tmp_path):
    from PIL import Image

    from fcnet.idx import read_idx

    assert main(["train", "--dataset", f"idx:{idx_dir}", "--epochs", "3", "--hidden", "32", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    x = read_idx(idx_dir / "t10k-images-idx3-ubyte.gz")[:3]
    y = read_idx(idx_dir / "t10k-labels-idx1-ubyte.gz")[:3]
    paths = []
    for i, img in enumerate(x):
        # dark strokes on white paper, twice the size: predict resizes and inverts
        Image.fromarray(255 - img).resize((56, 56)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    r = run("predict", tmp_path / "run" / "model.npz", *paths)
    assert r.returncode == 0, r.stderr
    predicted = [line.split(": ")[1].split()[0] for line in r.stdout.splitlines()]
    assert predicted == [str(v) for v in y]
    (tmp_path / "junk.png").write_text("not an image")
    r = run("predict", tmp_path / "run" / "model.npz", tmp_path / "junk.png")
    assert r.returncode == 1 and "not a readable image" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "-1"], "argument --lr: '-1': must be a number > 0"),
        (["--batch-size", "0"], "argument --batch-size: '0': must be an integer ≥ 1"),
        (["--activation", "mish"], "argument --activation: invalid choice: 'mish'"),
        (["--hidden", "300,x"], "must be integers ≥ 1 separated by commas"),
        (["--validation-split", "1"], "must be in [0, 1)"),
        (["--dataset", "cifar"], "must be one of mnist, fashion-mnist, kmnist, idx:DIR, or a table"),
        (["--optimizer", "adam", "--momentum", "0.9"], "momentum applies to optimizer sgd only"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, idx_dir):
    if "--dataset" not in args:
        args = [*args, "--dataset", f"idx:{idx_dir}", "--epochs", "1"]
    r = run("train", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("fcnet train: error:")


@pytest.mark.slow
def test_runtime_errors_exit_1_with_distinct_messages(tmp_path, idx_dir):
    env = {"XDG_CACHE_HOME": str(tmp_path / "c"), "HOME": str(tmp_path / "h")}
    r = run("evaluate", tmp_path / "missing.npz", "--dataset", f"idx:{idx_dir}", env=env)
    assert r.returncode == 1 and "no such model file" in r.stderr
    r = run("train", "--dataset", f"idx:{tmp_path}", env=env)
    assert r.returncode == 1 and "missing IDX file" in r.stderr and "Traceback" not in r.stderr
    r = run("train", "--dataset", f"idx:{idx_dir}", "--lr", "1e6", "--epochs", "3", env=env)
    assert r.returncode == 1 and "loss became" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("train", "--dataset", f"idx:{idx_dir}", "--limit", "1", "--validation-split", "0.5", env=env)
    assert r.returncode == 1 and "leaves no training or no validation data" in r.stderr


def test_python_m_and_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("fcnet ")


def test_train_defaults_are_the_seed_lab():
    from fcnet import TrainConfig

    c = TrainConfig()
    assert (c.dataset, c.hidden, c.activation, c.optimizer, c.lr, c.batch_size, c.epochs, c.seed) == (
        "mnist", (300,), "relu", "sgd", 0.1, 64, 20, 0)


def test_train_and_compare_take_a_flag_for_every_config_field(capsys):
    from fcnet.cli import build_parser
    from fcnet.config import TrainConfig

    parser = build_parser()
    for command in ("train", "compare"):
        flags = {a.dest for a in parser.subcommands[command]._actions}
        assert set(TrainConfig.field_names()) <= flags, set(TrainConfig.field_names()) - flags
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--dropout", "0.2", "--augment", "flip", "--framework", "torch"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--dropout, --augment: not mirrored by the other frameworks" in err and len(err.splitlines()) == 1


def test_predict_warns_about_a_blank_picture_and_uses_the_recorded_preparation(data, tmp_path, capsys):
    from PIL import Image

    assert main(["train", "--dataset", f"idx:{data}", "--hidden", "16", "--epochs", "1", "--quiet", "--no-figures",
                 "--preparation", "digits", "--out", str(tmp_path / "run")]) == 0
    model = fcnet.load_model(tmp_path / "run" / "model.npz")
    assert model.metadata["preparation"] == "digits" and model.metadata["dataset"] == f"idx:{data}"
    Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "model.npz"), str(tmp_path / "blank.png")]) == 0
    assert "blank.png: the prepared picture is blank" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_messages_in_the_subcommands_own_words(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", f"idx:{data}", "--bogus"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "fcnet train: error: unrecognized arguments: --bogus" in err
    assert "usage: fcnet train" in err
    assert main(["train", "--dataset", f"idx:{data}", "--hidden", "8", "--epochs", "1", "--quiet", "--no-figures",
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet", "--epochs", "1"]) == 0
    assert "has trained all 1 epochs already: nothing to train" in capsys.readouterr().out
    monkey_cwd = tmp_path / "cwd"
    monkey_cwd.mkdir()

    here = os.getcwd()
    os.chdir(monkey_cwd)
    try:
        (monkey_cwd / "report.html").write_text("my own page")
        with pytest.raises(SystemExit) as exit_:
            main(["report", str(tmp_path / "run")])
        assert exit_.value.code == 2 and (monkey_cwd / "report.html").read_text() == "my own page"
        assert main(["report", str(tmp_path / "run"), "-o", "report.html"]) == 0  # named: overwritten
    finally:
        os.chdir(here)
