"""Concept matching: score every unit's exemplar set against the vocabulary and keep the
best concepts (α-cut), with calibrated confidence.

**MAMMI (template-debiased).** With L2-normalised image embeddings f_i, text embeddings
g_c of "template.format(concept)" and g_0 of the bare template, each image scores
s_i(c) = cos(f_i, g_c) − cos(f_i, g_0) and unit j scores S_j(c) = Σ_{i ∈ E_j} s_i(c).
Because s is linear in f, S = (M F)(G − g_0)ᵀ with M the (units x images) exemplar
indicator: one sparse sum of exemplar embeddings and one dense product per block of
units, never an images x vocabulary matrix.

``annotate.debias: none`` is MAMMI's template ablation: g_0 = 0, S_j(c) = Σ cos(f_i, g_c)
(the raw, template-biased similarity), for comparison with the default ``base``.

``annotate.standardize``: each concept's per-image score is z-scored over the probing
pool first, s'_i(c) = (s_i(c) − μ_c) / σ_c, so a phrase whose similarity merely varies
more across images (a specific finding's wording) does not outscore one that separates
the exemplars better (the diagnosis); the label-free CBM standardises CLIP concept scores
over the dataset for the same reason. μ_c = f̄·d_c and σ_c² = d_cᵀ Cov(f) d_c come from
the pool's mean and covariance (d_c = g_c − g_0), and s' stays factored: [f_i, 1] ·
[d_c / σ_c, −μ_c / σ_c].

**soft-WPMI (CLIP-Dissect, for comparison).** q_i(c) = softmax_c(a·cos(f_i, g_c));
log P(c | E_j) = Σ_r log(1 + p_r (q_{i_r}(c) − 1) + ε) over the exemplars in rank order
with p_r falling linearly from p_start to p_end; score = log P(c | E_j) − λ·log mean_j'
P(c | E_j') (the concept's prior over the layer's units).

Both are :class:`~neurodissect.annotate.confidence.SetScorer` s, so the permutation
p-values and bootstrap stability of :mod:`.confidence` apply unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, write_parquet
from . import confidence as conf
from .exemplars import read_exemplars

log = logging.getLogger(__name__)

SCORERS = ("mammi", "soft_wpmi")
DEBIAS = ("base", "none")
CONCEPT_COLUMNS = (
    "unit",
    "rank",
    "concept",
    "score",
    "p_value",
    "stability",
    "uninterpretable",
    "q_value",
)


@dataclass(frozen=True)
class SoftWPMIParams:
    a: float = 10.0
    lam: float = 1.0
    p_start: float = 0.998
    p_end: float = 0.97
    min_prob: float = 1e-7


@dataclass(frozen=True)
class MatchParams:
    alpha: float = 95.0
    scorer: str = "mammi"
    n_permutations: int = 1000
    n_bootstrap: int = 200
    significance: float = 0.05
    fdr: float | None = 0.05
    null: str = "max"
    seed: int = 0
    memory_mb: float = 1024.0
    debias: str = "base"  # MAMMI's template ablation: subtract g_0 (base) or not (none)
    standardize: bool = False  # z-score each concept's per-image score over the pool
    soft_wpmi: SoftWPMIParams = field(default_factory=SoftWPMIParams)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> MatchParams:
        params = settings_from(
            cls, cfg, section="annotate", choices={"scorer": SCORERS, "debias": DEBIAS}
        )
        if isinstance(params.soft_wpmi, dict):
            soft = settings_from(SoftWPMIParams, params.soft_wpmi, section="annotate.soft_wpmi")
            params = replace(params, soft_wpmi=soft)
        return params


# -- scorers ----------------------------------------------------------------------------
def mammi_scorer(
    image_emb: np.ndarray, text_emb: np.ndarray, template_emb: np.ndarray, standardize=False
):
    """S_j(c) = Σ_{i ∈ E_j} f_i · (g_c − g_0): a sum scorer on factored per-image scores;
    ``standardize``: each concept's f_i · d_c z-scored over the pool (module docstring)."""
    image_emb = np.asarray(image_emb, np.float32)
    debiased = np.asarray(text_emb, np.float32) - np.asarray(template_emb, np.float32)[None, :]
    if standardize:
        image_emb, debiased = standardized_factors(image_emb, debiased)
    return conf.SummedScorer(conf.Factored(image_emb, debiased))


