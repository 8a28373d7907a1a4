"""Opaque model vs concept bottleneck model on the same test split, explanations, and
the planted-cause check on synthetic data (rule ``evaluate_cbm``).

metrics.json (flat, numbers + ``split``):

- opaque_{m} — the opaque classifier's head on the test features; cbm_{m} — the CBM
  (the head of ``cbm.features``); cbm_coefficients_{m} / cbm_reconstruction_{m} — both
  heads; m in accuracy, balanced_accuracy, macro_f1 (+ mean_auroc for multi-label data),
  with :func:`neurodissect.evaluate.classification.classification_metrics` for all.
  cbm_agreement = share of test predictions equal to the opaque model's.
- n_concepts_requested, n_concepts_used (the selection's clamp), n_nonzero, cbm_C.
- explanation_faithfulness, explanation_rank_correlation, n_faithfulness_images and
  the diagnostics explanation_faithfulness_ceiling, explanation_both_causes_rate
  (generated synthetic data, else null): explanations verified by re-rendering test
  images without the cited concept (:mod:`neurodissect.verify.explanations`).
- explanation_planted_hit_rate (synthetic data, else null): over test images whose true
  class has planted causes (concepts_gt.json ``causes``) and that show at least one of
  them, the share whose top explanation concept **for the true class** (largest
  w_yc · s_c(x)) is named as one of the causes the image shows
  (:func:`neurodissect.evaluate.text.matches` against its synonyms). The true class,
  not the predicted one, so a misclassified image still asks "does the evidence the
  model has for the right class rest on the right concept"; n_hit_rate_images counts
  the images scored. For multi-label data every positive label with known causes is
  one (image, class) case. Diagnostics beside it: explanation_planted_hit_rate_top3 (a
  shown cause among the top three), explanation_spurious_rate (over test images of a class
  with a planted spurious concept, ``spurious_for``, the share whose top concept for that
  class names it — the model leaning on the artifact, which a CBM is meant to expose).

explanations.parquet: per test image, the ``top_k`` concepts by contribution
w_yc · s_c(x) to its predicted class (multi-label: its highest-scoring label) —
image_id, class, rank (1 = largest), concept, latent, score, contribution; plus
logit and bias of that class, so Σ contributions over all concepts + bias = logit.

Ranking (:func:`evidence_order`, also behind the hit and spurious rates): concepts the
image shows (score s_c(x) > 0: more of the concept's direction than the average train
image) first, by contribution, then the rest. Scores are signed, so an absent concept
with a negative weight also adds to the logit ("no blue-grey nests" for a nevus); named
bare, as an explanation would read, such evidence by absence says the opposite of what
it means, so it never outranks a concept the image shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, read_json, write_json, write_parquet
from .classification import classification_metrics
from .text import matches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CBMEvalParams:
    """The ``cbm`` config keys evaluate_cbm reads."""

    explain_top_k: int = 5  # concepts per test image in explanations.parquet

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CBMEvalParams:
        return settings_from(cls, cfg, section="cbm")


@dataclass
class CBMEvaluation:
    """What :func:`evaluate_cbm` wrote to metrics.json, and the test-split arrays its figures
    draw (scores, labels, probs, explained_class, image_ids, W, b)."""

    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]


EXPLANATION_COLUMNS = (
    "image_id",
    "class",
    "rank",
    "concept",
    "latent",
    "score",
    "contribution",
    "logit",
    "bias",
)


def contributions(scores: np.ndarray, W: np.ndarray, class_idx: np.ndarray) -> np.ndarray:
    """(N, K) w_{y_i c} · s_c(x_i) for each image's class ``class_idx[i]``."""
    return np.asarray(scores, np.float64) * np.asarray(W, np.float64)[class_idx]


def evidence_order(scores: np.ndarray, contrib: np.ndarray) -> np.ndarray:
    """Per row, concept indices: shown concepts (score > 0) by contribution, then the rest."""
    scores, contrib = np.atleast_2d(scores), np.atleast_2d(contrib)
    absent = ~(scores > 0)
    return np.lexsort((-contrib, absent), axis=1)


