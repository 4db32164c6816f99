"""Run folders with figures, `fcnet plot`, and the HTML report opened in a real headless Chromium."""

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import write_idx_set

from fcnet.cli import main
from fcnet.report import FIGURES, kinds
from fcnet.saving import load_model

pytestmark = pytest.mark.slow  # every test reads the runs a module fixture trains and draws

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):

    root = tmp_path_factory.mktemp("runs")
    write_idx_set(root / "data", n_train=600, n_test=200)
    for name, extra in (("sgd", []), ("adam", ["--optimizer", "adam", "--lr", "0.003"])):
        assert main(["train", "--dataset", f"idx:{root / 'data'}", "--hidden", "32", "--epochs", "3", "--quiet",
                     "--validation-split", "0.2", "--out", str(root / name), *extra]) == 0
    return root


IMAGE_FIGURES = ("curves", "confusion", "predictions", "mistakes", "weights")


@pytest.mark.slow
def test_train_out_saves_every_figure_and_per_class_metrics(runs):
    assert kinds(load_model(runs / "sgd" / "model.npz")) == IMAGE_FIGURES
    for filename in (FIGURES[kind][0] for kind in IMAGE_FIGURES):
        assert (runs / "sgd" / filename).read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((runs / "sgd" / "metrics.json").read_text())
    assert len(metrics["per_class"]) == 10 and sum(r["support"] for r in metrics["per_class"]) == 200
    assert sum(map(sum, metrics["confusion"])) == 200
    correct = sum(metrics["confusion"][i][i] for i in range(10))
    assert correct / 200 == pytest.approx(metrics["test"]["accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", IMAGE_FIGURES)
def test_plot_command_writes_one_figure(runs, kind, tmp_path):
    assert main(["plot", str(runs / "sgd"), "--kind", kind, "-o", str(tmp_path / f"{kind}.png")]) == 0
    assert (tmp_path / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_is_one_self_contained_file(runs, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(runs / "sgd"), str(runs / "adam"), "-o", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r"(src|href)=\"(https?:|file:|/)", page)  # nothing to fetch: every image inline
    assert page.count('src="data:image/png;base64,') == 1 + 2 * len(IMAGE_FIGURES)  # overlay + each run's figures
    metrics = json.loads((runs / "adam" / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.4f}" in page
    assert main(["report", str(tmp_path / "nope"), "-o", str(out)]) == 1


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    assert main(["report", str(runs / "sgd"), str(runs / "adam"), "-o", str(out)]) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(out.as_uri())
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        tables = page.evaluate("document.querySelectorAll('table.metrics').length")
        comparison = page.evaluate("document.querySelector('table.comparison').innerText")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert len(widths) == 1 + 2 * len(IMAGE_FIGURES) and all(w > 0 for w in widths)
    assert tables >= 1 + 2 * 3  # comparison, then final / per-epoch / per-class for each run
    assert "adam" in comparison and "sgd" in comparison


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
