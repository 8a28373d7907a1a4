"""A linear probe: re-fit only the classification head on frozen penultimate
features. Used when a pretrained target model is dissected without training
(``opaque.train: false``) and its head does not fit the dataset's classes —
as the published method's ImageNet/MoCo backbones get a head for NIH14.

Logistic regression (multinomial, or one per label for multi-label data) on
standardised features, its inverse regularisation C chosen on the val split;
the standardisation is folded back into the head so the model maps raw
features to logits like any trained one.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ..evaluate.classification import classification_metrics, primary_metric
from ..runtime import progress
from .archs import head_linear, replace_head

log = logging.getLogger(__name__)
_NEVER = -30.0  # bias of a class absent from the train split: never predicted


@torch.inference_mode()
def penultimate_features(model: nn.Module, arch: str, loader, device) -> np.ndarray:
    """The head's inputs (N, C) for every image of ``loader``, in order."""
    captured: list[torch.Tensor] = []
    hook = head_linear(model, arch).register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].detach().float().cpu())
    )
    try:
        model.eval()
        for x, _ in progress(loader, desc="penultimate features"):
            model(x.to(device))
    finally:
        hook.remove()
    return torch.cat(captured).numpy()


def _fit_multiclass(x, y, n_classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    W = np.zeros((n_classes, x.shape[1]))
    b = np.full(n_classes, _NEVER)
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: logit of the second
        W[clf.classes_[1]], b[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
        b[clf.classes_[0]] = 0.0
    else:
        W[clf.classes_], b[clf.classes_] = clf.coef_, clf.intercept_
    return W, b


def _fit_multilabel(x, y, c: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    W = np.zeros((y.shape[1], x.shape[1]))
    b = np.zeros(y.shape[1])
    for k in range(y.shape[1]):
        if len(np.unique(y[:, k])) < 2:  # constant label: its prevalence, no weights
            b[k] = -_NEVER if y[0, k] else _NEVER
            continue
        clf = LogisticRegression(C=c, max_iter=2000).fit(x, y[:, k])
        W[k], b[k] = clf.coef_[0], clf.intercept_[0]
    return W, b


def _logits_to_scores(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    if multilabel:
        return 1.0 / (1.0 + np.exp(-logits))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    n_classes: int,
    multilabel: bool,
    cs: list[float],
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(W (K, C), b (K,)) on raw features, and the val score of every C tried."""
    mu = train_x.mean(axis=0)
    sd = train_x.std(axis=0)
    sd[sd == 0] = 1.0
    zt, zv = (train_x - mu) / sd, (val_x - mu) / sd
    key = primary_metric(multilabel)
    grid, best = [], None
    for c in cs:
        W, b = (
            _fit_multilabel(zt, train_y, c)
            if multilabel
            else _fit_multiclass(zt, train_y, n_classes, c)
        )
        score = classification_metrics(
            val_y, _logits_to_scores(zv @ W.T + b, multilabel), multilabel
        )[key]
        grid.append({"C": float(c), f"val_{key}": float(score)})
        rank = -np.inf if np.isnan(score) else round(float(score), 9)  # ties: stronger penalty
        if best is None or rank > best[0]:
            best = (rank, W, b, c)
    _, W, b, c = best
    for g in grid:
        g["chosen"] = g["C"] == float(c)
    log.info("linear probe: C=%g chosen on val (%s)", c, grid)
    return (W / sd).astype(np.float32), (b - (W / sd) @ mu).astype(np.float32), grid


def refit_head(model: nn.Module, arch: str, W: np.ndarray, b: np.ndarray) -> None:
    """Replace the head's parameters (and size) with ``W``/``b``, on the model's device."""
    device = next(model.parameters()).device
    head = replace_head(model, arch, W.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(W))
        head.bias.copy_(torch.from_numpy(b))
    head.to(device)
