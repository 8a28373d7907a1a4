"""Classification metrics, in one place so the opaque model, the SAE's
fidelity check and the concept bottleneck model are scored identically.

``scores`` are class probabilities (softmax rows for multi-class data, one
sigmoid per class for multi-label data), e.g. from
:func:`neurodissect.opaque.predict_from_penultimate`.
"""

from __future__ import annotations

import numpy as np

MULTILABEL_THRESHOLD = 0.5


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (sklearn's definition)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    if not len(present):
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present]))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over classes occurring in ``y_true`` or ``y_pred`` (sklearn's default)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)
    if not len(labels):
        return float("nan")
    f1 = []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)
        f1.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of one binary label (rank statistic, ties averaged)."""
    from scipy.stats import rankdata

    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, multilabel: bool) -> dict:
    """Metrics of probabilities ``scores`` (N, K) against labels.

    Multi-class (``y_true`` (N,) int): ``accuracy``, ``balanced_accuracy`` and
    ``macro_f1`` of the arg-max class.

    Multi-label (``y_true`` (N, K) 0/1): ``mean_auroc`` over the labels with
    both outcomes present (NaN if none), plus ``accuracy``, ``balanced_accuracy``
    and ``macro_f1`` per label at threshold 0.5, averaged over labels.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not multilabel:
        pred = scores.argmax(axis=1)
        y = np.asarray(y_true).astype(np.int64)
        return {
            "accuracy": accuracy(y, pred),
            "balanced_accuracy": balanced_accuracy(y, pred),
            "macro_f1": macro_f1(y, pred),
        }
    y = np.asarray(y_true).astype(np.int64)
    pred = (scores >= MULTILABEL_THRESHOLD).astype(np.int64)
    aurocs = [auroc(y[:, k], scores[:, k]) for k in range(y.shape[1])]
    defined = [a for a in aurocs if not np.isnan(a)]
    per_label = range(y.shape[1])
    return {
        "accuracy": float(np.mean([accuracy(y[:, k], pred[:, k]) for k in per_label])),
        "balanced_accuracy": float(
            np.nanmean([balanced_accuracy(y[:, k], pred[:, k]) for k in per_label])
        ),
        "macro_f1": float(np.mean([_binary_f1(y[:, k], pred[:, k]) for k in per_label])),
        "mean_auroc": float(np.mean(defined)) if defined else float("nan"),
    }


def _binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    tp = np.sum((y_true == 1) & (y_pred == 1))
    denom = np.sum(y_true == 1) + np.sum(y_pred == 1)
    return float(2.0 * tp / denom) if denom else 0.0


def primary_metric(multilabel: bool) -> str:
    """The metric that picks the best epoch / regularisation: balanced accuracy or mean AUROC."""
    return "mean_auroc" if multilabel else "balanced_accuracy"
