"""Held-out evaluation of a trained SAE (rule ``evaluate_sae``) → metrics.json.

On ``eval_split`` (default test; the SAE never saw it):
- fvu, l0, dead_fraction of the SAE on the opaque model's features;
- opaque_<metric> = the opaque head on the original features and
  fidelity_<metric> = the same head on the SAE reconstruction (accuracy,
  balanced accuracy, macro-F1; + mean AUROC for multi-label data), and
  fidelity_agreement = share of predictions unchanged by the substitution;
- synthetic data only: planted_recovered_fraction = planted concepts for which
  some latent reaches AUROC ≥ recovery_auroc, named_correct_fraction = recovered
  concepts whose best latent's top name is a synonym of the concept. Both are
  null for data without planted concepts;
- synthetic data only: encoded_fraction = planted concepts a logistic probe on the
  *features* (trained on the train split) detects at held-out AUROC ≥ recovery_auroc
  (what any dictionary could hope to find), planted_recovered_of_encoded = recovered
  among those, mcc = mean |Pearson correlation| of a one-to-one (Hungarian) matching
  of latents to planted concepts, mean_best_latent_f1 = mean F1 of "the best latent
  fires" (> 0) against the concept's presence.
groundtruth.parquet lists the per-concept details (empty without truth).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..activations.store import ActivationStore
from ..config import settings_from
from ..data.manifest import Manifest, check_same_ids, read_manifest
from ..errors import InputError
from ..evaluate.classification import MULTILABEL_THRESHOLD, classification_metrics
from ..evaluate.groundtruth import (
    PlantedConcepts,
    concept_recovery,
    firing_f1,
    matched_correlation,
    probe_auroc,
    store_auroc,
    store_correlation,
)
from ..evaluate.text import matches
from ..io import PathLike, load_state_dict, write_json, write_parquet
from ..runtime import pick_device, progress
from .base import SparseAutoencoder, load_sae
from .metrics import SAEMetrics, reconstruct_blocks

log = logging.getLogger(__name__)

GROUNDTRUTH_COLUMNS = (
    "concept",
    "best_latent",
    "auroc",
    "recovered",
    "name",
    "name_correct",
    "name_correct_strict",
    "latent_detects",
    "f1",
    "mcc_latent",
    "mcc_correlation",
    "probe_auroc",
    "encoded",
)
GROUNDTRUTH_KEYS = (
    "planted_recovered_fraction",
    "named_correct_fraction",
    "named_correct_strict_fraction",
    "encoded_fraction",
    "planted_recovered_of_encoded",
    "mcc",
    "mean_best_latent_f1",
)
PROBE_SPLIT = "train"  # the probe learns where the SAE learned


@dataclass(frozen=True)
class SAEEvalParams:
    eval_split: str = "test"
    recovery_auroc: float = 0.9
    probe_c: float = 1.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SAEEvalParams:
        return settings_from(cls, cfg, section="sae")


def prediction_agreement(p_a: np.ndarray, p_b: np.ndarray, multilabel: bool) -> float:
    """Share of predictions (arg-max class, or each label at the threshold) that agree."""
    if multilabel:
        return float(np.mean((p_a >= MULTILABEL_THRESHOLD) == (p_b >= MULTILABEL_THRESHOLD)))
    return float(np.mean(p_a.argmax(1) == p_b.argmax(1)))


def reconstruction_metrics(
    model: SparseAutoencoder,
    blocks,
    head: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    multilabel: bool,
) -> dict[str, float]:
    """FVU / L0 / dead fraction, and the head's metrics on original vs reconstructed rows."""
    from ..opaque import predict_from_penultimate

    W, b = head
    acc = SAEMetrics(model.n_latents)
    probs_orig, probs_rec = [], []
    for x, x_hat, z in reconstruct_blocks(model, blocks):
        acc.update(x, x_hat, z)
        probs_orig.append(predict_from_penultimate(W, b, x, multilabel))
        probs_rec.append(predict_from_penultimate(W, b, x_hat, multilabel))
    p_orig, p_rec = np.concatenate(probs_orig), np.concatenate(probs_rec)
    out = acc.result()
    for name, probs in (("opaque", p_orig), ("fidelity", p_rec)):
        out.update(
            {f"{name}_{k}": v for k, v in classification_metrics(labels, probs, multilabel).items()}
        )
    out["fidelity_agreement"] = prediction_agreement(p_orig, p_rec, multilabel)
    return out