def standardized_factors(image_emb: np.ndarray, directions: np.ndarray):
    """([f_i, 1], [d_c / σ_c, −μ_c / σ_c]): factors whose product is (f_i·d_c − μ_c) / σ_c,
    with μ_c and σ_c the mean and standard deviation of f·d_c over the rows of image_emb."""
    f = image_emb.astype(np.float64)
    mean = f.mean(axis=0)
    cov = np.cov(f, rowvar=False, bias=True).reshape(f.shape[1], f.shape[1])
    d = directions.astype(np.float64)
    mu = d @ mean
    sigma = np.sqrt(np.maximum(np.einsum("kd,de,ke->k", d, cov, d), 0.0))
    sigma = np.where(sigma > 1e-12, sigma, np.inf)  # a constant score carries no evidence
    left = np.hstack([f, np.ones((len(f), 1))])
    right = np.hstack([d / sigma[:, None], (-mu / sigma)[:, None]])
    return left.astype(np.float32), right.astype(np.float32)


class SoftWPMIScorer:
    """CLIP-Dissect's soft-WPMI on exemplar sets (see the module docstring)."""

    def __init__(
        self,
        image_emb: np.ndarray,
        text_emb: np.ndarray,
        params: SoftWPMIParams = SoftWPMIParams(),
        budget_mb: float = conf.DEFAULT_BUDGET_MB,
    ) -> None:
        self.image_emb = np.asarray(image_emb, np.float32)
        self.text_emb = np.asarray(text_emb, np.float32)
        self.params = params
        self.n_images, self.n_concepts = len(self.image_emb), len(self.text_emb)
        self.log_norm = self._log_normaliser(budget_mb)
        self.prior = np.zeros(self.n_concepts)

    def _log_normaliser(self, budget_mb: float) -> np.ndarray:
        """Per pool image: logsumexp over all concepts of a·cos, in concept blocks."""
        lse = np.full(self.n_images, -np.inf)
        step = conf.columns_per_block(self.n_images, self.n_concepts, budget_mb)
        for start in range(0, self.n_concepts, step):
            logits = self.params.a * (self.image_emb @ self.text_emb[start : start + step].T)
            lse = np.logaddexp(lse, _logsumexp(logits.astype(np.float64), axis=1))
        return lse

    def fit_prior(self, members: np.ndarray, budget_mb: float = conf.DEFAULT_BUDGET_MB) -> None:
        """log mean over the layer's units of P(c | E_j), the concept prior λ scales."""
        acc = np.full(self.n_concepts, -np.inf)
        self.prior = np.zeros(self.n_concepts)
        for cols, block in self._log_likelihood_blocks(members, None, budget_mb):
            acc[cols] = _logsumexp(block, axis=0)
        self.prior = acc - np.log(max(1, len(members)))

    def _log_likelihood_blocks(self, members, concepts, budget_mb):
        p = self.params
        members = np.asarray(members)
        concepts = np.arange(self.n_concepts) if concepts is None else np.asarray(concepts)
        filled = members >= 0
        sizes = filled.sum(axis=1)
        slot = np.arange(members.shape[1])[None, :]
        weight = p.p_start - slot / np.maximum(sizes, 1)[:, None] * (p.p_start - p.p_end)
        rows, inverse = np.unique(
            np.where(filled, members, members.max(initial=0)), return_inverse=True
        )
        inverse = inverse.reshape(members.shape)
        emb = self.image_emb[rows]
        per_cell = max(1, members.size)
        step = conf.columns_per_block(per_cell, len(concepts), budget_mb)
        for start in range(0, len(concepts), step):
            cols = concepts[start : start + step]
            q = np.exp(
                p.a * (emb @ self.text_emb[cols].T).astype(np.float64)
                - self.log_norm[rows][:, None]
            )
            terms = np.log(1.0 + weight[..., None] * (q[inverse] - 1.0) + p.min_prob)
            yield cols, np.where(filled[..., None], terms, 0.0).sum(axis=1)

    def blocks(self, members, concepts=None, budget_mb=conf.DEFAULT_BUDGET_MB):
        for cols, loglik in self._log_likelihood_blocks(members, concepts, budget_mb):
            yield cols, loglik - self.params.lam * self.prior[cols]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.squeeze(peak, axis=axis) + np.log(np.sum(np.exp(x - peak), axis=axis))


