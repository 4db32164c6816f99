"""The seed notebooks in examples/notebooks/, executed top to bottom in a real Jupyter kernel (nbclient)."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra has it)")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "examples" / "notebooks"
# Every notebook but the from-scratch exercise, which stops at its first gap (tested below).
NOTEBOOKS = sorted(p for p in FOLDER.glob("*.ipynb") if p.name != "from_scratch.ipynb")
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
                "seed004_adam": 3, "from_scratch_solution": 1}[path.stem]
    if path.stem == "from_scratch_solution":  # the three proofs ran, and the broken backward passes were caught
        assert text.count(" ok") >= 8 and "mine" in text and text.count("WRONG") == 2 and "FAIL" in text
    assert len(images) >= expected  # figures inline (seed 000: the live learning curves)


def test_every_seed_has_a_notebook():
    assert [p.stem for p in NOTEBOOKS if p.stem.startswith("seed")] == sorted(
        p.stem for p in (ROOT / "examples").glob("seed*.py"))


def _exercise_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("exercise", FOLDER / "exercise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exercise_is_the_solution_without_its_solutions(monkeypatch, fashion):
    """The committed exercise is what examples/notebooks/exercise.py makes of the solution, it has gaps to fill,
    and it runs up to the first of them (the data, the weights), where it stops with NotImplementedError."""
    exercise = _exercise_module()
    solution = nbformat.read(FOLDER / "from_scratch_solution.ipynb", as_version=4)
    committed = nbformat.read(FOLDER / "from_scratch.ipynb", as_version=4)
    made = exercise.strip_solutions(solution)
    assert [c.source for c in committed.cells] == [c.source for c in made.cells]
    gaps = [c for c in committed.cells if 'raise NotImplementedError("your code here")' in c.source]
    assert len(gaps) == 2 and not any("BEGIN SOLUTION" in c.source for c in committed.cells)
    monkeypatch.setenv("FCNET_QUICK", "1")
    monkeypatch.setenv("FCNET_DATASET", "fashion-mnist")
    with pytest.raises(nbclient.exceptions.CellExecutionError) as stopped:
        nbclient.NotebookClient(committed, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(FOLDER)}}).execute()
    assert (stopped.value.ename, stopped.value.evalue) == ("NotImplementedError", "your code here")
    ran = [c for c in committed.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == 3  # the data and the weights loaded; the forward pass is the first gap