def planted_concept_metrics(
    latents_path: PathLike,
    split: str,
    truth: PlantedConcepts,
    names: pd.DataFrame | None,
    threshold: float,
) -> tuple[dict[str, float | None], pd.DataFrame]:
    """(planted_recovered_fraction, named_correct_fraction), and the per-concept table.

    A recovered concept's best latent is named correctly when its top name is a synonym
    of a planted concept that latent detects (AUROC ≥ ``threshold``): concepts that occur
    together in the data (a class's characteristic pair) are detected by the same latents
    and no namer can tell which of them a latent "is". ``name_correct_strict`` (and
    ``named_correct_strict_fraction``) asks for the concept itself.
    """
    store = ActivationStore(latents_path)
    present = truth.aligned(store.image_ids(split), f"{latents_path} ({split})")
    auroc = store_auroc(latents_path, split, present)
    table = concept_recovery(auroc, truth.concepts, threshold)
    table = table.rename(columns={"best_unit": "best_latent"})
    top_name = {} if names is None else dict(zip(names["latent"], names["name"], strict=True))
    table["name"] = [top_name.get(int(u), "") for u in table["best_latent"]]
    table["latent_detects"] = [
        [c for c, a in zip(truth.concepts, auroc[:, u], strict=True) if a >= threshold]
        if u >= 0
        else []
        for u in table["best_latent"]
    ]

    def named(name: str, concepts: list[str]) -> bool:
        return bool(name) and any(matches(name, truth.synonyms[c]) for c in concepts)

    rows = zip(
        table["concept"], table["recovered"], table["name"], table["latent_detects"], strict=True
    )
    correct = [
        (rec and named(name, [c]), rec and named(name, found)) for c, rec, name, found in rows
    ]
    table["name_correct_strict"] = [strict for strict, _ in correct]
    table["name_correct"] = [either for _, either in correct]
    evaluable = table[table["evaluable"]]
    recovered = table[table["recovered"]]
    if len(evaluable) < len(table):
        log.warning(
            "planted concepts without positives or negatives in %s are not scored: %s",
            split,
            table.loc[~table["evaluable"], "concept"].tolist(),
        )
    corr = store_correlation(latents_path, split, present)
    mcc, matched = matched_correlation(corr)
    table["mcc_latent"] = matched
    table["mcc_correlation"] = [corr[i, u] if u >= 0 else 0.0 for i, u in enumerate(matched)]
    table["f1"] = best_latent_f1(store, split, table["best_latent"].to_numpy(), present)
    metrics = {
        "mcc": mcc,
        "mean_best_latent_f1": _mean_or_none(table["f1"].dropna()),
        "planted_recovered_fraction": _mean_or_none(evaluable["recovered"]),
        "named_correct_fraction": _mean_or_none(recovered["name_correct"]),
        "named_correct_strict_fraction": _mean_or_none(recovered["name_correct_strict"]),
        "n_planted_concepts": int(len(evaluable)),
    }
    return metrics, table


def best_latent_f1(store: ActivationStore, split: str, best: np.ndarray, present: np.ndarray):
    """Per concept: F1 of its best latent firing (> 0) against presence (NaN: no latent)."""
    acts = store.acts_array(split)
    out = np.full(len(best), np.nan)
    for i, unit in enumerate(best):
        if unit >= 0:
            out[i] = firing_f1(np.asarray(acts[:, int(unit)]) > 0, present[:, i])[0]
    return out


def encoding_metrics(
    acts: ActivationStore, split: str, truth: PlantedConcepts, p: SAEEvalParams, recovered
) -> tuple[dict[str, float | None], np.ndarray]:
    """(encoded_fraction, planted_recovered_of_encoded) and each concept's probe AUROC."""
    if PROBE_SPLIT not in acts.splits or acts.n_rows(PROBE_SPLIT) == 0:
        raise InputError(f"{acts.path}: no {PROBE_SPLIT} rows to fit the concept probes on")
    where = f"{acts.path} ({{}})"
    auc = probe_auroc(
        acts.acts_array(PROBE_SPLIT)[:],
        truth.aligned(acts.image_ids(PROBE_SPLIT), where.format(PROBE_SPLIT)),
        acts.acts_array(split)[:],
        truth.aligned(acts.image_ids(split), where.format(split)),
        c=p.probe_c,
    )
    valid = ~np.isnan(auc)
    encoded = valid & (np.nan_to_num(auc) >= p.recovery_auroc)
    metrics = {
        "encoded_fraction": float(encoded[valid].mean()) if valid.any() else None,
        "planted_recovered_of_encoded": (
            float(np.asarray(recovered, bool)[encoded].mean()) if encoded.any() else None
        ),
    }
    return metrics, auc


