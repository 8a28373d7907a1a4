"""The reports namer (offline default): a latent is named by the vocabulary
phrase most over-represented in its exemplars' reports relative to the rest of
the corpus (log-odds with an informative Dirichlet prior, :mod:`.logodds`).

The score of an exemplar set is a transform of one thing, the sum over its
exemplars of their reports' phrase indicators, so the generic confidence code
scores the observed set, random sets of the same size (p-value) and bootstrap
resamples (stability) alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .logodds import log_odds_z


@dataclass(frozen=True)
class LogOddsTransform:
    """transform(sums (S, k), set sizes (S,), phrase columns (k,)) → z-scores (S, k)."""

    corpus_counts: np.ndarray  # (V,) documents mentioning each phrase
    corpus_size: int  # documents in the corpus
    prior_strength: float

    def __call__(self, sums: np.ndarray, sizes: np.ndarray, cols: np.ndarray) -> np.ndarray:
        counts = self.corpus_counts[cols]
        return log_odds_z(sums, sizes, counts, self.corpus_size, self.prior_strength)


def corpus_sets(corpus, candidates: dict[int, list[str]]):
    """(latents, their exemplars as corpus rows, skipped): exemplars without a report
    are left out; a latent none of whose exemplars has a report is skipped."""
    from . import table

    latents, sets, skipped = [], [], {}
    for latent, image_ids in candidates.items():
        rows = corpus.rows_of(image_ids)
        rows = rows[rows >= 0]
        if len(rows) == 0:
            skipped[latent] = table.NO_REPORTS
        else:
            latents.append(latent)
            sets.append(rows)
    return np.asarray(latents, dtype=np.int64), sets, skipped


def top_phrases(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite scores, best first (fewer if fewer are finite)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return order[np.isfinite(scores[order])]


def refine(scores: np.ndarray, best: np.ndarray, phrases: Sequence[str], margin: float):
    """Per row: the best-scoring phrase that contains the row's top phrase as whole words
    ("white patch" ⊃ "patch") and scores ≥ (1 − ``margin``) × the top score, else the top."""
    from ..evaluate.text import matches

    best = np.asarray(best).copy()
    if margin <= 0:
        return best
    longer = {
        int(b): [j for j, p in enumerate(phrases) if j != b and matches(p, [phrases[b]])]
        for b in np.unique(best)
    }
    for i, b in enumerate(best):
        top = scores[i, b]
        within = [j for j in longer[int(b)] if top > 0 and scores[i, j] >= (1 - margin) * top]
        if within:
            best[i] = max(within, key=lambda j: scores[i, j])
    return best


def describe(phrases: Sequence[str]) -> str:
    """The reports namer's description: one sentence from the top phrases."""
    return f"Images whose reports mention {', '.join(phrases)} more often than the corpus does."


def name_by_reports(corpus, candidates: dict[int, list[str]], params):
    """(concept rows, skipped latent → reason) for latents with exemplar image ids.

    A name must be mentioned in at least ``params.min_support`` exemplar reports;
    a latent with no such phrase is skipped (``no_phrase``). The top phrase is then
    refined to a more specific one within ``params.refine_margin`` (:func:`refine`);
    score, p-value and stability are the top phrase's.
    """
    from ..annotate.confidence import SummedScorer, set_sizes
    from . import table
    from .assess import name_confidence, pad, scores_in_blocks

    latents, sets, skipped = corpus_sets(corpus, candidates)
    if len(latents) == 0:
        return [], skipped
    members = pad(sets)
    transform = LogOddsTransform(corpus.phrase_counts, len(corpus), params.prior_strength)
    scorer = SummedScorer(corpus.indicators, transform)
    support = scores_in_blocks(SummedScorer(corpus.indicators), members, params.memory_mb)
    scores = scores_in_blocks(scorer, members, params.memory_mb)
    eligible = np.where(support >= params.min_support, scores, -np.inf)
    nameable = np.isfinite(eligible).any(axis=1)
    skipped.update({int(u): table.NO_PHRASE for u in latents[~nameable]})
    latents, members, eligible, support = (
        latents[nameable],
        members[nameable],
        eligible[nameable],
        support[nameable],
    )
    if len(latents) == 0:
        return [], skipped
    best = eligible.argmax(axis=1)
    observed = eligible[np.arange(len(best)), best]
    p_value, stability = name_confidence(scorer, members, best, observed, latents, params)
    named = refine(eligible, best, corpus.phrases, params.refine_margin)
    sizes = set_sizes(members)
    rows = []
    for i, latent in enumerate(latents):
        top = top_phrases(eligible[i], params.top_phrases)
        over = [corpus.phrases[j] for j in top if eligible[i, j] > 0] or [corpus.phrases[best[i]]]
        rows.append(
            {
                "latent": int(latent),
                "name": str(corpus.phrases[named[i]]),
                "description": describe(over),
                "method": "reports",
                "score": float(observed[i]),
                "support": int(support[i, named[i]]),
                "p_value": float(p_value[i]),
                "stability": float(stability[i]),
                "uninterpretable": table.uninterpretable(
                    p_value[i], support[i, named[i]], sizes[i], params
                ),
            }
        )
    return rows, skipped