# -- assignment ---------------------------------------------------------------------------
def units_per_block(n_concepts: int, memory_mb: float) -> int:
    """Units scored at once: a (units x K) float32 block and its mask within a quarter budget."""
    return max(1, int(memory_mb * 2**20 / 4 // (max(1, n_concepts) * 9)))


def match_units(
    scorer: conf.SetScorer, members: np.ndarray, rule: conf.Rule, memory_mb: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per exemplar set: assigned concept indices (best first) and their scores."""
    from ..runtime import progress

    assigned, scores = [], []
    step = units_per_block(scorer.n_concepts, memory_mb)
    for start in progress(range(0, len(members), step), desc="matching unit blocks"):
        block = conf.score_sets(scorer, members[start : start + step], memory_mb / 4)
        for row, kept in zip(block, conf.assign(block, rule), strict=True):
            assigned.append(kept)
            scores.append(row[kept])
    return assigned, scores


# -- inputs -------------------------------------------------------------------------------
@dataclass
class TextEmbeddings:
    concepts: np.ndarray  # (K,) str
    emb: np.ndarray  # (K, D) float32
    template: np.ndarray  # (D,)


def read_text_embeddings(path: PathLike) -> TextEmbeddings:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        concepts = np.asarray(group["concepts"][:]).astype(object).astype(str)
        emb = np.asarray(group["emb"][:], dtype=np.float32)
        template = np.asarray(group["template_emb"][:], dtype=np.float32).reshape(-1)
    except KeyError as exc:
        raise InputError(
            f"{path}: text-embedding store lacks array {exc} (expected concepts, emb, template_emb)"
        ) from None
    except Exception as exc:  # zarr raises several types for a missing / foreign folder
        raise InputError(f"{path}: not a readable text-embedding Zarr store ({exc})") from None
    if emb.ndim != 2 or len(emb) != len(concepts) or emb.shape[1] != len(template):
        raise InputError(
            f"{path}: emb {emb.shape}, concepts ({len(concepts)},), template_emb "
            f"{template.shape} do not fit together (expected (K, D), (K,), (D,))"
        )
    return TextEmbeddings(concepts, emb, template)


def vocabulary_filter(text: TextEmbeddings, vocab_path: PathLike | None, text_path) -> np.ndarray:
    """Indices of the text store's concepts that are non-blank and in the vocabulary table."""
    keep = np.array([bool(c.strip()) for c in text.concepts], dtype=bool)
    n_vocab = None
    if vocab_path is not None:
        try:
            vocab = pd.read_parquet(vocab_path, columns=["concept"])["concept"].astype(str)
        except Exception as exc:  # missing file, no concept column, not parquet
            raise InputError(
                f"{vocab_path}: not a vocabulary table with a concept column ({exc})"
            ) from None
        n_vocab = len(vocab)
        keep &= np.isin(text.concepts, vocab.to_numpy())
    _, first = np.unique(text.concepts, return_index=True)  # a repeated concept counts once
    unique = np.zeros(len(keep), dtype=bool)
    unique[first] = True
    keep &= unique
    if not keep.any():
        raise InputError(
            f"empty vocabulary after filtering: {text_path} has {len(text.concepts)} concepts"
            + (f", {vocab_path} has {n_vocab}, none in common" if n_vocab is not None else "")
            + " (rebuild the vocabulary / text embeddings, or lower vocab.min_df)"
        )
    return np.flatnonzero(keep)


def read_pool(
    image_emb_path: PathLike, units_path: PathLike, splits: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(probe image ids, their L2-normalised image embeddings (N, D) in the units store's
    row order). Differing image ids between the two stores are one InputError naming both."""
    from ..activations.store import ActivationStore

    units = ActivationStore(units_path)
    images = ActivationStore(image_emb_path)
    ids = units.image_ids(splits)
    missing_splits = [s for s in splits if s not in images.splits]
    if missing_splits:
        raise InputError(
            f"image ids of {units_path} and {image_emb_path} differ: the image "
            f"store has no split(s) {missing_splits}"
        )
    emb_ids = images.image_ids(splits)
    index = pd.Index(emb_ids)
    if not index.is_unique:
        raise InputError(f"{image_emb_path}: repeated image ids in split(s) {splits}")
    pos = index.get_indexer(ids)
    extra = np.setdiff1d(emb_ids, ids)
    if (pos < 0).any() or len(extra):
        raise InputError(
            f"image ids of {units_path} and {image_emb_path} differ on split(s) {splits}: "
            f"{int((pos < 0).sum())} of {len(ids)} unit-store images have no embedding "
            f"(e.g. {ids[pos < 0][:3].tolist()}), {len(extra)} embedded images are not in the "
            f"unit store (e.g. {extra[:3].tolist()}); rebuild the older of the two"
        )
    emb = images.read(splits)[pos]
    return ids, emb.astype(np.float32)


def exemplar_members(df: pd.DataFrame, pool_ids: np.ndarray, exemplars_path) -> tuple:
    """(units with exemplars, (U, m) pool rows padded with -1) from the exemplars table."""
    pos = pd.Index(pool_ids).get_indexer(df["image_id"].astype(str))
    if (pos < 0).any():
        bad = df.loc[pos < 0, "image_id"].astype(str).unique()[:5].tolist()
        raise InputError(
            f"{exemplars_path}: {int((pos < 0).sum())} exemplar images are not probing images "
            f"of the unit store (e.g. {bad}); the exemplars are stale, rerun select_exemplars"
        )
    units = np.unique(df["unit"].to_numpy())
    sets = [pos[df["unit"].to_numpy() == u] for u in units]  # df is sorted by unit, rank
    return units, conf.pad_sets(sets)


# -- entry point -----------------------------------------------------------------------------
def concept_table(units, concepts, assigned, scores, p_values, stability, significance, fdr=None):
    """One row per (unit, assigned concept). A unit is tested once, by its top concept's
    p-value; q_value is that p adjusted by Benjamini–Hochberg across the units (on every row
    of the unit). Flagged uninterpretable: p > significance, or q > fdr when fdr is set."""
    q_units = conf.benjamini_hochberg([float(p[0]) for p in p_values])
    rows = []
    for u, a, s, p, st, q in zip(
        units, assigned, scores, p_values, stability, q_units, strict=True
    ):
        flag = bool(p[0] > significance or (fdr is not None and not q <= fdr))
        rows += [
            (int(u), r, str(concepts[c]), float(s[r]), float(p[r]), float(st[r]), flag, float(q))
            for r, c in enumerate(a)
        ]
    df = pd.DataFrame(rows, columns=list(CONCEPT_COLUMNS))
    return df.astype({"unit": np.int64, "rank": np.int64, "uninterpretable": bool})


def build_scorer(params: MatchParams, pool_emb, text: TextEmbeddings, members):
    budget = params.memory_mb / 4
    if params.scorer == "mammi":
        g0 = text.template if params.debias == "base" else np.zeros_like(text.template)
        return mammi_scorer(pool_emb, text.emb, g0, params.standardize)
    scorer = SoftWPMIScorer(pool_emb, text.emb, params.soft_wpmi, budget)
    scorer.fit_prior(members, budget)
    return scorer


def match_concepts(
    exemplars: PathLike,
    units_store: PathLike,
    image_emb: PathLike,
    text_emb: PathLike,
    out_path: PathLike,
    params: MatchParams,
    vocabulary: PathLike | None = None,
) -> dict[str, Any]:
    """Rule entry point: neuron_concepts.parquet (unit, rank, concept, score, p_value,
    stability, uninterpretable) for every unit with exemplars."""
    df, meta = read_exemplars(exemplars)
    text = read_text_embeddings(text_emb)
    keep = vocabulary_filter(text, vocabulary, text_emb)
    text = TextEmbeddings(text.concepts[keep], text.emb[keep], text.template)
    pool_ids, pool_emb = read_pool(image_emb, units_store, list(meta["splits"]))
    units, members = exemplar_members(df, pool_ids, exemplars)
    if text.emb.shape[1] != pool_emb.shape[1]:
        raise InputError(
            f"{image_emb} embeds in {pool_emb.shape[1]} dimensions but {text_emb} "
            f"in {text.emb.shape[1]}: not the same CLIP model"
        )
    rule = conf.AlphaCut(params.alpha)
    scorer = build_scorer(params, pool_emb, text, members)
    assigned, scores = match_units(scorer, members, rule, params.memory_mb)
    confidence = conf.assess(
        scorer,
        members,
        assigned,
        rule,
        n_permutations=params.n_permutations,
        n_bootstrap=params.n_bootstrap,
        seed=params.seed,
        null=params.null,
        keys=units,
        observed=scores,
        budget_mb=params.memory_mb / 4,
    )
    table = concept_table(
        units,
        text.concepts,
        assigned,
        scores,
        confidence.p_values,
        confidence.stability,
        params.significance,
        params.fdr,
    )
    write_parquet(
        table,
        out_path,
        metadata={
            "n_units": meta["n_units"],
            "dead_units": meta["dead_units"],
            "scorer": params.scorer,
            "alpha": params.alpha,
            "null": params.null,
            "n_concepts": int(len(text.concepts)),
            "probe_split": meta["probe_split"],
            "store_attrs": meta.get("store_attrs", {}),
        },
    )
    n_uninterpretable = int(table.groupby("unit")["uninterpretable"].first().sum())
    log.info(
        "%d units matched against %d concepts; %d uninterpretable, %d dead",
        len(units),
        len(text.concepts),
        n_uninterpretable,
        len(meta["dead_units"]),
    )
    return {
        "n_units_matched": len(units),
        "n_uninterpretable": n_uninterpretable,
        "n_concepts": int(len(text.concepts)),
    }
