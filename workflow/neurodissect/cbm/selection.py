"""Concept selection (rule ``select_concepts``): a small, diverse, class-relevant set
of CAVs to be the CBM's dictionary.

0. Label leaks removed (``exclude_class_names``): a concept named like a class — its
   name contains a class synonym or is contained in one ("melanoma", "vascular lesion",
   "lentigo" for "solar lentigo") — is the label itself, not evidence for it (reports
   state the diagnosis, so report namers find such names). As in Label-free CBM
   (Oikarinen et al. 2023), such concepts are dropped; they are listed in the log and
   counted in the table's metadata (n_class_names_excluded).
1. Duplicates merged: CAVs whose names are equal after normalisation (lowercase,
   punctuation, plural — :func:`neurodissect.evaluate.text.normalize_concept`) are
   one concept, represented by one of its latents (``merge_by``): ``name_score`` keeps
   the latent named most strongly (highest naming score: the one whose exemplars
   over-represent the name most), ``heldout_accuracy`` the best CAV held-out accuracy;
   the other criterion, then the lower latent, break ties. The naming score is the
   default because held-out accuracy saturates (dozens of CAVs at 1.0 on a few dozen
   held-out images), so the representative came down to the latent index and changed
   whenever a weak duplicate entered or left the candidates (e.g. with naming.fdr),
   moving the whole selection; the strongest-named latent is never such a weak one.
2. Similarity s_ij = |cos(d_i, d_j)| of the unit CAVs. The absolute value because
   OMP coefficients are signed: an atom represents its opposite direction as well.
3. Optional class relevance r_i = ‖W_head d_i‖₂ / max_j ‖W_head d_j‖₂: how much a
   unit step along the CAV moves the opaque model's logits (1 for all when off).
4. Facility location F(S) = Σ_i r_i · max_{j∈S} s_ij — every concept i is "covered"
   by its most similar selected concept, relevant concepts weigh more. F is monotone
   submodular, so the greedy order is the classic (1 − 1/e) approximation, and the
   lazy greedy (a heap of stale upper bounds on the marginal gains, re-evaluated only
   at the top) returns exactly the greedy order with far fewer gain evaluations.

Ties are broken by the lower index, identically in the lazy and the brute-force
greedy, so both give the same sequence.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..evaluate.text import names_a_class, normalize_concept

log = logging.getLogger(__name__)

SELECTED_COLUMNS = (
    "rank",
    "latent",
    "name",
    "gain",
    "heldout_accuracy",
    "relevance",
    "merged_latents",
)


def similarity(cavs: np.ndarray) -> np.ndarray:
    """|cos| between the rows of ``cavs`` (K, C) (rows normalised here, zero rows → 0)."""
    d = np.asarray(cavs, dtype=np.float64)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.divide(d, norms, out=np.zeros_like(d), where=norms > 0)
    return np.abs(d @ d.T)


def class_relevance(cavs: np.ndarray, head_w: np.ndarray) -> np.ndarray:
    """‖W d_i‖₂ of each CAV under the head ``head_w`` (n_classes, C), scaled to max 1."""
    r = np.linalg.norm(np.asarray(head_w, np.float64) @ np.asarray(cavs, np.float64).T, axis=0)
    top = r.max() if len(r) else 0.0
    return r / top if top > 0 else np.ones_like(r)


def marginal_gain(sim: np.ndarray, weights: np.ndarray, cover: np.ndarray, j: int) -> float:
    """F(S ∪ {j}) − F(S), where ``cover`` = max_{s∈S} sim[:, s] (zeros for S = ∅)."""
    return float(np.dot(weights, np.maximum(sim[:, j] - cover, 0.0)))


def greedy_brute_force(
    sim: np.ndarray, weights: np.ndarray, n: int
) -> tuple[list[int], list[float]]:
    """Reference greedy: every remaining candidate's gain evaluated at every step."""
    k = len(sim)
    cover = np.zeros(k)
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(min(n, k)):
        best, best_gain = -1, -np.inf
        for j in range(k):
            if j in chosen:
                continue
            g = marginal_gain(sim, weights, cover, j)
            if g > best_gain:  # strict: the lower index wins ties
                best, best_gain = j, g
        chosen.append(best)
        gains.append(best_gain)
        cover = np.maximum(cover, sim[:, best])
    return chosen, gains


