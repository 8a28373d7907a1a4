"""The CLIP namer: a latent's exemplar images matched against the vocabulary with
the annotation matcher (MAMMI's template-debiased similarity summed over the
exemplars), for datasets without reports. The name is the best concept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import InputError


def describe(concepts: Sequence[str]) -> str:
    """One sentence from the best-matching concepts."""
    then = f", then {', '.join(concepts[1:])}" if len(concepts) > 1 else ""
    return (
        f"Exemplar images look most like '{concepts[0]}' among the vocabulary{then} "
        "(template-debiased CLIP similarity)."
    )


def exemplars_backing(per_image: np.ndarray, name: int, k: int) -> int:
    """Exemplars that rank the name among their own ``k`` best concepts."""
    kth = np.partition(per_image, per_image.shape[1] - min(k, per_image.shape[1]), axis=1)
    floor = kth[:, per_image.shape[1] - min(k, per_image.shape[1])]
    return int(np.sum(per_image[:, name] >= floor))


def name_by_clip(image_emb, text_emb, vocabulary, latents_path, found, params, allowed=None):
    """(concept rows, skipped) for the latents in ``found.sets`` (none is skipped here);
    candidate names are the vocabulary concepts ``allowed`` accepts (default: all)."""
    from ..annotate import matching
    from . import table
    from .assess import name_confidence, pad, scores_in_blocks
    from .reports import top_phrases

    text = matching.read_text_embeddings(text_emb)
    keep = matching.vocabulary_filter(text, vocabulary, text_emb)
    if allowed is not None:
        keep = keep[[allowed(c) for c in text.concepts[keep]]]
    concepts, text_vectors = text.concepts[keep], text.emb[keep]
    pool_ids, pool_emb = matching.read_pool(image_emb, latents_path, found.splits)
    if text_vectors.shape[1] != pool_emb.shape[1]:
        raise InputError(
            f"{image_emb} embeds in {pool_emb.shape[1]} dimensions but {text_emb} in "
            f"{text_vectors.shape[1]}: not the same CLIP model"
        )
    if not found.sets:
        return [], {}
    latents = np.array(sorted(found.sets), dtype=np.int64)
    index = pd.Index(pool_ids)
    sets = [index.get_indexer(np.asarray(found.sets[u], dtype=object)) for u in latents]
    members = pad(sets)
    scorer = matching.mammi_scorer(pool_emb, text_vectors, text.template)
    scores = scores_in_blocks(scorer, members, params.memory_mb)
    best = scores.argmax(axis=1)
    observed = scores[np.arange(len(best)), best]
    p_value, stability = name_confidence(scorer, members, best, observed, latents, params)
    debiased = scorer.per_image.right
    rows = []
    for i, latent in enumerate(latents):
        top = top_phrases(scores[i], params.top_phrases)
        per_image = pool_emb[sets[i]] @ debiased.T
        backing = exemplars_backing(per_image, int(best[i]), params.top_phrases)
        rows.append(
            {
                "latent": int(latent),
                "name": str(concepts[best[i]]),
                "description": describe([str(concepts[j]) for j in top]),
                "method": "clip",
                "score": float(observed[i]),
                "support": backing,
                "p_value": float(p_value[i]),
                "stability": float(stability[i]),
                "uninterpretable": table.uninterpretable(p_value[i], backing, len(sets[i]), params),
            }
        )
    return rows, {}
