"""fcnet sweep on a real Dask LocalCluster: parallel trials, a worker killed mid-sweep, resumption, the store."""

import os
import signal
import sqlite3
import threading
import time

import pytest
from conftest import write_idx_set

import fcnet
from fcnet.cli import main
from fcnet.errors import FcnetError
from fcnet.records import RunMetrics
from fcnet.runstore import RunStore
from fcnet.sweep import load_spec, parse_trial, run_sweep, trials

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed: pip install fcnet[sweep]")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_idx_set(folder, n_train=4000, n_test=200)
    return folder


def spec(tmp_path, data, epochs=4, batch=8):
    path = tmp_path / "sweep.toml"
    path.write_text(f'''
dataset = "idx:{data}"
epochs = {epochs}
batch_size = {batch}
[grid]
hidden = ["32", "48,16"]
optimizer = [{{optimizer = "sgd", lr = 0.05}}, {{optimizer = "adam", lr = 0.001}}]
''')
    return path


def test_grid_random_and_identity():
    fixed, grid, random = {"epochs": 2}, {"hidden": ["32", "64"], "seed": [0, 1]}, {}
    assert len(trials(fixed, grid, random)) == 4
    # the identity is the parsed configuration: "64" and 64 are the same trial, output paths do not count
    assert parse_trial({"hidden": "64", "epochs": 2})[0] == parse_trial({"hidden": 64, "epochs": "2"})[0]
    # where the data is read from is not part of what is learned
    assert parse_trial({"hidden": "64"})[0] == parse_trial({"hidden": "64", "data_dir": "/elsewhere"})[0]
    with pytest.raises(FcnetError, match="unknown setting 'out'"):
        parse_trial({"hidden": "64", "out": "x"})
    assert parse_trial({"hidden": "64"})[0] != parse_trial({"hidden": "64", "seed": 1})[0]
    # a setting left at fcnet train's default is the same trial as one that never mentions it
    assert parse_trial({"hidden": "64", "lr_decay": 1.0})[0] == parse_trial({"hidden": "64"})[0]
    drawn = trials({}, {}, {"samples": 5, "seed": 3, "lr": {"log_uniform": [1e-4, 1e-1]}, "hidden": ["32", "64"],
                            "batch_size": {"int": [16, 64]}})
    assert len(drawn) == 5 and all(1e-4 <= t["lr"] <= 1e-1 and 16 <= t["batch_size"] <= 64 for t in drawn)
    assert drawn == trials({}, {}, {"samples": 5, "seed": 3, "lr": {"log_uniform": [1e-4, 1e-1]},
                                    "hidden": ["32", "64"], "batch_size": {"int": [16, 64]}})


def test_bad_sweep_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    with pytest.raises(FcnetError, match="not valid TOML"):
        load_spec(bad)
    bad.write_text("[grid]\nlr = [-1.0]\n")
    with pytest.raises(FcnetError, match="must be a number > 0"):
        parse_trial(trials(*load_spec(bad))[0])
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 1


@pytest.mark.slow
def test_sweep_survives_a_killed_worker_records_each_trial_once_and_reruns_nothing(tmp_path, data):
    path = spec(tmp_path, data)
    out = tmp_path / "sweep"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    result = {}
    try:
        pids = list(client.run(os.getpid).values())
        sweeper = threading.Thread(target=lambda: result.update(
            ranked=run_sweep(path, out, scheduler=cluster.scheduler_address, progress=False)))
        sweeper.start()
        deadline = time.monotonic() + 120
        while not list((out / "trials").glob("*/checkpoint.npz")):  # a trial is part-way through
            assert time.monotonic() < deadline and sweeper.is_alive()
            time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)
        sweeper.join(timeout=300)
        assert not sweeper.is_alive()
    finally:
        client.close()
        cluster.close()
    ranked, failed = result["ranked"]
    assert len(ranked) == 4 and not failed
    db = sqlite3.connect(out / "runs.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs WHERE status = 'done'").fetchone() == (4, 4)
    assert db.execute("SELECT COUNT(*) FROM epochs").fetchone() == (16,)  # 4 trials x 4 epochs, each once
    assert all(r["test_accuracy"] > 0.5 for r in ranked)
    started = db.execute("SELECT id, started FROM runs ORDER BY id").fetchall()
    db.close()

    # Run again: everything is finished, so nothing is trained and no cluster is even contacted.
    again, _ = run_sweep(path, out, scheduler="tcp://127.0.0.1:9", progress=False)
    assert [r["id"] for r in again] == [r["id"] for r in ranked]
    db = sqlite3.connect(out / "runs.sqlite")
    assert db.execute("SELECT id, started FROM runs ORDER BY id").fetchall() == started


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, data, capsys, monkeypatch):
    from fcnet import sweep

    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "2s")
    path = spec(tmp_path, data)
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fcnet: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


