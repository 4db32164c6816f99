"""fcnet.sklearn against scikit-learn's own MLPClassifier/MLPRegressor, side by side: seconds per epoch and accuracy.

Fashion-MNIST (60 000 × 784 scaled to [0, 1], 10 000 to test) with one hidden layer of 100 ReLU units, Adam,
batch 64, ``alpha=0``, ``tol=0`` (every epoch runs); then a table of ``make_classification(500 000, 50,
n_informative=30)`` and one of ``make_regression(500 000, 50)``, batch 200 (scikit-learn's "auto"). The two
estimators take turns round by round, after a warm-up fit each; each row gives the medians of seconds per
epoch and of the per-round ratios, and the test score after the last round. Run with OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE unset.

    python benchmarks/sklearn_bench.py [--rounds 2] [--epochs 5] [--out benchmarks/results/sklearn.json]
"""

import argparse
import json
import statistics
import time
import warnings

from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

import fcnet
from fcnet.sklearn import MLPClassifier, MLPRegressor


def race(name, contenders, data, epochs, rounds):
    x, x_test, y, y_test = data
    times, scores = {k: [] for k in contenders}, {}
    with warnings.catch_warnings():  # a warm-up epoch each: compiling (Numba) and first-touch costs stay out
        warnings.simplefilter("ignore", ConvergenceWarning)
        for make in contenders.values():
            make(1).fit(x[:5000], y[:5000])
    for r in range(rounds):
        for key in list(contenders)[r % 2:] + list(contenders)[:r % 2]:
            estimator = contenders[key](epochs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                estimator.fit(x, y)
                times[key].append((time.perf_counter() - start) / epochs)
            scores[key] = estimator.score(x_test, y_test)
    base = next(iter(contenders))
    rows = {}
    for key in contenders:
        ratio = statistics.median(a / b for a, b in zip(times[base], times[key]))
        rows[key] = {"seconds_per_epoch": statistics.median(times[key]), "speedup_over_sklearn": ratio,
                     "test_score": scores[key]}
        print(f"{name:<28} {key:<16} {rows[key]['seconds_per_epoch']:8.3f} s/epoch  ×{ratio:5.2f}  "
              f"test {scores[key]:.4f}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    common = {"alpha": 0.0, "tol": 0.0, "random_state": 0}
    (x, y), (xt, yt) = fcnet.datasets.load("fashion-mnist")
    fashion = (x.reshape(len(x), -1) / 255.0, xt.reshape(len(xt), -1) / 255.0, y, yt)
    report = {"fashion-mnist": race("fashion-mnist 784-100-10", {
        "scikit-learn": lambda e: SkClassifier(hidden_layer_sizes=(100,), batch_size=64, max_iter=e, **common),
        "fcnet float64": lambda e: MLPClassifier((100,), batch_size=64, max_iter=e, **common),
        "fcnet float32": lambda e: MLPClassifier((100,), batch_size=64, max_iter=e, dtype="float32", **common),
    }, fashion, args.epochs, args.rounds)}
    xc, yc = make_classification(500_000, 50, n_informative=30, random_state=0)
    report["classification"] = race("table 500k×50, classes", {
        "scikit-learn": lambda e: SkClassifier(hidden_layer_sizes=(100,), max_iter=e, **common),
        "fcnet float32": lambda e: MLPClassifier((100,), max_iter=e, dtype="float32", **common),
    }, train_test_split(xc, yc, test_size=0.2, random_state=0), args.epochs, args.rounds)
    xr, yr = make_regression(500_000, 50, n_informative=30, noise=10.0, random_state=0)
    report["regression"] = race("table 500k×50, regression", {
        "scikit-learn": lambda e: SkRegressor(hidden_layer_sizes=(100,), max_iter=e, **common),
        "fcnet float32": lambda e: MLPRegressor((100,), max_iter=e, dtype="float32", **common),
    }, train_test_split(xr, yr / yr.std(), test_size=0.2, random_state=0), args.epochs, args.rounds)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
