"""The named-concepts table every namer writes and later stages read.

``concepts.parquet``: one row per named latent — latent, name, description,
method, score, support (exemplar documents / images backing the name),
p_value, stability, uninterpretable, and q_value (the p-value adjusted by
Benjamini–Hochberg across the named latents). ``skipped_latents.parquet``: latent,
reason — every latent that got no name, so none disappears silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import PathLike, read_table

CONCEPT_COLUMNS = (
    "latent",
    "name",
    "description",
    "method",
    "score",
    "support",
    "p_value",
    "stability",
    "uninterpretable",
)
SKIPPED_COLUMNS = ("latent", "reason")
# why a latent has no name (the `reason` column)
DEAD = "dead"  # never active on the probing images
NO_EXEMPLARS = "no_exemplars"  # active, but the exemplar rule selected none
NO_REPORTS = "no_reports"  # none of its exemplars has a report
NO_PHRASE = "no_phrase"  # no vocabulary phrase in enough of its exemplars' reports
SKIP_REASONS = (DEAD, NO_EXEMPLARS, NO_REPORTS, NO_PHRASE)


def uninterpretable(p_value: float, support: int, n_exemplars: int, params) -> bool:
    """A name is flagged when it is not significant (p > ``params.significance``) or
    describes too few of the latent's exemplars (support < ``min_support_fraction`` of
    them): a weakly enriched phrase of a diffuse latent names nothing it does."""
    weak = support < params.min_support_fraction * n_exemplars
    return bool(p_value > params.significance or weak)


_DTYPES = {
    "latent": "int64",
    "name": "str",
    "description": "str",
    "method": "str",
    "score": "float64",
    "support": "int64",
    "p_value": "float64",
    "stability": "float64",
    "uninterpretable": "bool",
}


def control_fdr(df: pd.DataFrame, fdr: float | None) -> pd.DataFrame:
    """Add ``q_value`` (Benjamini–Hochberg across the table's names: one test per latent) and,
    with an ``fdr`` level, flag the names with q > fdr uninterpretable as well."""
    from ..annotate.confidence import benjamini_hochberg

    out = df.copy()
    out["q_value"] = benjamini_hochberg(out["p_value"].to_numpy(np.float64))
    if fdr is not None:
        out["uninterpretable"] = out["uninterpretable"] | ~(out["q_value"] <= fdr)
    return out


def concepts_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Rows (dicts with every CONCEPT_COLUMNS key) → the table, sorted by latent."""
    df = pd.DataFrame(list(rows), columns=list(CONCEPT_COLUMNS))
    df = df.astype(_DTYPES)
    return df.sort_values("latent", kind="stable").reset_index(drop=True)


def skipped_frame(reasons: Mapping[int, str]) -> pd.DataFrame:
    """latent → reason, as the skipped-latents table sorted by latent."""
    unknown = sorted(set(reasons.values()) - set(SKIP_REASONS))
    if unknown:
        raise ValueError(f"unknown skip reasons {unknown}; expected {SKIP_REASONS}")
    items = sorted(reasons.items())
    return pd.DataFrame(
        {
            "latent": np.array([k for k, _ in items], dtype=np.int64),
            "reason": pd.Series([v for _, v in items], dtype="str"),
        }
    )


def read_concepts(path: PathLike, interpretable_only: bool = False) -> pd.DataFrame:
    """Read a concepts table (the API of evaluate_sae and train_cavs).

    ``interpretable_only`` drops the latents flagged uninterpretable (names
    not significant against random exemplar sets).
    """
    df = read_table(path, "not found (run the name_concepts rule first)")
    missing = [c for c in CONCEPT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not a named-concepts table (missing columns {missing})")
    if df["latent"].duplicated().any():
        dupes = sorted(df.loc[df["latent"].duplicated(), "latent"].tolist())[:10]
        raise InputError(f"{path}: latents named more than once: {dupes}")
    if interpretable_only:
        df = df[~df["uninterpretable"]].reset_index(drop=True)
    return df
