"""Accuracy, the one metric fcnet computes, counted the same way by every engine and by ``evaluate``."""

import numpy as np

__all__ = ["count_correct"]


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
