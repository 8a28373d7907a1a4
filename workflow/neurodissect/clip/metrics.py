"""How well a CLIP aligns images with text: report retrieval and zero-shot classification.

Both take L2-normalised embeddings (numpy) and are pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# class prompts of the zero-shot check (fixed, so changing annotate.template does not
# re-evaluate the CLIP)
ZEROSHOT_TEMPLATE = "an image showing {}"


def retrieval_ranks(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """0-based rank of each image's own text (row i ↔ text i) among all texts by cosine
    similarity. Texts scoring exactly as high as the own text (e.g. identical reports)
    do not push it down."""
    sim = image_emb @ text_emb.T
    own = np.diagonal(sim)[:, None]
    return (sim > own).sum(axis=1)


def recall_at_k(image_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
    """{f"recall_at_{k}": fraction of images whose own text ranks in the top k}."""
    ranks = retrieval_ranks(image_emb, text_emb)
    return {f"recall_at_{k}": float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}


def class_prompt_embeddings(per_class: Sequence[np.ndarray]) -> np.ndarray:
    """One embedding per class: the renormalised mean of its prompts' embeddings."""
    means = np.stack([e.mean(axis=0) for e in per_class])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def zeroshot_scores(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray) -> dict:
    """Multi-class (labels (N,) int): accuracy and balanced accuracy of the most similar
    class prompt; multi-label (labels (N, K)): mean AUROC of the cosine per class."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    sim = image_emb @ class_emb.T
    if labels.ndim == 1:
        pred = sim.argmax(axis=1)
        return {
            "zeroshot_accuracy": float(np.mean(pred == labels)),
            "zeroshot_balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
            "zeroshot_chance_accuracy": float(np.bincount(labels).max() / len(labels)),
        }
    aurocs = [
        roc_auc_score(labels[:, k], sim[:, k])
        for k in range(labels.shape[1])
        if 0 < labels[:, k].sum() < len(labels)
    ]
    return {"zeroshot_mean_auroc": float(np.mean(aurocs)) if aurocs else float("nan")}


def prompt_synonyms(class_synonyms: dict[str, list[str]], train_reports: Sequence[str]) -> dict:
    """Per class, the synonyms that occur in some train report (case-insensitive), or all
    of them if none does: class codes such as 'mel' never seen in text add only noise."""
    import re

    corpus = "\n".join(str(r).lower() for r in train_reports)
    out = {}
    for cls, names in class_synonyms.items():
        seen = [n for n in names if re.search(rf"\b{re.escape(n.lower())}\b", corpus)]
        out[cls] = seen or list(names)
    return out
