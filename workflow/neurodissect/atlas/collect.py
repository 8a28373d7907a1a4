"""Read a run's artifacts into the plain tables the atlas pages are rendered from.

One *group* is a dissected layer (``annotate/<layer>``) or the SAE's latents (``sae``);
every row of the index is one unit of one group. Columns that only some runs have
(truth on synthetic data, q-values, verification) are read when present, never required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import PathLike, read_json, read_table

INDEX_COLUMNS = (
    "group",
    "unit",
    "name",
    "score",
    "p_value",
    "q_value",
    "stability",
    "uninterpretable",
    "n_exemplars",
    "truth",
    "hit",
    "verified",
    "method",
    "note",
)
SAE_GROUP = "sae"


@dataclass(frozen=True)
class GroupInputs:
    """The artifacts of one group: exemplars and concepts are required, the rest optional."""

    name: str  # layer name, or "sae"
    exemplars: Path
    concepts: Path  # neuron_concepts.parquet (layers) or the named concepts (sae)
    store: Path | None = None  # activations (for spatial maps)
    units: Path | None = None  # evaluate_annotation's per-unit truth table
    groundtruth: Path | None = None  # evaluate_sae's per-concept table
    skipped: Path | None = None  # latents without a name
    verification: Path | None = None  # verify_names' table (issue 13), when present


@dataclass
class Group:
    name: str
    index: pd.DataFrame  # INDEX_COLUMNS, one row per unit
    exemplars: pd.DataFrame  # unit, rank, image_id, activation
    concepts: pd.DataFrame  # unit, rank, concept, score (+ p_value, stability)
    store: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_sae(self) -> bool:
        return self.name == SAE_GROUP


def _optional(path: PathLike | None, what: str) -> pd.DataFrame | None:
    if path is None or not Path(path).exists():
        return None
    return read_table(path, what)


def _require(df: pd.DataFrame, path: PathLike, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not {what} (missing columns {missing})")


def _exemplars(path: Path) -> pd.DataFrame:
    df = read_table(path, "exemplars not found (run select_exemplars first)")
    _require(df, path, ("unit", "rank", "image_id", "activation"), "an exemplars table")
    df = df.astype({"unit": np.int64, "rank": np.int64, "image_id": str})
    return df.sort_values(["unit", "rank"], kind="stable").reset_index(drop=True)


def _verified(path: Path | None, key: str) -> pd.Series | None:
    """unit → verified flag of verify_names' table, when it exists with such columns."""
    df = _optional(path, "verification table")
    if df is None:
        return None
    unit_col = next((c for c in (key, "unit", "latent") if c in df.columns), None)
    flag_col = next((c for c in ("verified", "confirmed", "passed") if c in df.columns), None)
    if unit_col is None or flag_col is None:
        return None
    return df.groupby(unit_col)[flag_col].first().astype(float)


def layer_group(inp: GroupInputs) -> Group:
    """A dissected layer: one row per unit with exemplars or concepts (top concept = name)."""
    ex = _exemplars(inp.exemplars)
    con = read_table(inp.concepts, "neuron concepts not found (run match_concepts first)")
    _require(con, inp.concepts, ("unit", "rank", "concept", "score"), "a neuron-concepts table")
    con = con.sort_values(["unit", "rank"], kind="stable").reset_index(drop=True)
    top = con.groupby("unit", sort=True).first()
    units = np.union1d(ex["unit"].unique(), con["unit"].unique()).astype(np.int64)
    idx = pd.DataFrame({"group": inp.name, "unit": units})
    idx["name"] = top["concept"].reindex(units).fillna("").to_numpy(str)
    for col in ("score", "p_value", "q_value", "stability"):
        idx[col] = top[col].reindex(units).to_numpy(float) if col in top else np.nan
    flag = top["uninterpretable"] if "uninterpretable" in top else pd.Series(dtype=bool)
    idx["uninterpretable"] = flag.reindex(units).fillna(True).to_numpy(bool)
    idx["n_exemplars"] = ex.groupby("unit").size().reindex(units).fillna(0).to_numpy(np.int64)
    idx["method"] = "clip"
    idx["truth"], idx["hit"], idx["note"] = "", np.nan, ""
    truth = _optional(inp.units, "per-unit evaluation table")
    if truth is not None and "unit" in truth.columns:
        t = truth.set_index("unit")
        if "truth" in t:
            idx["truth"] = t["truth"].reindex(units).fillna("").astype(str).to_numpy()
        if "hit" in t:
            idx["hit"] = t["hit"].reindex(units).astype(float).to_numpy()
        if "dead" in t:
            dead = t["dead"].reindex(units).fillna(False).to_numpy(bool)
            idx.loc[dead, "note"] = "dead"
    idx["verified"] = _reindexed(_verified(inp.verification, "unit"), units)
    return Group(inp.name, idx[list(INDEX_COLUMNS)], ex, con, store=inp.store)


