"""Tables from the command line (fcnet.tables): CSV, Parquet and NPZ in; standardisation and one-hot learnt from
the training rows; predict/evaluate/serve/export/sweep for table models; and the files that must be refused."""

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fcnet import tables
from fcnet.cli import main
from fcnet.config import TrainConfig
from fcnet.errors import DataError
from fcnet.saving import load_model

CITIES = ("Berlin", "Paris", "Rome")


def people(n=1200, seed=0):
    """A table with numeric and categorical columns, a class target and a numeric one (both learnable)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = rng.normal(50_000, 15_000, n).round(2)
    city = rng.choice(CITIES, n)
    score = 0.04 * age + income / 15_000 + 1.5 * (city == "Rome")
    return {"age": age, "income": income, "city": city, "price": (100 * score + 20).round(3),
            "bought": np.where(score > np.median(score), "yes", "no")}


def write_csv(path, columns):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    return path


@pytest.fixture
def table_csv(tmp_path):
    return write_csv(tmp_path / "people.csv", people())


def train(csv_path, out, *flags, figures=False):
    """``fcnet train`` on a table; the figures only where a test looks at them."""
    return main(["train", "--dataset", f"csv:{csv_path}", "--hidden", "16", "--epochs", "4", "--quiet",
                 "--threads", "1", "--out", str(out), *flags, *([] if figures else ["--no-figures"])])


# -- what training learns from the table -------------------------------------------------------------------

def test_statistics_come_from_the_training_rows_only(table_csv):
    (x_train, y_train), (x_test, _), spec = tables.load(f"csv:{table_csv}", "bought", "classification", 0.25,
                                                         seed=3, fit_rows=0.5, dtype=np.float64)
    n_fit = len(x_train) // 2
    assert len(x_test) == 300 and len(x_train) == 900
    assert [f.name for f in spec.features] == ["age", "income", "city", "price"]
    numeric = [0, 1, 5]  # city's one-hot block is columns 2..4
    assert_allclose(x_train[:n_fit, numeric].mean(axis=0), 0, atol=1e-12)  # the rows the spec saw
    assert_allclose(x_train[:n_fit, numeric].std(axis=0), 1, atol=1e-12)
    assert np.abs(x_train[n_fit:, numeric].mean(axis=0)).max() > 1e-3  # the validation rows were not looked at
    ages = people()["age"][np.sort(np.random.default_rng(3).permutation(1200)[300:])]
    assert spec.features[0].mean == pytest.approx(ages[:n_fit].mean())
    city = [f for f in spec.features if f.name == "city"][0]
    assert city.categories == CITIES and spec.width == 3 + 3
    block = x_train[:, 2:5]  # the one-hot block of city, in the column order of the file
    assert_array_equal(block.sum(axis=1), 1) and set(np.unique(block)) == {0.0, 1.0}
    assert spec.classes == ("no", "yes") and set(np.unique(y_train)) == {0, 1}


def test_numeric_classes_sort_as_numbers_and_unseen_categories_encode_as_zeros():
    table = tables.Table({"size": np.array(["1", "2", "3", "4"]), "colour": np.array(["red", "blue", "red", "red"]),
                          "grade": np.array(["10", "9", "2", "10"])}, lambda i: f"row {i}")
    spec = tables.TableSpec.fit(table, "grade", "classification")
    assert spec.classes == ("2", "9", "10")
    assert_array_equal(spec.targets(table), [2, 1, 0, 2])
    new = tables.Table({"size": np.array(["5"]), "colour": np.array(["green"])}, lambda i: "new row")
    assert_array_equal(spec.transform(new)[0, 1:], [0, 0]) and spec.unknown(new) == [(0, "colour", "green")]


def test_csv_parquet_and_npz_give_the_same_training_data(tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'fcnet[parquet]'")
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = people(400)
    numeric = {k: v for k, v in data.items() if k not in ("city", "bought")}
    write_csv(tmp_path / "t.csv", numeric)
    pq.write_table(pa.table(numeric), tmp_path / "t.parquet")
    np.savez(tmp_path / "t.npz", x=np.stack([numeric["age"], numeric["income"]], axis=1), y=numeric["price"])
    loads = [tables.load(f"{kind}:{tmp_path}/t.{kind}", target, "regression", 0.2, seed=1, dtype=np.float64)
             for kind, target in (("csv", "price"), ("parquet", "price"), ("npz", None))]
    for (train, test, spec) in loads[1:]:
        for got, want in zip((*train, *test), (*loads[0][0], *loads[0][1])):
            assert_allclose(got, want, rtol=1e-12)
        assert [(f.mean, f.scale) for f in spec.features] == [(f.mean, f.scale) for f in loads[0][2].features]
    pq.write_table(pa.table({"city": pa.array(data["city"]).dictionary_encode(), "bought": data["bought"]}),
                   tmp_path / "cat.parquet")
    spec = tables.load(f"parquet:{tmp_path}/cat.parquet", "bought", "classification", 0.2, 0)[2]
    assert spec.features[0].categories == CITIES


def test_the_fast_all_numeric_csv_reader_agrees_with_the_careful_one(tmp_path):
    data = {k: v for k, v in people(300).items() if k not in ("city", "bought")}
    fast = tables.read_table(f"csv:{write_csv(tmp_path / 'fast.csv', data)}")
    careful = tables.typed(tables.read_table(f"csv:{write_csv(tmp_path / 'slow.csv', {**data, 'note': ['x'] * 300})}"),
                           "price", "regression")
    assert all(fast.columns[k].dtype == np.float64 for k in data)  # NumPy's parser read it: no strings
    assert careful.columns["note"].dtype.kind == "U"
    for k in data:
        assert_array_equal(fast.columns[k], careful.columns[k])


def test_an_npz_with_its_own_test_part_keeps_it(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 3)), rng.integers(0, 3, 100)
    np.savez(tmp_path / "d.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    (x_train, _), (x_test, y_test), spec = tables.load(f"npz:{tmp_path}/d.npz", None, "classification", 0.5, 0)
    assert len(x_train) == 80 and len(x_test) == 20 and spec.classes == ("0", "1", "2")
    assert_array_equal(y_test, y[80:])


# -- the command line, end to end --------------------------------------------------------------------------

def test_train_predict_evaluate_a_classifier(table_csv, tmp_path, capsys):
    assert train(table_csv, tmp_path / "run", "--target", "bought", "--optimizer", "adam", "--lr", "0.01",
                 figures=True) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9 and metrics["architecture"] == "6-16-2"
    assert sorted(p.name for p in (tmp_path / "run").glob("*.png")) == ["confusion.png", "curves.png"]
    model = load_model(tmp_path / "run" / "model.npz")
    spec = tables.spec_of(model)
    rows = {k: v[:5] for k, v in people().items() if k != "bought"}
    rows["city"] = np.array(["Rome", "Paris", " Berlin ", "Oslo", "Rome"])  # spaces trimmed; Oslo never seen
    write_csv(tmp_path / "rows.csv", rows)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "model.npz"), str(tmp_path / "rows.csv"), "-o",
                 str(tmp_path / "p.csv")]) == 0
    assert "line 5: 'city' is 'Oslo', a category training never saw" in capsys.readouterr().err
    with open(tmp_path / "p.csv") as f:
        written = list(csv.DictReader(f))
    probs = model.predict_proba(spec.transform(tables.read_table(str(tmp_path / "rows.csv")), model.dtype))
    assert [r["bought"] for r in written] == [spec.classes[k] for k in probs.argmax(axis=1)]
    assert_allclose([[float(r["p_no"]), float(r["p_yes"])] for r in written], probs, atol=1e-6)
    assert main(["evaluate", str(tmp_path / "run" / "model.npz"), "--dataset", f"csv:{table_csv}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test loss") and "test accuracy 0.9" in out and "1200 csv:" in out


@pytest.mark.slow
def test_train_predict_a_regression_in_the_targets_units(table_csv, tmp_path, capsys):
    assert train(table_csv, tmp_path / "reg", "--target", "price", "--task", "regression", "--optimizer", "adam",
                 "--lr", "0.01", "--epochs", "30", figures=True) == 0
    metrics = json.loads((tmp_path / "reg" / "metrics.json").read_text())
    assert metrics["config"]["loss"] == "mse" and "accuracy" not in metrics["test"]
    assert metrics["test"]["r2"] > 0.95 and metrics["test"]["mae"] < 15  # price spans about 300..800
    assert (tmp_path / "reg" / "regression.png").is_file() and not (tmp_path / "reg" / "confusion.png").exists()
    data = people()
    write_csv(tmp_path / "rows.csv", {k: v[:50] for k, v in data.items() if k != "price"})
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "reg" / "model.npz"), str(tmp_path / "rows.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "price" and len(lines) == 51
    assert np.abs(np.array(lines[1:], dtype=float) - data["price"][:50]).mean() < 20
    assert main(["plot", str(tmp_path / "reg"), "--kind", "regression", "-o", str(tmp_path / "r.png")]) == 0
    assert main(["report", str(tmp_path / "reg"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "test R²" in page and "test MAE" in page and "Test predictions against the truth" in page


@pytest.mark.slow
def test_a_table_run_resumes_bit_identically(table_csv, tmp_path):
    flags = ("--target", "bought", "--validation-split", "0.1")
    assert train(table_csv, tmp_path / "whole", *flags) == 0
    assert train(table_csv, tmp_path / "part", *flags, "--epochs", "2") == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--epochs", "4", "--quiet"]) == 0
    whole, part = load_model(tmp_path / "whole" / "model.npz"), load_model(tmp_path / "part" / "model.npz")
    for a, b in zip(whole.get_weights(), part.get_weights()):
        assert_array_equal(a, b)


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "mnist", "--target", "y"], "target, task and test_split apply to tables"),
    (["--dataset", "csv:t.csv"], "name the target column of csv:t.csv"),
    (["--dataset", "csv:t.csv", "--target", "y", "--task", "regression", "--loss", "categorical_crossentropy"],
     "regression trains with loss mse"),
    (["--dataset", "csv:t.csv", "--target", "y", "--test-split", "1"], "'1': must be in (0, 1)"),
])
def test_settings_that_do_not_fit_a_table_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err


# -- files that must be refused, each in one line naming the place -----------------------------------------

def _bad(path, text):
    Path(path).write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


HOSTILE = [
    ("empty.csv", "", "empty file"),
    ("header-only.csv", "a,b,y\n", "no data rows"),
    ("ragged.csv", "a,b,y\n1,2,x\n3,4\n", "line 3: 2 fields, the header has 3"),
    ("missing.csv", "a,b,y\n1,2,x\n3,,z\n", "line 3: column 'b' has a missing value"),
    ("na.csv", "a,b,y\n1,2,x\nNA,3,z\n4,5,x\n", "line 3: column 'a' has a missing value ('NA')"),
    ("junk.csv", "a,b,y\n1,2,x\n3,4,z\n5,abc,x\n6,7,z\n", "line 4: column 'b' holds numbers, but this row has 'abc'"),
    ("inf.csv", "a,b,y\n1,2,x\n3,inf,z\n5,6,x\n", "line 3: column 'b' has the infinite value 'inf'"),
    ("no-target.csv", "a,b,c\n1,2,3\n4,5,6\n", "no column 'y' to predict (the columns are a, b, c)"),
    ("one-class.csv", "a,b,y\n1,2,x\n3,4,x\n5,6,x\n7,8,x\n9,9,x\n", "a single class ('x')"),
    ("dupes.csv", "a,a,y\n1,2,x\n", "two columns are named 'a'"),
    ("latin1.csv", b"a,b,y\n1,2,caf\xe9\n", "not UTF-8 text"),
    ("huge-field.csv", "a,b,y\n1,2,x\n3," + "9" * 200_000 + ",z\n", "not a readable CSV file (field larger"),
    ("only-target.csv", "y\nx\nz\n", "no column besides the target 'y'"),
    ("ids.csv", "a,y\n" + "".join(f"id{i},{'xz'[i % 2]}\n" for i in range(2500)), "1,500 distinct strings"),
    ("notzip.npz", b"PK\x03\x04 not really", "not a readable .npz file"),
    ("semicolons.csv", "a;b;y\n1;2;x\n", "this one looks ';'-separated"),
    ("fractions.csv", "a,y\n1,0.5\n2,1.25\n3,2\n4,0.5\n5,1\n", "holds fractional numbers, not class labels"),
    ("truncated.parquet", b"PAR1\x00\x00PAR1", "not a readable Parquet file"),
]


@pytest.mark.parametrize("name, content, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_bad_table_is_one_line_naming_the_place(tmp_path, capsys, name, content, message):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = _bad(tmp_path / name, content)
    kind = name.rsplit(".", 1)[1]
    assert main(["train", "--dataset", f"{kind}:{path}", "--target", "y", "--quiet", "--epochs", "1",
                 "--test-split", "0.4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fcnet: error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_odd_npz_files_and_paths_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "noxy.npz", a=np.zeros(3))
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.zeros(2))
    np.savez(tmp_path / "flat.npz", x=np.zeros(4), y=np.zeros(4))
    np.savez(tmp_path / "short.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    (tmp_path / "folder.csv").mkdir()
    for spec, message in ((f"npz:{tmp_path}/noxy.npz", "holds arrays x and y"),
                          (f"npz:{tmp_path}/pickled.npz", "not a readable .npz file"),
                          (f"npz:{tmp_path}/flat.npz", "x must be a 2-D array of numbers"),
                          (f"npz:{tmp_path}/short.npz", "y must be a 1-D array of 4"),
                          (f"csv:{tmp_path}/folder.csv", "not a regular file"),
                          (f"csv:{tmp_path}/absent.csv", "no such file")):
        assert main(["train", "--dataset", spec, "--target", "y", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_prediction_files_are_checked_like_training_files(table_csv, tmp_path, capsys):
    assert train(table_csv, tmp_path / "run", "--target", "bought", "--epochs", "1") == 0
    model = str(tmp_path / "run" / "model.npz")
    _bad(tmp_path / "short.csv", "age,income,city\n30,1000,Rome\n")
    _bad(tmp_path / "junk.csv", "age,income,city,price\n30,1000,Rome,5\n31,lots,Rome,6\n")
    for rows, message in ((tmp_path / "short.csv", "the table has no column 'price'"),
                          (tmp_path / "junk.csv", "line 3: column 'income' holds numbers, but this row has 'lots'"),
                          (tmp_path / "rows.txt", "not a table file")):
        capsys.readouterr()
        assert main(["predict", model, str(rows), "-o", str(tmp_path / "p.csv")]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(SystemExit):
        main(["predict", model, str(table_csv), str(table_csv)])
    with pytest.raises(SystemExit):
        main(["evaluate", model])  # a table model needs the rows to evaluate on
    assert "give the rows to evaluate it on" in capsys.readouterr().err


def test_a_crafted_table_description_in_a_model_file_is_refused(table_csv, tmp_path, capsys):
    assert train(table_csv, tmp_path / "run", "--target", "bought", "--epochs", "1") == 0
    model = load_model(tmp_path / "run" / "model.npz")
    for change in ({"classes": ["a"]}, {"features": [{"name": "age", "mean": 0, "scale": -1}]},
                   {"features": "nope"}, {"task": "clustering"}):
        model.metadata = {**model.metadata, "table": {**model.metadata["table"], **change}}
        model.save(tmp_path / "bad.npz")
        assert main(["predict", str(tmp_path / "bad.npz"), str(table_csv)]) == 1
        assert "table description" in capsys.readouterr().err


# -- the ONNX graph carries the preprocessing --------------------------------------------------------------

@pytest.mark.parametrize("task, target", [("classification", "bought"), ("regression", "price")])
@pytest.mark.parametrize("dtype, rtol, atol", [("float32", 1e-5, 1e-5), ("float64", 1e-12, 1e-12)])
def test_onnx_takes_the_raw_columns_and_answers_as_fcnet(table_csv, tmp_path, task, target, dtype, rtol, atol):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    assert train(table_csv, tmp_path / "run", "--target", target, "--task", task, "--dtype", dtype) == 0
    assert main(["export", str(tmp_path / "run" / "model.npz"), "-o", str(tmp_path / "m.onnx")]) == 0
    model = load_model(tmp_path / "run" / "model.npz")
    spec = tables.spec_of(model)
    data = {k: v[:64] for k, v in people(seed=5).items()}
    data["city"][:3] = "Oslo"  # never seen: zeros in both
    table = tables.Table({k: np.asarray(v, dtype=str) for k, v in data.items()}, str)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feed = {f.name: (np.asarray(data[f.name], dtype=object) if f.categories else
                     np.asarray(data[f.name], dtype=dtype))[:, None] for f in spec.features}
    got = session.run(None, feed)
    x = spec.transform(table, model.dtype)
    if task == "regression":
        assert_allclose(got[0][:, 0], spec.decode(model.predict(x)), rtol=rtol, atol=atol * 100)
    else:
        probs = model.predict_proba(x)
        assert_allclose(got[0], probs, rtol=rtol, atol=atol)
        assert list(got[1]) == [spec.classes[k] for k in probs.argmax(axis=1)]


@pytest.mark.slow
# -- serve takes {"features": {...}} ------------------------------------------------------------------------

def test_serve_answers_rows_as_predict_does(table_csv, tmp_path):
    pytest.importorskip("fastapi")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_serve import call

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from serve_load import free_port, start_server

    assert train(table_csv, tmp_path / "run", "--target", "bought") == 0
    model = load_model(tmp_path / "run" / "model.npz")
    spec = tables.spec_of(model)
    port = free_port()
    server = start_server(tmp_path / "run" / "model.npz", port)
    try:
        status, info = call(port, "GET", "/api/model")
        assert info["table"]["target"] == "bought" and [f["name"] for f in info["table"]["features"]] == [
            "age", "income", "city", "price"]
        row = {"age": 40, "income": 52000.5, "city": "Rome", "price": 512.25}
        status, answer = call(port, "POST", "/api/predict", json.dumps({"features": row}).encode(),
                              {"Content-Type": "application/json"})
        x = spec.transform(tables.Table({k: np.array([str(v)]) for k, v in row.items()}, str), model.dtype)
        assert status == 200 and answer["class_name"] == spec.classes[answer["label"]]
        assert_allclose(answer["probabilities"], model.predict_proba(x)[0], rtol=1e-6)
        for body, code, message in (
                ({"features": {**row, "age": "forty"}}, 422, "feature 'age' must be a finite number"),
                ({"features": {**row, "city": 7}}, 422, "feature 'city' must be one of its categories"),
                ({"features": {"age": 40}}, 422, "missing income, city, price"),
                ({"features": {**row, "colour": "red"}}, 422, "unknown colour"),
                ({"pixels": [0.5] * 6}, 422, 'expected {"features"'),
        ):
            status, answer = call(port, "POST", "/api/predict", json.dumps(body).encode(),
                                  {"Content-Type": "application/json"})
            assert status == code and message in answer["error"], answer
        status, answer = call(port, "POST", "/api/predict", json.dumps({"features": {**row, "city": "Oslo"}}).encode(),
                              {"Content-Type": "application/json"})
        assert status == 200 and "city='Oslo'" in answer["warning"]
        assert call(port, "POST", "/api/predict", b"\x89PNG", {"Content-Type": "image/png"})[0] == 415
        page = call(port, "GET", "/")
        assert "Predict a row" in str(page[1])
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- sweeps rank regressions by R² --------------------------------------------------------------------------

def test_the_run_store_ranks_regressions_by_r2_and_upgrades_old_stores(tmp_path):
    import sqlite3

    from fcnet.records import RunMetrics
    from fcnet.runstore import RunStore, score_metric
    from fcnet.sweep import write_outputs

    old = sqlite3.connect(tmp_path / "runs.sqlite")  # a store from before regressions: no test_r2 column
    old.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, config TEXT NOT NULL, status TEXT NOT NULL, folder "
                      "TEXT, host TEXT, driver_host TEXT, started REAL, finished REAL, total_seconds REAL, "
                      "seconds_per_epoch REAL, test_loss REAL, test_accuracy REAL, error TEXT);"
                      "CREATE TABLE epochs (run_id TEXT, epoch INTEGER, seconds REAL, loss REAL, accuracy REAL, "
                      "val_loss REAL, val_accuracy REAL); CREATE TABLE artifacts (run_id TEXT, name TEXT, path TEXT);")
    old.close()
    store = RunStore(tmp_path / "runs.sqlite")
    configs = [TrainConfig(dataset="csv:t.csv", target="y", task="regression", lr=lr).to_dict() for lr in (0.1, 0.2)]
    assert score_metric(configs) == "test_r2" and score_metric([configs[0], TrainConfig().to_dict()]) == "test_accuracy"
    for rid, config, r2 in (("a", configs[0], 0.5), ("b", configs[1], 0.9)):
        folder = tmp_path / rid
        folder.mkdir()
        metrics = RunMetrics.from_history({"loss": [1.0, 0.5], "epoch_seconds": [0.1, 0.1]}, config=config,
                                          architecture="3-4-1", steps_per_epoch=1, total_seconds=0.2, engine="numpy",
                                          test={"loss": 0.4, "r2": r2, "mae": 1.0})
        metrics.write(folder / "metrics.json")
        store.start(rid, config, folder)
        store.finish(rid, metrics, "here", {})
    ranked = store.best("test_r2", 5)
    assert [r["id"] for r in ranked] == ["b", "a"] and ranked[0]["test_accuracy"] is None
    assert [e["lr"] for e in store.get("b")["epochs"]] == [0.2, 0.2]  # the old epochs table gained its rate column
    pytest.importorskip("matplotlib")
    table = write_outputs(tmp_path, ranked)
    assert "test_r2" in table.splitlines()[0] and "0.9000" in table
    assert (tmp_path / "sweep_axes.png").is_file()


@pytest.mark.slow
def test_the_tables_example_trains_scikit_learns_bundled_tables(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("onnx")
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables_example", Path(__file__).parent.parent / "examples" /
                                                  "tables.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.run(tmp_path) == 0
    cancer = json.loads((tmp_path / "runs" / "cancer" / "metrics.json").read_text())["test"]
    diabetes = json.loads((tmp_path / "runs" / "diabetes" / "metrics.json").read_text())["test"]
    assert cancer["accuracy"] > 0.95 and diabetes["r2"] > 0.3  # README: 0.9737 and 0.412 with threads chosen here
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 569 and {r["diagnosis"] for r in rows} == {"benign", "malignant"}


def test_a_test_class_that_training_never_saw_is_refused(tmp_path):
    x = np.arange(20.0).reshape(10, 2)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array(["a", "b"] * 5), x_test=x[:3],
             y_test=np.array(["a", "c", "b"]))
    with pytest.raises(DataError, match=r"x_test row 1: class 'c' of 'y' is not one of the 2 classes"):
        tables.load(f"npz:{tmp_path}/d.npz", None, "classification", 0.2, 0)


CHROMIUM = shutil.which("chromium")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_the_table_page_in_chromium_predicts_a_filled_in_row(table_csv, tmp_path):
    pytest.importorskip("fastapi")
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from serve_load import free_port, start_server

    assert train(table_csv, tmp_path / "run", "--target", "bought") == 0
    port = free_port()
    server = start_server(tmp_path / "run" / "model.npz", port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("form button")
            assert page.text_content("#title") == "Predict bought"
            assert page.eval_on_selector_all("#f-city option", "os => os.map(o => o.value)") == list(CITIES)
            page.fill("#f-age", "70")
            page.select_option("#f-city", "Rome")
            page.click("form button")
            page.wait_for_function("document.getElementById('answer').textContent.length > 0")
            answer, bars = page.text_content("#answer"), page.locator(".bar").count()
            page.fill("#f-age", "")
            page.click("form button")  # an empty number field: the browser's own check stops it
            ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "table_page.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer in ("yes", "no") and bars == 2
