"""The seed notebooks in examples/notebooks/, executed top to bottom in a real Jupyter kernel (nbclient)."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra has it)")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
SHARED_MNIST = ROOT.parent / "shared" / "datasets"  # the real MNIST beside the checkout, when it is there


def outputs(nb, kind):
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == kind]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom(path, monkeypatch, fashion):
    monkeypatch.setenv("FCNET_QUICK", "1")
    if (SHARED_MNIST / "mnist").is_dir():
        monkeypatch.setenv("FCNET_DATA", str(SHARED_MNIST))
        monkeypatch.setenv("FCNET_DATASET", "mnist")
    else:  # the seeds' MNIST is not here: their models on Fashion-MNIST
        monkeypatch.setenv("FCNET_DATASET", "fashion-mnist")
    nb = nbformat.read(path, as_version=4)
    assert not outputs(nb, "stream") and not outputs(nb, "display_data")  # committed without outputs
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                            ).execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "Traceback" not in text
    if path.stem in ("seed001_lab", "seed003_chollet", "seed002_fashion"):
        assert "epoch 1/" in text and "accuracy" in text  # a line per epoch, in a notebook
    images = [o for o in outputs(nb, "display_data") + outputs(nb, "execute_result") if "image/png" in o.data]
    expected = {"seed000_keras_sgd": 1, "seed001_lab": 1, "seed002_fashion": 1, "seed003_chollet": 0,
                "seed004_adam": 3}[path.stem]
    assert len(images) >= expected  # figures inline (seed 000: the live learning curves)


def test_every_seed_has_a_notebook():
    assert [p.stem for p in NOTEBOOKS] == sorted(p.stem for p in (ROOT / "examples").glob("seed*.py"))
