"""train_run: one training run for the CLI, sweeps and notebooks alike; its records; resuming it."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_images
from numpy.testing import assert_array_equal

import fcnet
from fcnet import TrainConfig, train_run
from fcnet.cli import main
from fcnet.datasets import FILES
from fcnet.errors import DataError, RunInterrupted
from fcnet.idx import write_idx
from fcnet.records import ModelInfo, RunMetrics
from fcnet.sweep import load_spec


def config_for(idx_dir, **changes):
    # threads given: left to itself each run takes the cores free when it starts (fcnet.threads), and one thread
    # rounds differently from two; the runs compared here must multiply alike
    return TrainConfig(**{"dataset": f"idx:{idx_dir}", "hidden": (16,), "epochs": 2, "batch_size": 50, "threads": 2,
                          **changes})


@pytest.mark.slow
def test_the_library_and_the_cli_train_the_same_run(idx_dir, tmp_path):
    config = config_for(idx_dir, validation_split=0.2, optimizer="adam", lr=0.002)
    result = train_run(config, out=tmp_path / "lib", verbose=0)
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "16", "--epochs", "2", "--batch-size", "50",
                 "--validation-split", "0.2", "--optimizer", "adam", "--lr", "0.002", "--quiet", "--threads", "2",
                 "--out", str(tmp_path / "cli")]) == 0
    lib, cli = RunMetrics.read(tmp_path / "lib"), RunMetrics.read(tmp_path / "cli")
    assert lib.config == cli.config == config.to_dict()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert lib.history[key] == cli.history[key] == result.metrics.history[key]
    assert lib.test == cli.test == result.metrics.test and lib.engine == cli.engine
    a, b = fcnet.load_model(tmp_path / "lib" / "model.npz"), fcnet.load_model(tmp_path / "cli" / "model.npz")
    for p, q, r in zip(a.parameters, b.parameters, result.model.parameters):
        assert_array_equal(p, q)
        assert_array_equal(p, r)
    assert a.metadata == b.metadata == result.model.metadata
    assert [p.name for p in result.files][:2] == ["model.npz", "metrics.json"]
    assert all(p.is_file() for p in result.files)


def test_verbose_prints_the_run_as_the_cli_does(idx_dir, capsys):
    result = train_run(config_for(idx_dir), verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fcnet: 784-16-10 relu/softmax, sgd lr 0.1, batch 50, 2 epochs, 600 ")
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/2", "2/2"]
    assert lines[-1] == f"test loss {result.metrics.test['loss']:.4f}  test accuracy " \
                        f"{result.metrics.test['accuracy']:.4f}"
    assert result.out is None and result.files == []
    train_run(config_for(idx_dir), verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_resuming_continues_bit_identically_and_refuses_changed_settings(idx_dir, tmp_path):
    full = train_run(config_for(idx_dir, epochs=3), out=tmp_path / "full", verbose=0, figures=False)
    train_run(config_for(idx_dir), out=tmp_path / "part", verbose=0, figures=False)
    with pytest.raises(ValueError, match=r"lr is 0\.1 in the checkpointed run in .*part, not 0\.5; .*only epochs, "
                                         r"engine, data_dir, preparation, threads may change"):
        train_run(config_for(idx_dir, epochs=3, lr=0.5), out=tmp_path / "part", resume=True, verbose=0, figures=False)
    with pytest.raises(ValueError, match="has already trained 2 epochs"):
        train_run(config_for(idx_dir, epochs=1), out=tmp_path / "part", resume=True, verbose=0, figures=False)
    with pytest.raises(ValueError, match="resume needs the run folder"):
        train_run(config_for(idx_dir), resume=True)
    resumed = train_run(config_for(idx_dir, epochs=3), out=tmp_path / "part", resume=True, verbose=0, figures=False)
    assert resumed.metrics.history["loss"] == full.metrics.history["loss"]
    for p, q in zip(full.model.parameters, resumed.model.parameters):
        assert_array_equal(p, q)
    more = train_run(config_for(idx_dir, epochs=4, engine="numpy"), out=tmp_path / "part", resume=True,
                     verbose=0, figures=False)
    assert more.metrics.engine == "numpy" and more.metrics.history["loss"][:3] == full.metrics.history["loss"]


@pytest.mark.slow
def test_cli_resume_writes_where_it_is_told_and_names_a_refused_flag(idx_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "8", "--epochs", "2", "--quiet",
                 "--no-figures", "--out", str(run)]) == 0
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    capsys.readouterr()
    # 20 is the default of --epochs: given explicitly, it is honoured (fcnet 0.1 took it for "not given")
    assert main(["train", "--resume", str(moved), "--epochs", "3", "--quiet"]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert not run.exists() and len(RunMetrics.read(moved).epochs) == 3
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(moved), "--epochs", "4", "--lr", "0.5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr is 0.1 in the checkpointed run" in err[0]
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(moved), "--out", str(tmp_path / "elsewhere")])
    assert "--resume DIR writes to DIR" in capsys.readouterr().err


def test_ctrl_c_says_what_was_saved(idx_dir, tmp_path):
    class CtrlC(fcnet.Callback):
        def __init__(self, epoch):
            self.epoch = epoch

        def on_epoch_begin(self, epoch, logs):
            if epoch == self.epoch:
                raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="interrupted; no epoch finished, nothing saved in"):
        train_run(config_for(idx_dir), out=tmp_path / "a", callbacks=[CtrlC(0)], verbose=0, figures=False)
    with pytest.raises(RunInterrupted, match=r"interrupted; epoch 1 is saved in .*b; resume with: fcnet train "
                                             r"--resume .*b$"):
        train_run(config_for(idx_dir), out=tmp_path / "b", callbacks=[CtrlC(1)], verbose=0, figures=False)
    with pytest.raises(RunInterrupted, match=r"nothing saved \(use --out DIR"):
        train_run(config_for(idx_dir), callbacks=[CtrlC(1)], verbose=0)
    assert issubclass(RunInterrupted, KeyboardInterrupt)  # Jupyter's stop button still means stop


def test_model_info_defaults_and_what_a_run_records(idx_dir):
    bare = fcnet.Sequential([fcnet.Dense(4, "relu", input_dim=784), fcnet.Dense(3, "softmax")])
    info = ModelInfo.of(bare)
    assert info == ModelInfo(None, ("0", "1", "2"), (28, 28), "digits", None)
    odd = fcnet.Sequential([fcnet.Dense(3, "softmax", input_dim=50)])
    odd.metadata = {"class_names": ["a"], "image_shape": [5, 5], "test_accuracy": "high"}  # each wrong
    assert ModelInfo.of(odd) == ModelInfo(None, ("0", "1", "2"), None, "digits", None)
    model = train_run(config_for(idx_dir, epochs=1), verbose=0).model
    info = ModelInfo.of(model)
    assert (info.dataset, info.image_shape, info.preparation) == (f"idx:{idx_dir}", (28, 28), "fit")
    assert info.test_accuracy > 0.5 and len(info.class_names) == 10


def test_serve_and_predict_prepare_pictures_the_same_way(idx_dir, tmp_path):
    pytest.importorskip("fastapi")
    from fcnet.serve import describe

    for metadata, expected in (({}, "digits"), ({"dataset": "fashion-mnist"}, "fit"), ({"dataset": "kmnist"},
                                                                                        "digits"),
                               ({"dataset": "mnist", "preparation": "fit"}, "fit")):
        model = fcnet.Sequential([fcnet.Dense(10, "softmax", input_dim=784)], seed=0)
        model.metadata = metadata
        assert describe(model, "m.npz")["preparation"] == ModelInfo.of(model).preparation == expected


def test_metrics_files_are_read_in_one_place_with_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no metrics.json"):
        RunMetrics.read(tmp_path)
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not an fcnet metrics file"):
        RunMetrics.read(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {}, "epochs": []}))
    with pytest.raises(DataError, match="missing architecture, engine, steps_per_epoch, test, total_seconds"):
        RunMetrics.read(tmp_path)
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        RunMetrics.read(tmp_path)


def test_evaluate_and_plot_use_the_data_set_the_model_was_trained_on(idx_dir, tmp_path, capsys):
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "8", "--epochs", "1", "--quiet",
                 "--no-figures", "--out", str(tmp_path / "run")]) == 0
    accuracy = RunMetrics.read(tmp_path / "run").test["accuracy"]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "model.npz")]) == 0
    assert f"test accuracy {accuracy:.4f}  (200 idx:{idx_dir} images)" in capsys.readouterr().out
    bare = fcnet.Sequential([fcnet.Dense(10, "softmax", input_dim=784)])
    bare.compile("sgd", "sparse_categorical_crossentropy")
    bare.save(tmp_path / "bare.npz")
    assert main(["evaluate", str(tmp_path / "bare.npz")]) == 1
    assert "no data set recorded with the model; pass --dataset" in capsys.readouterr().err


def test_the_shipped_sweeps_are_found_by_name():
    from fcnet.sweep import bundled_sweeps, spec_path, trials

    assert bundled_sweeps() == ["seed002", "seed004"]
    assert len(trials(*load_spec(spec_path("seed004")))) == 45
    assert str(spec_path("no/such.toml")) == "no/such.toml"  # a path stays a path (and fails as one)


@pytest.mark.slow
def test_a_notebook_line_trains_fashion_mnist(fashion):
    code = ("import fcnet; r = fcnet.train_run(fcnet.TrainConfig(dataset='fashion-mnist', limit=5000, epochs=1), "
            "verbose=0); print(r.metrics.test['accuracy'], len(r.metrics.epochs))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    accuracy, epochs = out.stdout.split()
    assert float(accuracy) > 0.5 and epochs == "1"


@pytest.mark.slow
def test_plot_finds_the_data_where_the_run_found_it(tmp_path, capsys):
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not (shared / "mnist").is_dir():
        pytest.skip("the real MNIST copy beside the checkout is not here")
    assert main(["train", "--dataset", "mnist", "--data-dir", str(shared), "--limit", "1000", "--epochs", "1",
                 "--hidden", "8", "--quiet", "--no-figures", "--out", str(tmp_path / "run")]) == 0
    # no --data-dir again: MNIST is nowhere else here (the cache is isolated), the run says where it was
    assert main(["plot", str(tmp_path / "run"), "--kind", "confusion", "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_folder_trained_again_holds_only_the_new_runs_files(idx_dir, tmp_path):
    pytest.importorskip("matplotlib")
    first = train_run(config_for(idx_dir), out=tmp_path / "run", verbose=0)
    pictures = sorted(p.name for p in first.files[2:])
    assert pictures and all((tmp_path / "run" / name).is_file() for name in pictures)
    second = train_run(config_for(idx_dir, epochs=1), out=tmp_path / "run", verbose=0, figures=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.npz", "metrics.json", "model.npz"]
    assert RunMetrics.read(tmp_path / "run").history["loss"] == second.metrics.history["loss"]


def test_metrics_json_records_the_rate_each_epoch_trained_at(idx_dir, tmp_path):
    from fcnet.schedules import per_epoch

    config = config_for(idx_dir, epochs=4, lr=0.2, lr_schedule="cosine", warmup=1)
    train_run(config, out=tmp_path / "cos", verbose=0, figures=False)
    rates = [e["lr"] for e in json.loads((tmp_path / "cos" / "metrics.json").read_text())["epochs"]]
    schedule = per_epoch("cosine", 0.2, 4, 1)
    assert rates == [schedule(e) for e in range(4)] and len(set(rates)) == 4
    decayed = train_run(config_for(idx_dir, epochs=3, lr=0.2, lr_decay=0.5), verbose=0).metrics
    assert decayed.history["lr"] == [0.2, 0.1, 0.05]
    plain = train_run(config_for(idx_dir, epochs=2, lr=0.3), verbose=0).metrics  # no callback sets it
    assert plain.history["lr"] == [0.3, 0.3]


@pytest.mark.slow
def test_label_smoothing_trains_what_it_says_from_the_library_and_the_cli(idx_dir, tmp_path, capsys):
    smooth = train_run(config_for(idx_dir, label_smoothing=0.2), verbose=0)
    assert smooth.model.loss.label_smoothing == 0.2 and smooth.metrics.config["label_smoothing"] == 0.2
    assert smooth.metrics.engine == ("numba" if importlib.util.find_spec("numba") else "numpy")
    plain = train_run(config_for(idx_dir), verbose=0)
    assert smooth.metrics.history["loss"] != plain.metrics.history["loss"]
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "16", "--epochs", "2", "--batch-size", "50",
                 "--threads", "2", "--label-smoothing", "0.2", "--quiet", "--no-figures", "--out",
                 str(tmp_path / "cli")]) == 0
    for p, q in zip(smooth.model.parameters, fcnet.load_model(tmp_path / "cli" / "model.npz").parameters):
        assert_array_equal(p, q)
    for flags, message in ((["--label-smoothing", "1"], "--label-smoothing: '1': must be in [0, 1)"),
                           (["--label-smoothing", "0.1", "--loss", "mse"], "applies to the categorical")):
        with pytest.raises(SystemExit):
            main(["train", "--dataset", f"idx:{idx_dir}", *flags])
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_weight_decay_clipping_and_l2_flags_train_what_they_say_and_resume_bit_identically(idx_dir, tmp_path):
    flags = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.05, "clipnorm": 0.5, "l2": 1e-3}
    full = train_run(config_for(idx_dir, epochs=3, **flags), out=tmp_path / "full", verbose=0, figures=False)
    model = full.model
    assert model.optimizer.get_config()["weight_decay"] == 0.05 and model.optimizer.clipnorm == 0.5
    assert all(layer.kernel_regularizer.l2 == 1e-3 for layer in model.layers)
    assert full.metrics.engine == ("numba" if importlib.util.find_spec("numba") else "numpy")
    assert full.metrics.config["clipnorm"] == 0.5
    assert main(["train", "--dataset", f"idx:{idx_dir}", "--hidden", "16", "--epochs", "2", "--batch-size", "50",
                 "--threads", "2", "--optimizer", "adamw", "--lr", "0.003", "--weight-decay", "0.05", "--clipnorm",
                 "0.5", "--l2", "0.001", "--quiet", "--no-figures", "--out", str(tmp_path / "part")]) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--epochs", "3", "--quiet", "--no-figures"]) == 0
    resumed = fcnet.load_model(tmp_path / "part" / "model.npz")
    for p, q in zip(model.parameters, resumed.parameters):
        assert_array_equal(p, q)
    plain = train_run(config_for(idx_dir, epochs=3, optimizer="adamw", lr=0.003), verbose=0).model
    assert sum(float((p**2).sum()) for p in plain.parameters[::2]) > sum(
        float((p**2).sum()) for p in model.parameters[::2])  # decay and penalty keep the weights smaller


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch_and_carries_its_watch_over_a_resume(idx_dir, tmp_path, capsys):
    config = config_for(idx_dir, epochs=40, lr=3.0, validation_split=0.3, early_stopping=2)  # lr 3: it wobbles
    whole = train_run(config, out=tmp_path / "whole", verbose=0, figures=False)
    losses = whole.metrics.history["val_loss"]
    best = losses.index(min(losses))
    assert len(losses) == best + 3 < 40  # stopped two epochs after its best
    assert [p.name for p in (tmp_path / "whole").glob("best-*.npz")] == [f"best-{best + 1}.npz"]

    class Killed(fcnet.Callback):  # killed right after the best epoch's checkpoint: the watch must carry on
        def on_epoch_end(self, epoch, logs):
            if epoch == best + 1:
                raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        train_run(config, out=tmp_path / "part", callbacks=[Killed()], verbose=0, figures=False)
    resumed = train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    assert resumed.metrics.history["val_loss"] == losses
    for p, q in zip(whole.model.parameters, resumed.model.parameters):  # both the best epoch's weights
        assert_array_equal(p, q)
    again = train_run(config, out=tmp_path / "part", resume=True,
                      verbose=1, figures=False)  # it had stopped: nothing to train
    assert "nothing to train" in capsys.readouterr().out
    for p, q in zip(whole.model.parameters, again.model.parameters):
        assert_array_equal(p, q)
    (tmp_path / "part" / f"best-{best + 1}.npz").unlink()
    with pytest.raises(fcnet.FcnetError, match="best weights .* are missing"):
        train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    with pytest.raises(ValueError, match="early_stopping watches the validation loss"):
        config_for(idx_dir, early_stopping=3)


@pytest.mark.slow
def test_reduce_lr_on_plateau_cuts_the_rate_and_a_resumed_run_carries_on_its_counters(idx_dir, tmp_path):
    from fcnet.callbacks import ReduceLROnPlateau
    from fcnet.checkpoint import load_checkpoint

    config = config_for(idx_dir, epochs=10, validation_split=0.2, optimizer="sgd", lr=2.0, reduce_lr=2)
    full = train_run(config, out=tmp_path / "full", verbose=0, figures=False)
    history = load_checkpoint(tmp_path / "full")[1]["history"]  # each epoch's rate, as the checkpoint keeps it
    rates = history["lr"]
    assert rates[0] == 2.0 and min(rates) < 2.0  # the validation loss stalled at this rate, and it was cut
    assert all(b in (a, a / 10) for a, b in zip(rates, rates[1:]))
    waiting = []  # the epochs after which the watch had counted one epoch without improvement
    for epoch in range(1, 10):
        watch = ReduceLROnPlateau(patience=2)
        watch.resume({k: v[:epoch] for k, v in history.items()})
        waiting += [epoch] if watch.wait == 1 else []
    assert waiting
    train_run(config.replace(epochs=waiting[0]), out=tmp_path / "part", verbose=0, figures=False)  # killed there
    resumed = train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    assert load_checkpoint(tmp_path / "part")[1]["history"]["lr"] == rates
    assert resumed.metrics.history["loss"] == full.metrics.history["loss"]
    for p, q in zip(full.model.parameters, resumed.model.parameters):
        assert_array_equal(p, q)
    with pytest.raises(ValueError, match="reduce_lr watches the validation loss"):
        config_for(idx_dir, reduce_lr=2)
    with pytest.raises(ValueError, match="reduce_lr and lr_schedule/lr_decay all set the learning rate"):
        config_for(idx_dir, reduce_lr=2, validation_split=0.1, lr_decay=0.9)


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
