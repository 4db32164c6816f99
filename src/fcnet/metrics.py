"""Accuracy, counted the same way by every engine and by ``evaluate``; and a classifier's per-class metrics and
confusion counts, which every run records (``metrics.json``: ``per_class``, ``confusion``)."""

import numpy as np

__all__ = ["count_correct", "confusion_matrix", "classification_report"]


def count_correct(out, y):
    """How many rows of ``out`` have their largest entry at the label (or at the target's largest entry).

    Parameters
    ----------
    out : ndarray, shape (n, n_out)
        Network outputs (probabilities or logits: the argmax is the same).
    y : ndarray, shape (n,) or (n, n_out)
        Integer labels or target rows.
    """
    pred = out.argmax(axis=1)
    return int(np.count_nonzero(pred == (y if y.ndim == 1 else y.argmax(axis=1))))


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts ``C[i, j]`` of examples of class ``i`` predicted as ``j``, shape ``(n_classes, n_classes)``."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes**2).reshape(
        n_classes, n_classes)


def classification_report(y_true, y_pred, class_names):
    """Per-class precision, recall, F1 and support, as a list of dicts (one per class)."""
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(counts).astype(float)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)]
