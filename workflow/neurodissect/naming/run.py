"""name_concepts: the rule's entry point. Reads the latents, their exemplars and
the method's inputs, names every latent that can be named, attaches the
calibrated confidence, and writes the concepts and skipped-latents tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, write_parquet
from . import table

log = logging.getLogger(__name__)

METHODS = ("reports", "clip", "llm")


@dataclass(frozen=True)
class NamingParams:
    method: str = "reports"
    prior_strength: float = 10.0
    min_support: int = 2
    top_phrases: int = 5
    n_permutations: int = 1000
    n_bootstrap: int = 200
    significance: float = 0.05
    fdr: float | None = 0.05
    min_support_fraction: float = 0.5
    exclude_class_names: bool = True
    refine_margin: float = 0.2
    seed: int = 0
    memory_mb: float = 1024.0
    llm: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> NamingParams:
        return settings_from(cls, cfg, section="naming", choices={"method": METHODS})


# -- inputs -----------------------------------------------------------------------
@dataclass(frozen=True)
class LatentExemplars:
    """The probing images (pool), each latent's exemplars, and who cannot be named."""

    pool_ids: np.ndarray  # (N,) probing image ids, latents-store row order
    splits: list[str]
    n_latents: int
    sets: dict[int, list[str]]  # nameable latent → exemplar image ids, rank order
    skipped: dict[int, str]  # latent → reason


def read_latent_exemplars(exemplars_path: PathLike, latents_path: PathLike) -> LatentExemplars:
    """Exemplars (annotate's select_exemplars on the latents) checked against the store;
    latents never active on the probing images are dead, active ones without
    exemplars (constant activation) have none."""
    from ..activations.store import ActivationStore
    from ..annotate.exemplars import read_exemplars

    df, meta = read_exemplars(exemplars_path)
    store = ActivationStore(latents_path)
    if int(meta["n_units"]) != store.n_units:
        raise InputError(
            f"{exemplars_path} was selected over {meta['n_units']} units but {latents_path} has "
            f"{store.n_units} latents: the exemplars are stale, rerun select_exemplars"
        )
    splits = list(meta.get("splits") or store.resolve_splits(meta["probe_split"]))
    pool_ids = store.image_ids(splits)
    foreign = np.setdiff1d(df["image_id"].astype(str).unique(), pool_ids)
    if len(foreign):
        raise InputError(
            f"{exemplars_path}: {len(foreign)} exemplar images are not probing images of "
            f"{latents_path} (e.g. {foreign[:5].tolist()}); the exemplars are stale, "
            "rerun select_exemplars"
        )
    active = latent_activity(store, splits)
    sets = {int(u): g["image_id"].astype(str).tolist() for u, g in df.groupby("unit", sort=True)}
    skipped = {}
    for latent in range(store.n_units):
        if not active[latent]:
            skipped[latent] = table.DEAD
        elif not sets.get(latent):
            skipped[latent] = table.NO_EXEMPLARS
    nameable = {u: ids for u, ids in sets.items() if u not in skipped}
    return LatentExemplars(pool_ids, splits, store.n_units, nameable, skipped)


def latent_activity(store, splits: list[str]) -> np.ndarray:
    """Per latent: is it ever active (> 0) on the probing images? One streamed pass."""
    from ..runtime import progress

    peak = np.full(store.n_units, -np.inf)
    for _, _, block in progress(store.iter_chunks(splits), desc="latent activity"):
        if len(block):
            peak = np.maximum(peak, block.max(axis=0))
    return peak > 0


def class_name_filter(manifest, enabled: bool):
    """phrase → may it be a name? With ``enabled`` not if it names a class of the
    ``manifest`` (:func:`~neurodissect.evaluate.text.names_a_class`): a concept of the
    bottleneck must not be the label it predicts."""
    if not enabled or manifest is None:
        return None
    from ..evaluate.text import names_a_class

    synonyms = {c: [c, *names] for c, names in manifest.class_synonyms.items()}
    return lambda phrase: not names_a_class(str(phrase), synonyms)


