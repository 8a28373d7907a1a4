"""Units (neurons or SAE latents) against planted ground-truth concepts.

The AUROC of unit u for concept c is how well u's activation ranks the
images with c above those without (Mann-Whitney U / (n_pos · n_neg), ties
counted half). It is computed for all units and concepts at once from
per-column average ranks: AUROC = (Σ ranks of positives − n_pos(n_pos+1)/2)
/ (n_pos · n_neg), so K concepts x U units cost one sort per unit and one
(K x N) @ (N x U) product. Stores are processed in blocks of units, so
memory stays bounded for any number of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import PathLike, read_json, read_table

BLOCK_MB = 256.0
# arrays of N x block alive at once while ranking (scores, order, ranks, scratch)
_RANK_COPIES = 6


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of each column of ``scores`` (N, U), ties given their mean rank."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    order = np.argsort(s, axis=0, kind="stable")
    ranked = np.take_along_axis(s, order, axis=0)
    pos = np.broadcast_to(np.arange(n)[:, None], s.shape)
    first = np.ones(s.shape, dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    last = np.ones(s.shape, dtype=bool)
    last[:-1] = first[1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=0)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[::-1], axis=0)[::-1]
    ranks = np.empty_like(s)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=0)
    return ranks


def auroc_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, U) AUROC of every unit (columns of ``scores``) for every concept (columns of
    boolean ``labels``, N x K). NaN for a concept without positives or negatives."""
    y = np.asarray(labels, dtype=bool)
    if y.ndim == 1:
        y = y[:, None]
    if len(y) != len(scores):
        raise ValueError(f"{len(scores)} score rows but {len(y)} label rows")
    n_pos = y.sum(0).astype(np.float64)
    n_neg = len(y) - n_pos
    rank_sums = y.T.astype(np.float64) @ average_ranks(scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sums - (n_pos * (n_pos + 1) / 2)[:, None]) / (n_pos * n_neg)[:, None]
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def store_auroc(
    store_path: PathLike, split: str, labels: np.ndarray, block_mb: float = BLOCK_MB
) -> np.ndarray:
    """:func:`auroc_matrix` for every unit of a store's split, in blocks of units.

    ``labels`` must follow the split's row order (check ids before calling).
    """
    from ..activations.store import ActivationStore
    from ..runtime import progress

    store = ActivationStore(store_path)
    acts = store.acts_array(split)
    n, n_units = acts.shape
    per_unit = max(1, n) * 8 * _RANK_COPIES
    block = max(1, int(block_mb * 2**20 // per_unit))
    parts = []
    for start in progress(range(0, n_units, block), desc="AUROC by unit block"):
        parts.append(auroc_matrix(acts[:, start : start + block], labels))
    return np.concatenate(parts, axis=1) if parts else np.zeros((labels.shape[1], 0))


def best_units(auroc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per concept: the unit with the highest AUROC and that AUROC (NaN rows → -1, NaN)."""
    k = auroc.shape[0]
    best = np.full(k, -1, dtype=np.int64)
    value = np.full(k, np.nan)
    valid = ~np.isnan(auroc).all(axis=1) if auroc.shape[1] else np.zeros(k, bool)
    if valid.any():
        best[valid] = np.nanargmax(auroc[valid], axis=1)
        value[valid] = auroc[valid, best[valid]]
    return best, value


# -- planted concepts (synthetic data) ---------------------------------------
@dataclass
class PlantedConcepts:
    """Per-image presence of each planted concept, and the names that count as it."""

    image_ids: np.ndarray  # (N,) str
    concepts: list[str]
    present: np.ndarray  # (N, K) bool
    synonyms: dict[str, list[str]]  # concept -> names (the concept itself first)
    source: str = ""  # the table it was read from, for messages

    def aligned(self, image_ids, where: str) -> np.ndarray:
        """(len(image_ids), K) presence in the order of ``image_ids``; unknown ids are an error."""
        index = pd.Index(self.image_ids)
        pos = index.get_indexer(np.asarray(image_ids).astype(str))
        if (pos < 0).any():
            missing = np.asarray(image_ids)[pos < 0][:5].tolist()
            raise InputError(
                f"{(pos < 0).sum()} images of {where} have no planted-concept truth in "
                f"{self.source}, e.g. {missing}"
            )
        return self.present[pos]


def read_planted_concepts(table: PathLike, synonyms: PathLike | None = None) -> PlantedConcepts:
    """``concepts_gt.parquet`` (image_id + one boolean column per concept) and the
    optional ``concepts_gt.json`` (concept → {"synonyms": [...]} or a list)."""
    df = read_table(table, "planted-concept table not found")
    if "image_id" not in df.columns:
        raise InputError(f"{table}: no image_id column (columns: {list(df.columns)[:10]})")
    concepts = [c for c in df.columns if c != "image_id"]
    bad = [c for c in concepts if not set(pd.unique(df[c].dropna())) <= {0, 1}]  # True == 1
    if bad:
        raise InputError(f"{table}: concept columns {bad[:10]} are not boolean (0/1)")
    names = {c: [c] for c in concepts}
    if synonyms is not None:
        info = read_json_file(synonyms)
        for concept in concepts:
            entry = info.get(concept, {})
            extra = entry.get("synonyms", []) if isinstance(entry, dict) else list(entry)
            names[concept] = list(dict.fromkeys([concept, *map(str, extra)]))
    return PlantedConcepts(
        image_ids=df["image_id"].astype(str).to_numpy(),
        concepts=concepts,
        present=df[concepts].fillna(False).to_numpy(dtype=bool),
        synonyms=names,
        source=str(table),
    )


def class_causes(info: dict, classes: list[str], key: str = "causes") -> dict[str, list[str]]:
    """class → planted concepts that cause it, from concepts_gt.json entries' ``causes``
    (``key="spurious_for"``: the concepts spuriously correlated with it)."""
    out: dict[str, list[str]] = {c: [] for c in classes}
    for concept, entry in info.items():
        if not isinstance(entry, dict):
            continue
        for cls in entry.get(key) or []:
            if cls in out:
                out[cls].append(concept)
    return out


def read_json_file(path: PathLike) -> dict:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object (concept -> synonyms)")
    return data


def concept_recovery(
    auroc: np.ndarray, concepts: list[str], threshold: float = 0.9
) -> pd.DataFrame:
    """Per planted concept: best unit, its AUROC, and whether it reaches ``threshold``."""
    best, value = best_units(auroc)
    return pd.DataFrame(
        {
            "concept": concepts,
            "best_unit": best,
            "auroc": value,
            "recovered": np.nan_to_num(value, nan=0.0) >= threshold,
            "evaluable": ~np.isnan(value),
        }
    )


# -- dictionary quality against planted concepts ------------------------------
def correlation_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, U) |Pearson correlation| of every unit with every concept's presence;
    0 where a unit or a concept is constant (nothing to correlate)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).reshape(len(s), -1)
    s = s - s.mean(0)
    y = y - y.mean(0)
    norm = np.outer(np.linalg.norm(y, axis=0), np.linalg.norm(s, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(y.T @ s) / norm
    return np.nan_to_num(corr, nan=0.0, posinf=0.0)


def store_correlation(
    store_path: PathLike, split: str, labels: np.ndarray, block_mb: float = BLOCK_MB
) -> np.ndarray:
    """:func:`correlation_matrix` for every unit of a store's split, in blocks of units."""
    from ..activations.store import ActivationStore

    acts = ActivationStore(store_path).acts_array(split)
    n, n_units = acts.shape
    block = max(1, int(block_mb * 2**20 // (max(1, n) * 8 * 3)))
    parts = [correlation_matrix(acts[:, s : s + block], labels) for s in range(0, n_units, block)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((labels.shape[1], 0))


def matched_correlation(corr: np.ndarray) -> tuple[float, np.ndarray]:
    """MCC: one-to-one matching of concepts (rows) to units (columns) maximising the
    summed |correlation| (Hungarian algorithm); (mean over concepts, unit per concept).
    A concept left without a unit (fewer units than concepts) scores 0, unit -1."""
    from scipy.optimize import linear_sum_assignment

    k = corr.shape[0]
    unit = np.full(k, -1, dtype=np.int64)
    if k == 0:
        return float("nan"), unit
    rows, cols = linear_sum_assignment(np.nan_to_num(corr), maximize=True)
    unit[rows] = cols
    score = np.zeros(k)
    score[rows] = corr[rows, cols]
    return float(score.mean()), unit


def firing_f1(active: np.ndarray, present: np.ndarray) -> np.ndarray:
    """F1 of "the unit fires" (boolean (N,) or (N, K)) against concept presence, per column."""
    a = np.asarray(active, dtype=bool).reshape(len(active), -1)
    y = np.asarray(present, dtype=bool).reshape(len(present), -1)
    tp = (a & y).sum(0)
    denom = a.sum(0) + y.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def probe_auroc(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 1.0,
    max_iter: int = 1000,
) -> np.ndarray:
    """(K,) held-out AUROC of one logistic-regression probe per concept on standardised
    features: is the concept linearly *encoded* in the features at all? NaN for a concept
    without both classes in the train or the test rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    xs_train, xs_test = scaler.transform(train_x), scaler.transform(test_x)
    out = np.full(train_y.shape[1], np.nan)
    for j in range(train_y.shape[1]):
        y_tr, y_te = train_y[:, j].astype(bool), test_y[:, j].astype(bool)
        if y_tr.all() or not y_tr.any() or y_te.all() or not y_te.any():
            continue
        probe = LogisticRegression(C=c, max_iter=max_iter).fit(xs_train, y_tr)
        out[j] = auroc_matrix(probe.decision_function(xs_test)[:, None], y_te)[0, 0]
    return out