@pytest.mark.slow
def test_cli_sweep_outputs_and_runs_commands(tmp_path, data, capsys):
    path = spec(tmp_path, data, epochs=2, batch=64)
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "rank" in printed and "4 finished, 0 failed" in printed
    for name in ("sweep.csv", "sweep_axes.png", "sweep_curves.png", "runs.sqlite"):
        assert (out / name).stat().st_size > 0
    assert len((out / "sweep.csv").read_text().splitlines()) == 5
    best = RunStore(out / "runs.sqlite").best("test_accuracy", 1)[0]
    assert main(["runs", "best", "--store", str(out), "-n", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(best["id"])
    assert main(["runs", "show", best["id"][:6], "--store", str(out)]) == 0
    shown = capsys.readouterr().out
    assert '"epochs"' in shown and '"artifacts"' in shown
    assert main(["runs", "list", "--store", str(tmp_path / "nowhere")]) == 1
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert best["id"] in page
    assert "<title>fcnet report — sweep</title>" in page  # named by the folder given, not by trial hashes
    assert "hidden=48,16 optimizer=adam lr=0.001" in page or "hidden=48,16 lr=0.001 optimizer=adam" in page


@pytest.mark.slow
def test_a_failing_trial_is_recorded_with_its_exception_and_the_sweep_goes_on(tmp_path, data, capsys):
    path = tmp_path / "diverge.toml"
    path.write_text(f'dataset = "idx:{data}"\nepochs = 2\nlimit = 500\n[grid]\nlr = [0.05, 1e6]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--workers", "1", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "1 finished, 1 failed" in captured.out
    failed = RunStore(tmp_path / "s" / "runs.sqlite").runs("failed")
    assert len(failed) == 1 and failed[0]["config"]["lr"] == 1e6
    assert failed[0]["error"].startswith("DivergenceError: loss became")  # the exception itself, not scraped text
    assert captured.err.strip().splitlines()[-1] == f"failed: {failed[0]['id']} {failed[0]['error']}"


@pytest.mark.slow
def test_two_sweeps_of_one_file_on_one_cluster_train_their_own_trials(tmp_path, data):
    import subprocess
    import sys

    path = spec(tmp_path, data, epochs=1, batch=64)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:  # two drivers at once, as two users would start them
        procs = [subprocess.Popen([sys.executable, "-m", "fcnet", "sweep", str(path), "--out", str(tmp_path / name),
                                   "--scheduler", cluster.scheduler_address, "--quiet"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "4 finished, 0 failed" in out
    finally:
        cluster.close()
    for name in ("a", "b"):
        runs = RunStore(tmp_path / name / "runs.sqlite").runs("done")
        assert len(runs) == 4 and all(r["folder"].startswith(str(tmp_path / name)) for r in runs)
        assert len(list((tmp_path / name / "trials").glob("*/model.npz"))) == 4  # trained here, not borrowed


@pytest.mark.slow
def test_a_relative_out_is_resolved_by_the_driver(tmp_path, data, monkeypatch):
    from fcnet import sweep

    opened = []
    monkeypatch.setattr(sweep, "RunStore", lambda path: opened.append(path) or RunStore(path))
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "one.toml"
    path.write_text(f'dataset = "idx:{data}"\nepochs = 1\n[grid]\nseed = [0]\n')
    with pytest.raises(FcnetError, match="cannot reach the Dask scheduler"):
        run_sweep(path, "rel", scheduler="tcp://127.0.0.1:9", progress=False)
    assert opened == [tmp_path / "rel" / "runs.sqlite"]  # absolute: what the workers are sent is the driver's


@pytest.mark.slow
def test_a_huge_sweep_is_counted_before_anything_is_made_and_runs_only_with_yes(tmp_path, data, capsys, monkeypatch):
    from fcnet import sweep

    path = tmp_path / "huge.toml"
    path.write_text(f'dataset = "idx:{data}"\n[grid]\nlr = {[i / 1e4 for i in range(1, 1001)]}\n'
                    f'seed = {list(range(1000))}\nbatch_size = {list(range(1, 1001))}\n')  # 10⁹ trials
    made = []
    monkeypatch.setattr(sweep, "trials", lambda *a: made.append(a) or [])
    assert main(["sweep", str(path), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"fcnet: error: {path}: 1,000,000,000 trials is more than 10,000; pass --yes to run them all"
    assert main(["sweep", str(spec(tmp_path, data)), "--out", str(tmp_path / "s"), "--max-trials", "3"]) == 1
    assert "4 trials is more than 3" in capsys.readouterr().err
    assert not made and not (tmp_path / "s").exists()  # refused before a trial was made or a folder written
    monkeypatch.undo()
    told = []
    with pytest.raises(FcnetError, match="cannot reach the Dask scheduler"):
        monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
        run_sweep(spec(tmp_path, data), tmp_path / "s", scheduler="tcp://127.0.0.1:9", progress=False,
                  max_trials=None, say=told.append)
    assert told == [f"fcnet: sweep sweep.toml: 4 trials, 4 distinct, 0 done already, 4 to run, into {tmp_path / 's'}"]


@pytest.mark.parametrize("name", ["fashion_dropout.toml", "fashion_record.toml", "mnist_record.toml"])
def test_the_record_sweeps_in_examples_are_valid_three_seed_sweeps(name):
    from pathlib import Path

    from fcnet.sweep import load_spec, parse_trial, trials

    configs = [parse_trial(t)[1] for t in trials(*load_spec(Path(__file__).parent.parent / "examples" / name))]
    assert sorted(c.seed for c in configs) == [0, 1, 2] and all(c.validation_split == 0 for c in configs)
    assert len({c.replace(seed=0) for c in configs}) == 1  # the seed is all that differs


@pytest.mark.parametrize("data", ["mnist", "fashion"])
def test_each_ablation_variant_changes_one_setting_of_its_record(data):
    from pathlib import Path

    from fcnet.sweep import load_spec, parse_trial, trials

    def configs(name):
        spec = load_spec(Path(__file__).parent.parent / "examples" / name)
        return [parse_trial(t)[1].to_dict() for t in trials(*spec)]

    record = next(c for c in configs(f"{data}_record.toml") if c["seed"] == 0)
    changed = sorted(sorted(k for k in c if c[k] != record[k]) for c in configs(f"{data}_ablation.toml"))
    assert changed[0] == [] and all(len(keys) == 1 for keys in changed[1:])  # the record once, then one change each
    assert {k for keys in changed for k in keys} >= {"augment", "lr_schedule", "batch_norm"}


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