def load_report_corpus(
    manifest, doc_phrases_path, vocabulary_path, pool_ids, dataset="", allowed=None
):
    """The probing images' reports (``manifest``, a read Manifest) as a phrase-indicator
    corpus over the vocabulary phrases ``allowed`` accepts; no reports is an InputError."""
    from .documents import build_corpus, has_text, read_doc_phrases, read_vocabulary

    manifest_path = manifest.path
    if not has_text(manifest.df["report"]).any():
        name = f"dataset '{dataset}'" if dataset else "this dataset"
        raise InputError(
            f"{manifest_path}: {name} has no reports, so naming.method reports/llm cannot name "
            "latents; set naming.method: clip, or attach a report CSV to the dataset"
        )
    reports = manifest.df.set_index(manifest.df["image_id"].astype(str))["report"]
    missing = np.setdiff1d(pool_ids, reports.index.to_numpy())
    if len(missing):
        raise InputError(
            f"{manifest_path}: {len(missing)} probing images of the latents store are not in "
            f"the manifest (e.g. {missing[:5].tolist()}); the latents are from another dataset"
        )
    corpus = build_corpus(
        pool_ids,
        reports.loc[list(pool_ids)].to_numpy(),
        read_doc_phrases(doc_phrases_path),
        read_vocabulary(vocabulary_path),
        source=str(doc_phrases_path),
    )
    return corpus if allowed is None else corpus.with_phrases(list(map(allowed, corpus.phrases)))


# -- entry point ----------------------------------------------------------------
def name_concepts(
    exemplars: PathLike,
    latents: PathLike,
    concepts_out: PathLike,
    skipped_out: PathLike,
    params: NamingParams,
    *,
    manifest: PathLike | None = None,
    doc_phrases: PathLike | None = None,
    vocabulary: PathLike | None = None,
    image_emb: PathLike | None = None,
    text_emb: PathLike | None = None,
    dataset: str = "",
) -> dict[str, Any]:
    """Name every nameable latent; returns counts for the provenance record."""
    found = read_latent_exemplars(exemplars, latents)
    skipped = dict(found.skipped)
    extra: dict[str, Any] = {}
    if manifest is not None:
        from ..data.manifest import read_manifest

        manifest = read_manifest(manifest)  # read once: reports and class names
    allowed = class_name_filter(manifest, params.exclude_class_names)
    if params.method in ("reports", "llm"):
        corpus = load_report_corpus(
            manifest, doc_phrases, vocabulary, found.pool_ids, dataset, allowed
        )
        if params.method == "reports":
            from .reports import name_by_reports

            rows, more_skipped = name_by_reports(corpus, found.sets, params)
        else:
            from .llm import name_by_llm

            rows, more_skipped, extra = name_by_llm(corpus, found.sets, params)
    else:
        from .by_clip import name_by_clip

        rows, more_skipped = name_by_clip(
            image_emb, text_emb, vocabulary, latents, found, params, allowed
        )
    skipped.update(more_skipped)
    concepts = table.control_fdr(table.concepts_frame(rows), params.fdr)
    significant = (
        (concepts["q_value"] <= params.fdr)
        if params.fdr is not None
        else (concepts["p_value"] <= params.significance)
    )
    write_parquet(
        concepts,
        concepts_out,
        metadata={
            "method": params.method,
            "n_latents": found.n_latents,
            "fdr": params.fdr,
            "n_significant": int(significant.sum()),
        },
    )
    write_parquet(table.skipped_frame(skipped), skipped_out)
    summary = {
        "n_latents": int(found.n_latents),
        "n_named": int(len(concepts)),
        "n_interpretable": int((~concepts["uninterpretable"]).sum()),
        "n_significant": int(significant.sum()),
        "n_skipped": int(len(skipped)),
        **{f"n_{r}": sum(v == r for v in skipped.values()) for r in table.SKIP_REASONS},
        **extra,
    }
    log.info(
        "named %(n_named)d of %(n_latents)d latents (%(n_interpretable)d significant)", summary
    )
    return summary
