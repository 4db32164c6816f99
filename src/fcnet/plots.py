"""Pictures of a run: learning curves, confusion matrix, prediction grids, first-layer weights.

Each function returns a matplotlib ``Figure`` (Agg backend: no display needed, except
in a Jupyter kernel, whose inline backend is kept);
``fig.savefig(path)`` writes PNG or SVG. matplotlib is optional
(``pip install 'fcnet[plot]'``) and imported only here.
"""

import sys

import numpy as np

from .errors import FcnetError
from .metrics import classification_report, confusion_matrix

__all__ = ["pyplot", "learning_curves", "confusion_matrix", "confusion_figure", "prediction_grid", "confident_mistakes",
           "first_layer_weights", "regression_figure", "classification_report", "save"]


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise FcnetError("plots need matplotlib: pip install 'fcnet[plot]'") from None
    if "ipykernel" not in sys.modules:  # in a notebook keep its inline backend: figures show in place
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _epochs(run):
    """Per-epoch metrics as a dict of lists, from a History, a RunMetrics or such a dict itself."""
    return run.history if hasattr(run, "history") else run


def learning_curves(runs, labels=None):
    """Loss and accuracy per epoch, training (solid) and validation (dashed), for one run or several overlaid.

    Parameters
    ----------
    runs : History, RunMetrics, dict, or list of them
        ``History``, a run's :class:`~fcnet.records.RunMetrics`, or ``history.history``.
    labels : list of str, optional
        Legend entry per run.
    """
    plt = pyplot()
    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    labels = labels or [""] * len(runs)
    keys = [k for k in ("loss", "accuracy") if k == "loss" or any(
        v is not None for run in runs for v in _epochs(run).get(k) or [])]  # a regression has no accuracy
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    axes = axes[0]
    for run, label, color in zip(runs, labels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        h = _epochs(run)
        for ax, key in zip(axes, keys):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = [v for v in h.get(prefix + key) or [] if v is not None]
                if values:
                    name = f"{label} {'validation' if prefix else 'train'}".strip()
                    ax.plot(range(1, len(values) + 1), values, style, color=color, marker="o", markersize=3,
                            label=name)
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes, keys):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Learning curves")
    fig.tight_layout()
    return fig


def confusion_figure(y_true, y_pred, class_names):
    """The confusion matrix twice: counts, and normalised by row (recall of each true class)."""
    plt = pyplot()
    n = len(class_names)
    counts = confusion_matrix(y_true, y_pred, n)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, data, title, fmt in ((axes[0], counts, "counts", "d"), (axes[1], rows, "normalised by true class",
                                                                      ".2f")):
        ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        top = data.max() or 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if data[i, j] > top / 2 else "black")
    fig.suptitle(f"Confusion matrix — accuracy {np.trace(counts) / max(counts.sum(), 1):.4f}")
    fig.tight_layout()
    return fig


def prediction_grid(images, y_true, probs, class_names, indices=None, n=25, title="Test predictions"):
    """Images captioned "True: y  Pred: p (0.97)", wrong predictions in red (seed 004's plot, extended).

    Parameters
    ----------
    images : ndarray, shape (N, rows, cols)
    y_true : ndarray, shape (N,)
    probs : ndarray, shape (N, n_classes)
    indices : sequence of int, optional
        Which images; default the first ``n``.
    """
    plt = pyplot()
    indices = list(range(min(n, len(images)))) if indices is None else list(indices)[:n]
    cols = int(np.ceil(np.sqrt(len(indices)))) or 1
    rows = int(np.ceil(len(indices) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        pred = int(np.argmax(probs[i]))
        ax.imshow(images[i], cmap="gray_r")
        wrong = pred != int(y_true[i])
        ax.set_title(f"True: {class_names[int(y_true[i])]}\nPred: {class_names[pred]} ({probs[i][pred]:.2f})",
                     fontsize=8, color="red" if wrong else "black")
        if wrong:
            for spine in ax.spines.values():
                spine.set(visible=True, color="red", linewidth=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confident_mistakes(images, y_true, probs, class_names, n=25):
    """The ``n`` wrong predictions made with the highest probability."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")]
    return prediction_grid(images, y_true, probs, class_names, order, n,
                           title=f"Most confident mistakes ({len(wrong)} of {len(y_true)} predictions are wrong)")


def first_layer_weights(model, k=25, shape=(28, 28)):
    """The input weights of the first ``k`` hidden units, each drawn as an image on one colour scale
    (blue < 0 < red), shown in a colour bar."""
    plt = pyplot()
    W = model.parameters[0]
    k = min(k, W.shape[1])
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 1, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    limit = float(np.abs(W[:, :k]).max()) or 1.0
    for unit, ax in zip(range(k), axes.flat):
        image = ax.imshow(W[:, unit].reshape(shape), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"unit {unit}", fontsize=7)
    fig.suptitle(f"First-layer weights of {k} hidden units")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.colorbar(image, cax=fig.add_axes((0.92, 0.15, 0.02, 0.7)), label="weight")
    return fig


def regression_figure(y_true, y_pred, name="target"):
    """A regression's test predictions: predicted against true (the diagonal is perfect), and the residuals."""
    plt = pyplot()
    from .tables import regression_scores

    scores = regression_scores(y_true, y_pred)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.scatter(y_true, y_pred, s=6, alpha=0.4, edgecolors="none")
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = true")
    left.set_xlabel(f"true {name}")
    left.set_ylabel(f"predicted {name}")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.hist(y_pred - y_true, bins=50, color="tab:orange")
    right.set_xlabel(f"predicted − true {name}")
    right.set_ylabel("test rows")
    right.grid(alpha=0.3)
    fig.suptitle(f"Test predictions — R² {scores['r2']:.4f}, mean absolute error {scores['mae']:.4g}")
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write ``fig`` (PNG or SVG by the file name) and close it."""
    plt = pyplot()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