def _mean_or_none(flags: pd.Series) -> float | None:
    return float(flags.mean()) if len(flags) else None


def _checked_split(store_path: PathLike, manifest: Manifest, split: str) -> ActivationStore:
    store = ActivationStore(store_path)
    ids = manifest.split(split).df["image_id"]
    check_same_ids(store.image_ids(split), ids, f"{store_path} ({split})", manifest.path)
    return store


def naming_counts(concepts_path: PathLike) -> dict[str, int | None]:
    """n_named latents; n_significant names passing the naming test (q <= naming.fdr, or
    p <= significance with FDR control off); n_interpretable not flagged (also support)."""
    from ..io import read_parquet_metadata
    from ..naming.table import read_concepts

    named = read_concepts(concepts_path)
    n_significant = read_parquet_metadata(concepts_path).get("n_significant")
    return {
        "n_named": int(len(named)),
        "n_significant": None if n_significant is None else int(n_significant),
        "n_interpretable": int((~named["uninterpretable"].astype(bool)).sum()),
    }


def evaluate_sae(
    model_path: PathLike,
    acts_path: PathLike,
    latents_path: PathLike,
    manifest_path: PathLike,
    opaque_path: PathLike,
    arch: str,
    metrics_out: PathLike,
    groundtruth_out: PathLike,
    params: SAEEvalParams,
    *,
    concepts_path: PathLike | None = None,
    gt_table: PathLike | None = None,
    gt_synonyms: PathLike | None = None,
    verification: PathLike | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Rule entry point: metrics.json and groundtruth.parquet; ``verification`` (verify_names'
    metrics, synthetic data) is merged into metrics.json."""
    from ..evaluate.groundtruth import read_json_file, read_planted_concepts
    from ..naming.table import read_concepts
    from ..opaque import head_weights

    split = params.eval_split
    manifest = read_manifest(manifest_path)
    model = load_sae(model_path, pick_device(device))
    acts = _checked_split(acts_path, manifest, split)
    latents = _checked_split(latents_path, manifest, split)
    if acts.n_units != model.d_in or latents.n_units != model.n_latents:
        raise InputError(
            f"{acts_path} ({acts.n_units} units) and {latents_path} ({latents.n_units} latents) "
            f"do not fit the SAE {model_path} ({model.d_in} -> {model.n_latents})"
        )
    try:
        state = load_state_dict(opaque_path)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{opaque_path}: cannot read the opaque model ({exc})") from None
    head = head_weights(state, arch)
    if head[0].shape[1] != model.d_in:
        raise InputError(
            f"the head of {opaque_path} reads {head[0].shape[1]} features but the SAE "
            f"{model_path} encodes {model.d_in}: sae.layer must be the head's input (penultimate)"
        )
    blocks = (b for _, _, b in progress(acts.iter_chunks(split), desc=f"evaluate SAE on {split}"))
    labels = manifest.split(split).labels()
    metrics: dict[str, Any] = {"split": split}
    metrics.update(reconstruction_metrics(model, blocks, head, labels, manifest.multilabel))

    gt_metrics = dict.fromkeys(GROUNDTRUTH_KEYS)
    table = pd.DataFrame({c: [] for c in GROUNDTRUTH_COLUMNS})
    truth = read_planted_concepts(gt_table, gt_synonyms) if gt_table is not None else None
    if truth is not None and truth.concepts:  # real datasets have an empty table
        names = read_concepts(concepts_path) if concepts_path is not None else None
        gt_metrics, table = planted_concept_metrics(
            latents_path, split, truth, names, params.recovery_auroc
        )
        enc_metrics, table["probe_auroc"] = encoding_metrics(
            acts, split, truth, params, table["recovered"]
        )
        table["encoded"] = np.nan_to_num(table["probe_auroc"]) >= params.recovery_auroc
        gt_metrics.update(enc_metrics)
        table = table[list(GROUNDTRUTH_COLUMNS)]
    metrics.update(gt_metrics)
    if concepts_path is not None:
        metrics.update(naming_counts(concepts_path))
    if verification is not None:
        metrics.update(read_json_file(verification))
    write_json(metrics, metrics_out)
    write_parquet(table, groundtruth_out)
    log.info("SAE on %s: %s", split, {k: v for k, v in metrics.items() if k != "split"})
    return metrics
