"""Rule entry point of verify_names: the verification table, its metrics, a figure."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, write_json, write_parquet
from .probe import Extension, ProbeSet, responses, unit_responder
from .stats import paired_stats

log = logging.getLogger(__name__)

COLUMNS = (
    "unit",
    "name",
    "concept",
    "verifiable",
    "n_pairs",
    "n_informative",
    "auroc",
    "effect",
    "p_value",
    "confirmed",
    "best_concept",
    "best_effect",
)


@dataclass(frozen=True)
class ExplanationSettings:
    """The ``verify`` keys evaluate_cbm's explanation probe reads (its rule's params)."""

    n_explanations: int = 100  # explained test images re-rendered without a cited concept
    seed: int = 0  # draws the random other concept removed from each explained image
    batch_size: int = 64


@dataclass(frozen=True)
class VerifyParams:
    """The ``verify`` config section plus the model-input keys the probes need."""

    n_pairs: int = 32
    min_informative_pairs: int = 16  # extend a concept's pairs until its named units have these
    max_pairs: int = 256  # ... or this many pairs are rendered (see probe.Extension)
    batch_size: int = 64
    significance: float = 0.05
    first_index: int = 1_000_000
    image_size: int = 64
    pooling: str = "mean"
    vit_tokens: str = "cls"
    device: str = "auto"

    @classmethod
    def from_config(
        cls, verify: dict, opaque: dict, activations: dict, runtime: dict | None = None
    ) -> VerifyParams:
        keys = {
            "image_size": opaque["image_size"],
            "pooling": activations["pooling"],
            "vit_tokens": activations["vit_tokens"],
        }
        # the verify section is shared with the explanation probe: its keys are not unknown
        probe_only = {f.name for f in fields(ExplanationSettings)} - {f.name for f in fields(cls)}
        verify = {k: v for k, v in verify.items() if k not in probe_only}
        return settings_from(cls, runtime, keys, verify, section="verify")


def read_names(path: PathLike) -> pd.DataFrame:
    """(unit, name) of every named unit: the top concept of a neuron_concepts table, or
    the name of each latent of an SAE concepts table."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # missing / corrupt / foreign file
        raise InputError(f"{path}: not a readable concepts table ({exc})") from None
    if {"latent", "name"} <= set(df.columns):
        out = df[["latent", "name"]].rename(columns={"latent": "unit"})
    elif {"unit", "rank", "concept"} <= set(df.columns):
        top = df.sort_values(["unit", "rank"], kind="stable").drop_duplicates("unit")
        out = top[["unit", "concept"]].rename(columns={"concept": "name"})
    else:
        raise InputError(
            f"{path}: expected columns (unit, rank, concept) or (latent, name), "
            f"got {list(df.columns)}"
        )
    return out.astype({"unit": np.int64, "name": str}).sort_values("unit").reset_index(drop=True)


def planted_concept_of(name: str, synonyms: dict[str, list[str]]) -> str | None:
    """The planted concept ``name`` names (a synonym occurs in it; the longest match wins
    when several do), or None: such a name cannot be verified by rendering."""
    from ..evaluate.text import matches, normalize_concept

    best, best_len = None, 0
    for concept, names in synonyms.items():
        for syn in (concept.replace("_", " "), *names):
            n = len(normalize_concept(syn))
            if n > best_len and matches(name, [syn]):
                best, best_len = concept, n
    return best


def read_synonyms(path: PathLike, concepts: list[str]) -> dict[str, list[str]]:
    from ..evaluate.groundtruth import read_json_file

    info = read_json_file(path)
    out = {}
    for concept in concepts:
        entry = info.get(concept, {})
        extra = entry.get("synonyms", []) if isinstance(entry, dict) else list(entry)
        out[concept] = list(dict.fromkeys([concept, *map(str, extra)]))
    return out


def verification_table(
    names: pd.DataFrame, synonyms: dict[str, list[str]], stats: dict[str, dict[str, np.ndarray]]
) -> pd.DataFrame:
    """One row per named unit: its name's planted concept (if any) and that concept's
    paired statistics; the best confirmed concept (largest effect) of every unit."""
    units = names["unit"].to_numpy()
    concepts = list(stats)
    rows = []
    effects = np.stack([stats[c]["effect"][units] for c in concepts]) if concepts else None
    confirmed = np.stack([stats[c]["confirmed"][units] for c in concepts]) if concepts else None
    for i, (unit, name) in enumerate(zip(units, names["name"], strict=True)):
        concept = planted_concept_of(name, synonyms)
        row: dict[str, Any] = {
            "unit": int(unit),
            "name": name,
            "concept": concept or "",
            "verifiable": concept is not None and concept in stats,
        }
        for key in ("n_pairs", "n_informative", "auroc", "effect", "p_value", "confirmed"):
            row[key] = stats[concept][key][unit] if row["verifiable"] else None
        best = ""
        if confirmed is not None and confirmed[:, i].any():
            best = concepts[int(np.argmax(np.where(confirmed[:, i], effects[:, i], -np.inf)))]
        row["best_concept"] = best
        row["best_effect"] = stats[best]["effect"][unit] if best else None
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(
        {
            "verifiable": bool,
            "n_pairs": "Int64",
            "n_informative": "Int64",
            "auroc": float,
            "effect": float,
            "p_value": float,
            "confirmed": "boolean",
            "best_effect": float,
        }
    )


