"""Statistics of paired responses: r1 = a unit's response with the concept, r0 = the
same image's without it, over n pairs.

- paired AUROC = P(r1 > r0) over the pairs, ties counted half (0.5: no effect; the
  AUROC of a pair-matched comparison, so image-to-image variation does not dilute it);
- effect = mean(r1 - r0), in the unit's own activation units;
- p_value: one-sided Wilcoxon signed-rank test of r1 - r0 > 0 (zero differences
  dropped; p = 1 when every difference is zero: a unit that does not move);
- confirmed = p_value < significance and effect > 0.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon


def paired_auroc(with_concept: np.ndarray, without: np.ndarray) -> np.ndarray:
    """(U,) P(r1 > r0) + P(r1 = r0)/2 of (n, U) response pairs."""
    d = np.asarray(with_concept, np.float64) - np.asarray(without, np.float64)
    return (d > 0).mean(axis=0) + 0.5 * (d == 0).mean(axis=0)


def signed_rank_p(with_concept: np.ndarray, without: np.ndarray) -> np.ndarray:
    """(U,) one-sided Wilcoxon signed-rank p-values (r1 > r0) of (n, U) response pairs."""
    d = np.asarray(with_concept, np.float64) - np.asarray(without, np.float64)
    p = np.ones(d.shape[1])
    moving = (d != 0).any(axis=0)
    if moving.any():
        res = wilcoxon(d[:, moving], alternative="greater", zero_method="wilcox", axis=0)
        p[moving] = np.nan_to_num(np.asarray(res.pvalue, np.float64), nan=1.0)
    return p


def paired_stats(with_concept: np.ndarray, without: np.ndarray, significance: float) -> dict:
    """Per unit (columns): n_pairs, n_informative (pairs whose responses differ: the
    signed-rank test's sample), auroc, effect, p_value, confirmed."""
    r1, r0 = np.asarray(with_concept, np.float64), np.asarray(without, np.float64)
    if r1.shape != r0.shape or r1.ndim != 2:
        raise ValueError(f"response pairs must be two (n, U) arrays, got {r1.shape} and {r0.shape}")
    effect = (r1 - r0).mean(axis=0)
    p = signed_rank_p(r1, r0)
    return {
        "n_pairs": np.full(r1.shape[1], len(r1), dtype=np.int64),
        "n_informative": (r1 != r0).sum(axis=0).astype(np.int64),
        "auroc": paired_auroc(r1, r0),
        "effect": effect,
        "p_value": p,
        "confirmed": (p < significance) & (effect > 0),
    }
