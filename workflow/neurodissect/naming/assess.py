"""Glue between the namers and the generic calibrated confidence of
:mod:`neurodissect.annotate.confidence`: every namer hands over a set scorer
(a transform of summed per-image scores), its exemplar sets as scorer rows, and
the chosen name per set; the name's p-value (max-statistic permutation null)
and bootstrap stability (is it still the top concept) come back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..annotate import confidence as conf


def pad(sets: Sequence[np.ndarray]) -> np.ndarray:
    return conf.pad_sets([np.asarray(s, dtype=np.int64) for s in sets])


def scores_in_blocks(scorer, members: np.ndarray, memory_mb: float) -> np.ndarray:
    """(U, K) scores of every set, a block of sets at a time (bounded memory)."""
    from ..annotate.matching import units_per_block

    step = units_per_block(scorer.n_concepts, memory_mb)
    parts = [
        conf.score_sets(scorer, members[i : i + step], memory_mb / 4)
        for i in range(0, len(members), step)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, scorer.n_concepts))


def name_confidence(
    scorer,
    members: np.ndarray,
    names: np.ndarray,
    observed: np.ndarray,
    keys: np.ndarray,
    params,
) -> tuple[np.ndarray, np.ndarray]:
    """(p-values, stabilities) of one name (a concept column) per exemplar set.

    ``observed`` are the names' scores (already computed by the namer); ``keys``
    (the latent ids) seed each latent's bootstrap, so results do not depend on
    which other latents are named in the same run.
    """
    names = np.asarray(names, dtype=np.int64)
    result = conf.assess(
        scorer,
        members,
        [names[i : i + 1] for i in range(len(names))],
        conf.TopK(1),
        n_permutations=params.n_permutations,
        n_bootstrap=params.n_bootstrap,
        seed=params.seed,
        keys=keys,
        observed=[np.asarray(observed[i : i + 1], dtype=np.float64) for i in range(len(names))],
        budget_mb=params.memory_mb / 4,
    )
    p_value = np.array([p[0] for p in result.p_values], dtype=np.float64)
    stability = np.array([s[0] for s in result.stability], dtype=np.float64)
    return p_value, stability
