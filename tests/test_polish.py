"""The rough edges a new user hit: pictures with transparency, blank inputs, how a model's pictures are prepared,
the command line's messages, and what the figures and the report show."""

import io
import json
import re

import numpy as np
import pytest
from conftest import write_idx_set

import fcnet
from fcnet.cli import main
from fcnet.records import RunMetrics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_idx_set(folder, n_train=600, n_test=200)
    return folder


def _png(pixels, mode):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_transparent_background_becomes_paper_not_ink():
    from fcnet.images import decode_image, is_blank, mnist_style

    rgba = np.zeros((40, 40, 4), np.uint8)  # a drawing tool's export: black strokes on nothing
    rgba[8:32, 18:22] = (0, 0, 0, 255)
    gray = decode_image(_png(rgba, "RGBA"))
    assert gray[0, 0] == 255 and gray[20, 20] == 0  # transparent → white paper behind dark ink
    prepared = mnist_style(gray)
    assert not is_blank(prepared) and prepared.max() > 200
    light = rgba.copy()
    light[8:32, 18:22] = (255, 255, 255, 255)  # white strokes on nothing: black behind them
    gray = decode_image(_png(light, "RGBA"))
    assert gray[0, 0] == 0 and gray[20, 20] == 255
    assert is_blank(mnist_style(np.full((30, 30), 255, np.uint8))) and is_blank(np.zeros(784))


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
    import os

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


def test_runs_commands_have_headers_the_chosen_metric_and_names(tmp_path, capsys):
    from fcnet.runstore import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    for rid, hidden, loss in (("aaa", [64], 0.5), ("bbb", [128], 0.4)):
        config = fcnet.TrainConfig(hidden=hidden).to_dict()
        store.start(rid, config, tmp_path / rid)
        epochs = [{"epoch": 1, "seconds": 0.5, "loss": 1.0, "accuracy": 0.5}]
        store.finish(rid, RunMetrics(config, "784-64-10", 1, epochs, 1.0, "numpy", {"loss": loss, "accuracy": 0.9}),
                     "host", {})
    store.close()
    assert main(["runs", "best", "--store", str(tmp_path), "--metric", "test_loss"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "status", "test_loss"]
    assert lines[1].split()[:3] == ["bbb", "done", "0.4000"] and lines[1].endswith("hidden=128")
    with pytest.raises(SystemExit) as exit_:
        main(["runs", "show", "--store", str(tmp_path)])
    assert exit_.value.code == 2 and "runs show needs a run ID" in capsys.readouterr().err


def test_compare_says_not_installed_on_stderr(data, capsys, monkeypatch):
    from fcnet import compare

    def missing(name, model, batch_size):
        raise compare.NotInstalled(name)

    monkeypatch.setattr(compare, "make_runner", missing)
    assert main(["compare", "--framework", "keras", "--dataset", f"idx:{data}", "--epochs", "1", "--hidden", "8"]) == 0
    captured = capsys.readouterr()
    assert "keras: not installed" in captured.err and "not installed" not in captured.out


@pytest.mark.slow
def test_figures_integer_epochs_a_weight_scale_and_natural_axes(tmp_path):
    from fcnet import plots
    from fcnet.sweep import _natural

    fig = plots.learning_curves({"loss": [1.0, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8]})
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    model = fcnet.Sequential([fcnet.Dense(4, input_dim=784)], seed=0)
    fig = plots.first_layer_weights(model, k=4)
    assert len(fig.axes) == 4 + 1 and fig.axes[-1].get_ylabel() == "weight"  # the colour bar
    assert sorted(["1024", "128", "256", "512", "64", "64,32"], key=_natural) == [
        "64", "64,32", "128", "256", "512", "1024"]


@pytest.mark.slow
def test_report_navigation_names_and_settings_as_written(data, tmp_path):
    for name, hidden in (("a", "32"), ("b", "16,8")):
        assert main(["train", "--dataset", f"idx:{data}", "--hidden", hidden, "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / name)]) == 0
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<nav><strong>Contents</strong>" in page and 'href="#comparison"' in page
    assert "hidden=16,8" in page and "hidden=32" in page  # runs named by what differs
    assert "<td>16,8</td>" in page and "[16, 8]" not in page
    for hidden_flag in ("quiet", "no_figures", "out"):
        assert f"<td>{hidden_flag}</td>" not in page
    assert re.search(r"<title>fcnet report — a, b</title>", page)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["config"]["hidden"] == [32]