def _reindexed(series: pd.Series | None, units: np.ndarray) -> np.ndarray:
    if series is None:
        return np.full(len(units), np.nan)
    return series.reindex(units).to_numpy(float)


def sae_group(inp: GroupInputs) -> Group:
    """The SAE's latents: named ones (concepts table) and skipped ones (with their reason)."""
    ex = _exemplars(inp.exemplars)
    named = read_table(inp.concepts, "named concepts not found (run name_concepts first)")
    _require(named, inp.concepts, ("latent", "name", "score"), "a named-concepts table")
    named = named.drop_duplicates("latent").set_index("latent")
    skipped = _optional(inp.skipped, "skipped-latents table")
    reasons = (
        skipped.set_index("latent")["reason"].astype(str)
        if skipped is not None and len(skipped)
        else pd.Series(dtype=str)
    )
    units = np.union1d(np.union1d(named.index, reasons.index), ex["unit"].unique())
    units = units.astype(np.int64)
    idx = pd.DataFrame({"group": SAE_GROUP, "unit": units})
    idx["name"] = named["name"].reindex(units).fillna("").astype(str).to_numpy()
    for col in ("score", "p_value", "q_value", "stability"):
        idx[col] = named[col].reindex(units).to_numpy(float) if col in named else np.nan
    flag = named["uninterpretable"] if "uninterpretable" in named else pd.Series(dtype=bool)
    idx["uninterpretable"] = flag.reindex(units).fillna(True).to_numpy(bool)
    idx["n_exemplars"] = ex.groupby("unit").size().reindex(units).fillna(0).to_numpy(np.int64)
    method = named["method"] if "method" in named else pd.Series(dtype=str)
    idx["method"] = method.reindex(units).fillna("").astype(str).to_numpy()
    idx["note"] = reasons.reindex(units).fillna("").to_numpy(str)
    idx["truth"], idx["hit"] = "", np.nan
    gt = _optional(inp.groundtruth, "SAE ground-truth table")
    if gt is not None and len(gt) and {"concept", "best_latent"} <= set(gt.columns):
        # the planted concept each latent is the best detector of (synthetic data)
        best = gt.dropna(subset=["best_latent"]).astype({"best_latent": np.int64})
        truth = best.groupby("best_latent")["concept"].agg(lambda s: ", ".join(map(str, s)))
        idx["truth"] = truth.reindex(units).fillna("").to_numpy(str)
        if "name_correct" in best:
            hit = best.groupby("best_latent")["name_correct"].max().astype(float)
            idx["hit"] = hit.reindex(units).to_numpy(float)
    idx["verified"] = _reindexed(_verified(inp.verification, "latent"), units)
    concepts = _sae_concepts(named, units)
    extra = {
        "descriptions": named["description"].astype(str).to_dict() if "description" in named else {}
    }
    return Group(SAE_GROUP, idx[list(INDEX_COLUMNS)], ex, concepts, store=inp.store, extra=extra)


def _sae_concepts(named: pd.DataFrame, units: np.ndarray) -> pd.DataFrame:
    """The latents' names as a one-concept-per-unit table (the layers' shape)."""
    df = named.reset_index().rename(columns={"latent": "unit", "name": "concept"})
    df["rank"] = 0
    keep = [c for c in ("unit", "rank", "concept", "score", "p_value", "stability") if c in df]
    return df[keep][df["unit"].isin(units)].reset_index(drop=True)


def read_metrics(paths: dict[str, PathLike]) -> dict[str, dict]:
    """label → the flat metrics object of each metrics file that exists."""
    out = {}
    for label, path in paths.items():
        if Path(path).exists():
            try:
                out[label] = read_json(path)
            except ValueError as exc:
                raise InputError(f"{path}: not a JSON metrics file ({exc})") from None
    return out