def verification_metrics(table: pd.DataFrame, min_informative: int = 0) -> dict[str, Any]:
    """verified_fraction (confirmed / verifiable), n_verifiable, and
    best_concept_named_fraction: of the verifiable units that respond to some planted
    concept, how often the one they respond to most is the one they are named after.
    n_underpowered: verifiable units left with fewer than ``min_informative`` informative
    pairs after the extension (they still count as not confirmed)."""
    v = table.loc[table["verifiable"].astype(bool)]
    n = len(v)
    responding = v[v["best_concept"] != ""]
    return {
        "n_underpowered": int((v["n_informative"].fillna(0) < min_informative).sum()),
        "n_verifiable": int(n),
        "n_confirmed": int(v["confirmed"].fillna(False).sum()),
        "verified_fraction": float(v["confirmed"].fillna(False).mean()) if n else None,
        "best_concept_named_fraction": (
            float((responding["best_concept"] == responding["concept"]).mean())
            if len(responding)
            else None
        ),
        "n_named_units": int(len(table)),
    }


def verify_names(
    names_path: PathLike,
    model_pt: PathLike,
    manifest_path: PathLike,
    gt_synonyms: PathLike,
    table_out: PathLike,
    metrics_out: PathLike,
    figure_out: PathLike,
    *,
    kind: str,
    synth: dict | None,
    arch: str,
    layer: str,
    params: VerifyParams,
    sae_pt=None,
    dpi: int = 120,
) -> dict[str, Any]:
    """Rule entry point. ``synth``: the generator settings of a generated synthetic dataset,
    or None (then nothing can be rendered: an empty table, empty metrics, one log line)."""
    from ..data.manifest import read_manifest
    from ..data.synth.counterfactual import concept_names
    from ..runtime import pick_device
    from ..viz.verify import plot_verification

    names = read_names(names_path)
    if synth is None:
        log.info(
            "verify_names: dataset is not a generated synthetic one (%s): names cannot be "
            "verified by rendering; writing an empty table",
            kind,
        )
        table = verification_table(names.iloc[:0], {}, {})
        write_parquet(table, table_out)
        write_json({}, metrics_out)
        plot_verification(table, None, figure_out, dpi=dpi)
        return {"n_verifiable": 0}
    concepts = concept_names(kind)
    synonyms = read_synonyms(gt_synonyms, concepts)
    needed = sorted(set(concepts))  # every concept: the best-verified one of each unit
    named = names["name"].map(lambda n: planted_concept_of(n, synonyms))
    probes = ProbeSet(
        kind=kind,
        seed=int(synth["seed"]),
        size=int(synth["size"]),
        difficulty=float(synth["difficulty"]),
        noise=float(synth["noise"]),
        n_pairs=params.n_pairs,
        first_index=params.first_index,
    )
    n_classes = len(read_manifest(manifest_path).classes)
    stats = {}
    with unit_responder(
        model_pt,
        arch,
        n_classes,
        layer,
        image_size=params.image_size,
        pooling=params.pooling,
        vit_tokens=params.vit_tokens,
        sae_pt=sae_pt,
        device=str(pick_device(params.device)),
    ) as respond:
        for concept in needed:
            watch = names["unit"].to_numpy()[(named == concept).to_numpy()]
            extension = Extension(watch, params.min_informative_pairs, params.max_pairs)
            r1, r0 = responses(probes, concept, respond, params.batch_size, extension)
            stats[concept] = paired_stats(r1, r0, params.significance)
    n_units = len(next(iter(stats.values()))["effect"])
    bad = names["unit"][(names["unit"] < 0) | (names["unit"] >= n_units)]
    if len(bad):
        raise InputError(
            f"{names_path}: units {bad.tolist()[:5]} are not among the "
            f"{n_units} units of {layer}{' (SAE latents)' if sae_pt else ''}"
        )
    table = verification_table(names, synonyms, stats)
    metrics = verification_metrics(table, params.min_informative_pairs)
    write_parquet(table, table_out)
    write_json(metrics, metrics_out)
    plot_verification(table, probes, figure_out, dpi=dpi)
    log.info("verification: %s", metrics)
    return metrics
