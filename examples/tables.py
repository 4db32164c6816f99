"""Your own data: two tables from scikit-learn's bundled copies, trained, predicted and exported from the CLI.

Writes ``breast_cancer.csv`` (569 rows, 30 numeric columns, target ``diagnosis``: malignant/benign) and
``diabetes.csv`` (442 rows, 10 columns, target ``progression``, a number) into a folder, then runs what a user
types::

    fcnet train --dataset csv:breast_cancer.csv --target diagnosis ...
    fcnet train --dataset csv:diabetes.csv --target progression --task regression ...
    fcnet predict runs/cancer/model.npz breast_cancer.csv -o predictions.csv
    fcnet export runs/cancer/model.npz -o cancer.onnx

Run: ``python examples/tables.py [FOLDER]`` (needs ``fcnet[sklearn]``; the export ``fcnet[onnx]``).
"""

import csv
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer, load_diabetes

from fcnet.cli import main


def write(path, bunch, target, names=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*bunch.feature_names, target])
        for row, y in zip(bunch.data, bunch.target):
            writer.writerow([*(f"{v:.6g}" for v in row), names[y] if names is not None else y])


def run(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cancer, diabetes = load_breast_cancer(), load_diabetes(scaled=False)
    write(folder / "breast_cancer.csv", cancer, "diagnosis", cancer.target_names)
    write(folder / "diabetes.csv", diabetes, "progression")
    common = ["--optimizer", "adam", "--lr", "0.001", "--batch-size", "16", "--hidden", "64", "--quiet"]
    for argv in (["train", "--dataset", f"csv:{folder}/breast_cancer.csv", "--target", "diagnosis", "--epochs", "30",
                  *common, "--out", str(folder / "runs" / "cancer")],
                 ["train", "--dataset", f"csv:{folder}/diabetes.csv", "--target", "progression", "--task",
                  "regression", "--epochs", "100", *common, "--out", str(folder / "runs" / "diabetes")],
                 ["predict", str(folder / "runs" / "cancer" / "model.npz"), str(folder / "breast_cancer.csv"), "-o",
                  str(folder / "predictions.csv")],
                 ["export", str(folder / "runs" / "cancer" / "model.npz"), "-o", str(folder / "cancer.onnx")]):
        print("$ fcnet " + " ".join(argv[:1] + [a.replace(f"{folder}/", "") for a in argv[1:]]), flush=True)
        if main(argv) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "runs/tables"))