def explained_class(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """The class an image's explanation is about: the arg-max class / highest label."""
    return np.asarray(probs).argmax(axis=1)


def explanations(
    image_ids, scores, W, b, class_idx, concepts, latents, classes, top_k: int
) -> pd.DataFrame:
    """The top-``top_k`` contributions of each image to its class (EXPLANATION_COLUMNS)."""
    scores = np.asarray(scores, np.float64)
    contrib = contributions(scores, W, class_idx)
    k = min(int(top_k), scores.shape[1])
    order = evidence_order(scores, contrib)[:, :k]
    n = len(scores)
    rows = np.repeat(np.arange(n), k)
    cols = order.ravel()
    logits = contrib.sum(1) + np.asarray(b, np.float64)[class_idx]
    return pd.DataFrame(
        {
            "image_id": np.asarray(image_ids).astype(str)[rows],
            "class": np.asarray(classes, dtype=object)[np.asarray(class_idx)[rows]].astype(str),
            "rank": np.tile(np.arange(1, k + 1), n).astype(np.int64),
            "concept": np.asarray(concepts, dtype=object)[cols].astype(str),
            "latent": np.asarray(latents, dtype=np.int64)[cols],
            "score": scores[rows, cols],
            "contribution": contrib[rows, cols],
            "logit": logits[rows],
            "bias": np.asarray(b, np.float64)[class_idx][rows],
        }
    )


def planted_hit_rate(
    scores: np.ndarray,
    W: np.ndarray,
    cases: list[tuple[int, int]],
    present: np.ndarray,
    gt_concepts: list[str],
    synonyms: dict[str, list[str]],
    causes: dict[int, list[str]],
    concepts: list[str],
    top_k: int = 1,
) -> tuple[float | None, int]:
    """(hit rate, cases scored) over (image row, class) ``cases`` — see module doc;
    ``top_k`` > 1: a hit when any of the top-k concepts names a shown cause."""
    col = {c: j for j, c in enumerate(gt_concepts)}
    hits, scored = 0, 0
    for i, y in cases:
        shown = [c for c in causes.get(y, []) if c in col and present[i, col[c]]]
        if not shown:
            continue
        contrib = np.asarray(scores[i], np.float64) * np.asarray(W[y], np.float64)
        tops = evidence_order(scores[i], contrib)[0, :top_k]
        scored += 1
        hits += any(matches(concepts[t], synonyms[c]) for t in tops for c in shown)
    return (hits / scored if scored else None), scored


def spurious_top_rate(
    scores: np.ndarray,
    W: np.ndarray,
    cases: list[tuple[int, int]],
    spurious: dict[int, list[str]],
    synonyms: dict[str, list[str]],
    concepts: list[str],
) -> tuple[float | None, int]:
    """Over (image, class) cases of classes with a planted spurious concept
    (concepts_gt.json ``spurious_for``): the share whose top concept names one."""
    hits, scored = 0, 0
    for i, y in cases:
        if not spurious.get(y):
            continue
        contrib = np.asarray(scores[i], np.float64) * np.asarray(W[y], np.float64)
        top = int(evidence_order(scores[i], contrib)[0, 0])
        scored += 1
        hits += any(matches(concepts[top], synonyms[c]) for c in spurious[y])
    return (hits / scored if scored else None), scored


def _opaque_predictions(features_path, opaque_path, arch, split, n_rows, multilabel):
    """Opaque probabilities from its head on the features, or None when the features are
    not the head's input (then metrics come from opaque/metrics.json)."""
    from ..activations.store import ActivationStore
    from ..io import load_state_dict
    from ..opaque import head_weights, predict_from_penultimate

    try:
        state = load_state_dict(opaque_path)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{opaque_path}: cannot read the opaque model ({exc})") from None
    W, b = head_weights(state, arch)
    store = ActivationStore(features_path)
    if W.shape[1] != store.n_units:
        return None
    feats = np.concatenate(
        [blk for _, _, blk in store.iter_chunks(split)]
        or [np.zeros((0, store.n_units), np.float32)]
    )
    if len(feats) != n_rows:
        raise InputError(f"{features_path} ({split}) has {len(feats)} rows, expected {n_rows}")
    return predict_from_penultimate(W, b, feats, multilabel)


def evaluate_cbm(
    model_path: PathLike,
    scores_path: PathLike,
    features_path: PathLike,
    manifest_path: PathLike,
    opaque_path: PathLike,
    opaque_metrics_path: PathLike,
    arch: str,
    metrics_out: PathLike,
    explanations_out: PathLike,
    params: CBMEvalParams,
    *,
    gt_table: PathLike | None = None,
    gt_synonyms: PathLike | None = None,
    split: str = "test",
    probe=None,
) -> CBMEvaluation:
    """Rule ``evaluate_cbm`` (see module doc): metrics.json and explanations.parquet."""
    from ..activations.store import ActivationStore
    from ..cbm.model import HEADS, load_model
    from ..data.manifest import check_same_ids, read_manifest

    model = load_model(model_path)
    manifest = read_manifest(manifest_path)
    part = manifest.split(split)
    ids = part.df["image_id"].astype(str).to_numpy()
    store = ActivationStore(scores_path)
    check_same_ids(store.image_ids(split), ids, f"{scores_path} ({split})", manifest.path)
    if store.n_units != len(model.concepts):
        raise InputError(
            f"{scores_path} has {store.n_units} concepts but {model_path} {len(model.concepts)}"
        )
    check_same_ids(
        ActivationStore(features_path).image_ids(split),
        ids,
        f"{features_path} ({split})",
        manifest.path,
    )
    scores = store.read(split).astype(np.float64)
    labels = part.labels()
    multilabel = manifest.multilabel

    metrics: dict[str, Any] = {"split": split}
    opaque_probs = _opaque_predictions(
        features_path, opaque_path, arch, split, len(ids), multilabel
    )
    if opaque_probs is not None:
        opaque = classification_metrics(labels, opaque_probs, multilabel)
    else:
        log.warning(
            "the features are not the head's input: opaque metrics from %s", opaque_metrics_path
        )
        stored = read_json(opaque_metrics_path)
        opaque = {
            k.removeprefix(f"{split}_"): v for k, v in stored.items() if k.startswith(f"{split}_")
        }
    metrics.update({f"opaque_{k}": v for k, v in opaque.items()})

    probs = model.predict_proba(scores)
    metrics.update(
        {f"cbm_{k}": v for k, v in classification_metrics(labels, probs, multilabel).items()}
    )
    for head in HEADS:
        if f"{head}_W" in model.arrays:
            p = model.predict_proba(scores, head)
            metrics.update(
                {
                    f"cbm_{head}_{k}": v
                    for k, v in classification_metrics(labels, p, multilabel).items()
                }
            )
    if opaque_probs is not None:
        if multilabel:
            metrics["cbm_agreement"] = float(np.mean((probs >= 0.5) == (opaque_probs >= 0.5)))
        else:
            metrics["cbm_agreement"] = float(np.mean(probs.argmax(1) == opaque_probs.argmax(1)))
    metrics["accuracy_gap"] = metrics["cbm_accuracy"] - metrics.get("opaque_accuracy", np.nan)
    for key in ("n_concepts_requested", "n_concepts_used", "n_nonzero"):
        metrics[key] = int(model[key]) if key in model.arrays else None
    metrics["cbm_C"] = float(model["C"]) if "C" in model.arrays else None

    W, b = model.head()
    expl_class = explained_class(probs, multilabel)
    table = explanations(
        ids,
        scores,
        W,
        b,
        expl_class,
        model.concepts,
        model["latents"],
        model.classes,
        params.explain_top_k,
    )

    metrics["explanation_planted_hit_rate"] = None
    metrics["n_hit_rate_images"] = 0
    metrics["explanation_planted_hit_rate_top3"] = None
    metrics["explanation_spurious_rate"] = None
    if gt_table is not None:
        from .groundtruth import class_causes, read_json_file, read_planted_concepts

        truth = read_planted_concepts(gt_table, gt_synonyms)
        if truth.concepts and gt_synonyms is not None:
            info = read_json_file(gt_synonyms)
            by_name = class_causes(info, model.classes)
            causes = {i: by_name[c] for i, c in enumerate(model.classes) if by_name[c]}
            present = truth.aligned(ids, f"{scores_path} ({split})")
            if multilabel:
                cases = [(i, int(y)) for i, y in zip(*np.nonzero(labels > 0.5), strict=True)]
            else:
                cases = [(i, int(y)) for i, y in enumerate(labels)]
            args = (
                scores,
                W,
                cases,
                present,
                truth.concepts,
                truth.synonyms,
                causes,
                model.concepts,
            )
            rate, n = planted_hit_rate(*args)
            metrics["explanation_planted_hit_rate"] = rate
            metrics["n_hit_rate_images"] = n
            metrics["explanation_planted_hit_rate_top3"] = planted_hit_rate(*args, top_k=3)[0]
            by_spur = class_causes(info, model.classes, "spurious_for")
            spurious = {i: by_spur[c] for i, c in enumerate(model.classes) if by_spur[c]}
            metrics["explanation_spurious_rate"] = spurious_top_rate(
                scores, W, cases, spurious, truth.synonyms, model.concepts
            )[0]
    metrics.update(
        dict.fromkeys(
            (
                "explanation_faithfulness",
                "explanation_rank_correlation",
                "explanation_faithfulness_ceiling",
                "explanation_both_causes_rate",
            )
        )
    )
    if probe is not None:  # synthetic data: explanations checked by re-rendering (verify)
        from ..verify.explanations import explanation_faithfulness

        metrics.update(explanation_faithfulness(table, probe, model.concepts))
    write_json(metrics, metrics_out)
    write_parquet(table, explanations_out)
    log.info("CBM vs opaque on %s: %s", split, {k: v for k, v in metrics.items() if k != "split"})
    arrays = {
        "scores": scores,
        "labels": labels,
        "probs": probs,
        "explained_class": expl_class,
        "image_ids": ids,
        "W": W,
        "b": b,
    }
    return CBMEvaluation(metrics, arrays)