def lazy_greedy(sim: np.ndarray, weights: np.ndarray, n: int) -> tuple[list[int], list[float], int]:
    """Lazy greedy facility location: (chosen indices, their gains, gain evaluations).

    Heap entries (−bound, j); a popped candidate is re-evaluated and taken if its
    fresh (−gain, j) still sorts before the next entry's stale bound — bounds only
    decrease (submodularity), so nothing below the top can beat it.
    """
    k = len(sim)
    sim = np.asarray(sim, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    cover = np.zeros(k)
    heap = [(-marginal_gain(sim, weights, cover, j), j) for j in range(k)]
    heapq.heapify(heap)
    evaluations = k
    chosen: list[int] = []
    gains: list[float] = []
    fresh_at = dict.fromkeys(range(k), 0)  # size of S when the bound was computed
    while heap and len(chosen) < min(n, k):
        neg_bound, j = heapq.heappop(heap)
        if fresh_at[j] == len(chosen):  # the bound is this step's exact gain
            chosen.append(j)
            gains.append(-neg_bound)
            cover = np.maximum(cover, sim[:, j])
            continue
        g = marginal_gain(sim, weights, cover, j)
        evaluations += 1
        fresh_at[j] = len(chosen)
        if not heap or (-g, j) <= heap[0]:
            chosen.append(j)
            gains.append(g)
            cover = np.maximum(cover, sim[:, j])
        else:
            heapq.heappush(heap, (-g, j))
    return chosen, gains, evaluations


MERGE_BY = ("name_score", "heldout_accuracy")


@dataclass(frozen=True)
class SelectParams:
    """Rule ``select_concepts``'s settings (config section ``cbm``)."""

    n_concepts: int = 50
    class_relevance: bool = True  # needs the opaque head (opaque_path + arch)
    exclude_class_names: bool = True  # needs the manifest's class synonyms
    merge_by: str = "name_score"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SelectParams:
        from ..config import settings_from

        return settings_from(cls, cfg, section="cbm", choices={"merge_by": MERGE_BY})


def merge_duplicates(table: pd.DataFrame, merge_by: str = "name_score") -> pd.DataFrame:
    """One row per normalised name (best ``merge_by``, then the other criterion, then the
    lower latent), with ``merged_latents`` listing the other latents of that name ("" when
    none). A table without a ``name_score`` column ranks by held-out accuracy alone."""
    if merge_by not in MERGE_BY:
        raise ValueError(f"merge_by must be one of {MERGE_BY}, not {merge_by!r}")
    t = table.copy()
    t["_key"] = [normalize_concept(n) for n in t["name"]]
    t["_acc"] = t["heldout_accuracy"].fillna(-np.inf)
    t["_score"] = t["name_score"].fillna(-np.inf) if "name_score" in t else 0.0
    first, second = ("_score", "_acc") if merge_by == "name_score" else ("_acc", "_score")
    t = t.sort_values(
        ["_key", first, second, "latent"], ascending=[True, False, False, True], kind="stable"
    )
    kept = []
    for _, group in t.groupby("_key", sort=False):
        row = group.iloc[0].copy()
        row["merged_latents"] = ",".join(str(int(x)) for x in group["latent"].iloc[1:])
        kept.append(row)
    helpers = ["_key", "_acc", "_score"]
    out = (
        pd.DataFrame(kept).drop(columns=helpers)
        if kept
        else t.drop(columns=helpers).assign(merged_latents=pd.Series(dtype=str))
    )
    return out.sort_values("latent", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Selection:
    table: pd.DataFrame  # SELECTED_COLUMNS, by rank
    n_concepts_requested: int
    n_concepts_used: int
    n_candidates: int  # distinct names with a CAV
    n_merged: int  # CAVs dropped as duplicates of a name
    gain_evaluations: int
    n_class_names_excluded: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "n_concepts_requested": self.n_concepts_requested,
            "n_concepts_used": self.n_concepts_used,
            "n_candidates": self.n_candidates,
            "n_merged": self.n_merged,
            "n_class_names_excluded": self.n_class_names_excluded,
            "gain_evaluations": self.gain_evaluations,
        }


def select(
    candidates: pd.DataFrame,
    cavs: np.ndarray,
    n_concepts: int,
    head_w: np.ndarray | None = None,
    class_synonyms: dict[str, list[str]] | None = None,
    merge_by: str = "name_score",
) -> Selection:
    """Pick ``n_concepts`` of the CAVs (rows of ``cavs``, one per row of ``candidates``
    with columns latent, name, heldout_accuracy, and optionally name_score).

    ``head_w`` (n_classes, C) turns on class relevance; ``class_synonyms`` (class → names)
    drops concepts named like a class. Asking for more concepts than
    there are distinct names is clamped to all of them, with a warning; the counts are
    in :meth:`Selection.summary`.
    """
    if len(candidates) != len(cavs):
        raise ValueError(f"{len(candidates)} candidates but {len(cavs)} CAVs")
    table = candidates.reset_index(drop=True).copy()
    table["_row"] = np.arange(len(table))
    n_leaks = 0
    if class_synonyms:
        leak = np.array([names_a_class(n, class_synonyms) for n in table["name"]], dtype=bool)
        n_leaks = int(leak.sum())
        if n_leaks:
            log.info(
                "dropped %d concepts named like a class: %s",
                n_leaks,
                sorted(set(table.loc[leak, "name"])),
            )
        table = table[~leak].reset_index(drop=True)
    merged = merge_duplicates(table, merge_by)
    rows = merged["_row"].to_numpy(dtype=np.int64)
    d = np.asarray(cavs, dtype=np.float64)[rows]
    n_used = min(int(n_concepts), len(merged))
    if n_used < n_concepts:
        log.warning(
            "cbm.n_concepts = %d but only %d distinct named concepts have a CAV: using %d",
            n_concepts,
            len(merged),
            n_used,
        )
    relevance = class_relevance(d, head_w) if head_w is not None else np.ones(len(merged))
    chosen, gains, evaluations = lazy_greedy(similarity(d), relevance, n_used)
    sel = merged.iloc[chosen].reset_index(drop=True)
    out = pd.DataFrame(
        {
            "rank": np.arange(len(chosen), dtype=np.int64),
            "latent": sel["latent"].astype(np.int64).to_numpy(),
            "name": sel["name"].astype(str).to_numpy(),
            "gain": np.asarray(gains, dtype=np.float64),
            "heldout_accuracy": sel["heldout_accuracy"].astype(np.float64).to_numpy(),
            "relevance": relevance[chosen] if len(chosen) else np.zeros(0),
            "merged_latents": sel["merged_latents"].astype(str).to_numpy(),
        }
    )
    return Selection(
        table=out,
        n_concepts_requested=int(n_concepts),
        n_concepts_used=n_used,
        n_candidates=len(merged),
        n_merged=len(table) - len(merged),
        gain_evaluations=evaluations,
        n_class_names_excluded=n_leaks,
    )


def _column(table: pd.DataFrame, column: str, latents) -> list[float]:
    """``table[column]`` (indexed by latent) for each of ``latents``; NaN where missing."""
    if column not in table.columns:
        return [np.nan] * len(latents)
    return [float(table.loc[int(j), column]) if int(j) in table.index else np.nan for j in latents]


def select_concepts(
    cavs_path,
    accuracy_path,
    out_path,
    params: SelectParams,
    *,
    opaque_path=None,
    arch: str | None = None,
    manifest_path=None,
) -> dict[str, int]:
    """Rule ``select_concepts``: ``selected.parquet`` (SELECTED_COLUMNS by rank; the
    counts of :meth:`Selection.summary` in its metadata).

    ``params``: class_relevance needs
    ``opaque_path`` + ``arch`` (skipped with a warning when the head does not read the
    CAVs' feature space); exclude_class_names needs ``manifest_path``.
    """
    from ..cav import read_cavs
    from ..errors import InputError
    from ..io import load_state_dict, write_parquet

    cavs = read_cavs(cavs_path)
    try:
        acc = pd.read_parquet(accuracy_path)
    except Exception as exc:  # pyarrow raises several types for a missing / foreign file
        raise InputError(f"{accuracy_path}: not a readable CAV accuracy table ({exc})") from None
    acc = acc.set_index("latent")
    candidates = pd.DataFrame(
        {
            "latent": cavs.latents,
            "name": cavs.names,
            "heldout_accuracy": _column(acc, "heldout_accuracy", cavs.latents),
            "name_score": _column(acc, "name_score", cavs.latents),
        }
    )
    head_w = None
    if params.class_relevance and opaque_path is not None and len(cavs.cavs):
        from ..opaque import head_weights

        try:
            state = load_state_dict(opaque_path)
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(f"{opaque_path}: cannot read the opaque model ({exc})") from None
        w, _ = head_weights(state, arch)
        if w.shape[1] == cavs.cavs.shape[1]:
            head_w = w
        else:
            log.warning(
                "class relevance off: the head of %s reads %d features, the CAVs live in %d "
                "(sae.layer is not the penultimate layer)",
                opaque_path,
                w.shape[1],
                cavs.cavs.shape[1],
            )
    if not len(cavs.cavs):
        raise InputError(f"{cavs_path}: no CAVs (no named latent had positives): nothing to select")
    class_synonyms = None
    if params.exclude_class_names and manifest_path is not None:
        from ..data.manifest import read_manifest

        class_synonyms = read_manifest(manifest_path).class_synonyms
    sel = select(candidates, cavs.cavs, params.n_concepts, head_w, class_synonyms, params.merge_by)
    if not len(sel.table):
        raise InputError(
            f"{cavs_path}: every CAV is named like a class: nothing to select "
            "(set cbm.exclude_class_names: false to keep them)"
        )
    summary = {**sel.summary(), "class_relevance": head_w is not None}
    write_parquet(sel.table, out_path, metadata=summary)
    log.info("selected %d concepts: %s", sel.n_concepts_used, sel.table["name"].tolist())
    return summary
