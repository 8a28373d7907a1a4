"""Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn
2008, "Fightin' Words"), the score of the reports namer.

A group of documents (a latent's exemplar reports) is compared with the rest of
the corpus, one phrase at a time: does a document mention phrase w or not?
With y of the group's n documents mentioning w, r of the rest's m, and the
corpus rate p = (y + r) / (n + m) as the prior mean (a Dirichlet over the two
outcomes, i.e. a Beta prior with a0 pseudo-documents: a = a0 p, b = a0 (1 - p)):

    delta = log((y + a) / (n - y + b)) - log((r + a) / (m - r + b))
    var   = 1/(y + a) + 1/(n - y + b) + 1/(r + a) + 1/(m - r + b)
    z     = delta / sqrt(var)

The prior shrinks a phrase seen in one or two exemplar reports towards the
corpus rate, so a rare phrase cannot win on a single mention; the z-score
ranks phrases by how surely, not only how much, they are over-represented.
Each phrase is scored on its own counts, so any subset of phrases can be
scored (the confidence module scores concept columns in blocks).
"""

from __future__ import annotations

import numpy as np


def log_odds_z(
    group_counts: np.ndarray,
    group_size: np.ndarray | float,
    corpus_counts: np.ndarray,
    corpus_size: float,
    prior_strength: float,
) -> np.ndarray:
    """z-scored log-odds of each phrase in the group(s) vs the rest of the corpus.

    ``group_counts`` (..., V): documents of each group mentioning each phrase;
    ``group_size`` (...,): documents per group (the group is part of the corpus);
    ``corpus_counts`` (V,) and ``corpus_size``: the same over the whole corpus.
    A phrase mentioned by no document or by every document carries no evidence
    and scores 0. Computed in float32 (z to ~1e-5; the permutation null and the
    bootstrap evaluate this on millions of cells), in place where possible.
    """
    y = np.asarray(group_counts, dtype=np.float32)
    n = np.asarray(group_size, dtype=np.float32)[..., None]
    total = np.asarray(corpus_counts, dtype=np.float64)
    size = float(corpus_size)
    rate = total / size
    informative = (rate > 0) & (rate < 1)
    a = np.where(informative, prior_strength * rate, 1.0)
    b = np.where(informative, prior_strength * (1.0 - rate), 1.0)
    group_yes = y + a.astype(np.float32)  # y + a
    group_no = n - y  # n - y + b
    group_no += b.astype(np.float32)
    rest_yes = (total + a).astype(np.float32) - y  # r + a
    rest_no = y + (size - total + b).astype(np.float32)  # m - r + b
    rest_no -= n
    with np.errstate(divide="ignore", invalid="ignore"):
        z = group_yes * rest_no
        z /= group_no * rest_yes
        np.log(z, out=z)  # delta
        var = np.reciprocal(group_yes, out=group_yes)
        var += np.reciprocal(group_no, out=group_no)
        var += np.reciprocal(rest_yes, out=rest_yes)
        var += np.reciprocal(rest_no, out=rest_no)
        z /= np.sqrt(var, out=var)
    z[..., ~informative] = 0.0
    return z
