"""Rule ``atlas``: read the run's artifacts, write ``index.html`` and the ``site/`` folder."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.manifest import Manifest, read_manifest
from ..errors import InputError
from ..io import PathLike, atomic_path, read_table
from ..provenance import sidecar_path
from . import render
from .assets import CSS, JS
from .collect import SAE_GROUP, Group, GroupInputs, layer_group, read_metrics, sae_group
from .heatmaps import exemplar_maps, quantise
from .settings import AtlasParams
from .thumbs import write_thumbnails

log = logging.getLogger(__name__)
SNIPPET_CHARS = 320  # characters of a report shown around the name's phrase


@dataclass(frozen=True)
class AtlasInputs:
    manifest: Path
    groups: list[GroupInputs]
    boxes: Path | None = None
    explanations: Path | None = None
    cbm_model: Path | None = None
    metrics: dict[str, Path] = field(default_factory=dict)  # label → metrics.json
    artifacts: list[Path] = field(default_factory=list)  # every input (provenance links)


def _rel(target: PathLike, page_dir: PathLike) -> str:
    return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))).as_posix()


def _boxes(path: Path | None) -> dict[str, list[tuple[str, float, float, float, float]]]:
    if path is None or not Path(path).exists():
        return {}
    df = read_table(path, "boxes table")
    if df.empty:
        return {}
    need = ("image_id", "x", "y", "w", "h")
    if any(c not in df.columns for c in need):
        raise InputError(f"{path}: not a boxes table (needs columns {list(need)})")
    label = "finding" if "finding" in df.columns else "image_id"
    out: dict[str, list] = {}
    for r in df.itertuples(index=False):
        r = r._asdict()
        out.setdefault(str(r["image_id"]), []).append(
            (str(r[label]), float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"]))
        )
    return out


def _shown(group: Group, params: AtlasParams) -> pd.DataFrame:
    return group.exemplars[group.exemplars["rank"] < params.max_exemplars]


def _snippets(
    reports: dict[str, str], ids: list[str], phrase: str, n: int
) -> list[tuple[str, str]]:
    """Reports of the exemplars (rank order) that contain the name's phrase, trimmed."""
    if not phrase:
        return []
    out = []
    for image_id in ids:
        text = reports.get(image_id, "")
        pos = text.lower().find(phrase.lower())
        if pos < 0:
            continue
        start = max(0, pos - SNIPPET_CHARS // 2)
        cut = text[start : start + SNIPPET_CHARS]
        more = "…" if start + SNIPPET_CHARS < len(text) else ""
        out.append((image_id, ("…" if start else "") + cut + more))
        if len(out) >= n:
            break
    return out


def _by_unit(df: pd.DataFrame) -> dict[int, list[dict]]:
    """unit → its rows as plain dicts (rank order kept): pandas per unit is far too slow."""
    out: dict[int, list[dict]] = {}
    for rec in df.to_dict("records"):
        out.setdefault(int(rec["unit"]), []).append(rec)
    return out


def _true_classes(manifest: Manifest) -> pd.Series:
    """image_id → the true class name(s) (multi-label: positives joined by ', ')."""
    classes = manifest.classes
    df = manifest.df
    if manifest.multilabel:
        hot = df[manifest.label_columns].to_numpy() > 0
        names = [
            ", ".join(c for c, on in zip(classes, row, strict=True) if on) or "none" for row in hot
        ]
    else:
        names = [classes[int(i)] for i in df["label"]]
    return pd.Series(names, index=df["image_id"].astype(str))


@dataclass
class ClassData:
    names: list[str]
    weights: list[pd.DataFrame]  # per class: concept, latent, weight
    images: list[list[tuple[str, str, str, list]]]  # per class: (id, true, predicted, rows)
    counts: list[int]


def class_data(inputs: AtlasInputs, manifest: Manifest, params: AtlasParams) -> ClassData | None:
    if inputs.cbm_model is None or not Path(inputs.cbm_model).exists():
        return None
    from ..cbm.model import load_model

    model = load_model(inputs.cbm_model)
    concepts = model.concepts
    W = model.arrays.get("coefficients_W", model.arrays["W"])
    if W.shape[1] != len(concepts):
        raise InputError(
            f"{inputs.cbm_model}: weights {W.shape} do not match {len(concepts)} concepts"
        )
    latents = np.asarray(model.arrays.get("latents", np.full(len(concepts), -1)), np.int64)
    expl = (
        read_table(inputs.explanations, "explanations not found (run evaluate_cbm)")
        if inputs.explanations
        else pd.DataFrame()
    )
    truth = _true_classes(manifest)
    test = manifest.split("test")
    rng = np.random.default_rng(params.seed)
    out = ClassData(model.classes, [], [], [])
    for k in range(len(model.classes)):
        w = pd.DataFrame({"concept": concepts, "latent": latents, "weight": W[k]})
        out.weights.append(
            w.reindex(w["weight"].abs().sort_values(ascending=False, kind="stable").index)
        )
        if manifest.multilabel:
            members = test.df.loc[test.df[manifest.label_columns[k]] > 0, "image_id"]
        else:
            members = test.df.loc[test.df["label"] == k, "image_id"]
        members = sorted(set(members.astype(str)) & set(expl.get("image_id", pd.Series(dtype=str))))
        out.counts.append(len(members))
        pick = (
            sorted(
                rng.choice(
                    members, size=min(params.class_images, len(members)), replace=False
                ).tolist()
            )
            if members
            else []
        )
        shown = []
        for image_id in pick:
            rows = expl[expl["image_id"] == image_id].sort_values("rank", kind="stable")
            shown.append(
                (
                    image_id,
                    truth[image_id],
                    str(rows["class"].iloc[0]),
                    list(
                        zip(
                            rows["concept"],
                            rows["latent"].astype(int),
                            rows["contribution"].astype(float),
                            strict=True,
                        )
                    ),
                )
            )
        out.images.append(shown)
    return out


def build_atlas(
    inputs: AtlasInputs,
    index_out: PathLike,
    site_out: PathLike,
    params: AtlasParams,
    title: str,
) -> dict[str, int]:
    """Write the atlas; returns counts for the provenance record (units, pages, thumbs)."""
    index_out, site_out = Path(index_out), Path(site_out)
    manifest = read_manifest(inputs.manifest)
    groups = [sae_group(g) if g.name == SAE_GROUP else layer_group(g) for g in inputs.groups]
    index = pd.concat([g.index for g in groups], ignore_index=True)
    classes = class_data(inputs, manifest, params)
    boxes = _boxes(inputs.boxes)

    wanted = [i for g in groups for i in _shown(g, params)["image_id"]]
    if classes:
        wanted += [im[0] for shown in classes.images for im in shown]
    with atomic_path(site_out) as site:
        thumbs = write_thumbnails(
            manifest, wanted, site / "thumbs", params.thumb_px, params.thumb_quality
        )
        (site / "atlas.css").write_text(CSS)
        (site / "atlas.js").write_text(JS)
        n_pages = _write_unit_pages(site / "units", groups, index, manifest, thumbs, boxes, params)
        _write_class_pages(site, classes, thumbs)
        _write_metrics_page(site, site_out, inputs)
        with atomic_path(index_out) as tmp:
            tmp.write_text(render.index_page(index, params.significance, title))
    log.info("atlas: %d units / latents, %d pages, %d thumbnails", len(index), n_pages, len(thumbs))
    return {"n_units": len(index), "n_unit_pages": n_pages, "n_thumbnails": len(thumbs)}


def _write_unit_pages(out: Path, groups, index, manifest, thumbs, boxes, params) -> int:
    out.mkdir(parents=True, exist_ok=True)
    files = [render.unit_file(g, u) for g, u in zip(index["group"], index["unit"], strict=True)]
    reports = dict(
        zip(
            manifest.df["image_id"].astype(str),
            manifest.df["report"].fillna("").astype(str),
            strict=True,
        )
    )
    pos = 0
    for group in groups:
        shown = _shown(group, params)
        maps = exemplar_maps(group.store, shown) if group.store else {}
        by_unit = _by_unit(shown)
        concepts = _by_unit(group.concepts)
        descriptions = group.extra.get("descriptions", {})
        for row in group.index.to_dict("records"):
            unit = int(row["unit"])
            ex = by_unit.get(unit, [])
            ids = [str(e["image_id"]) for e in ex]
            unit_maps = [maps.get((unit, i)) for i in ids]
            heat = iter(quantise([m for m in unit_maps if m is not None]))
            exemplars = [
                render.Exemplar(
                    int(e["rank"]),
                    i,
                    float(e["activation"]),
                    thumbs[i][0],
                    thumbs[i][1:],
                    next(heat) if m is not None else None,
                    boxes.get(i, ()),
                )
                for e, i, m in zip(ex, ids, unit_maps, strict=True)
            ]
            snippets = []
            if group.is_sae and row["method"] in ("reports", "llm"):
                snippets = _snippets(reports, ids, row["name"], params.max_snippets)
            view = render.UnitView(
                group.name,
                unit,
                row,
                concepts.get(unit, [])[: params.top_concepts],
                exemplars,
                description=descriptions.get(unit, ""),
                snippets=snippets,
                prev_file=files[pos - 1] if pos > 0 else None,
                next_file=files[pos + 1] if pos + 1 < len(files) else None,
            )
            (out / files[pos]).write_text(render.unit_page(view))
            pos += 1
    return pos


def _write_class_pages(site: Path, classes: ClassData | None, thumbs) -> None:
    out = site / "classes"
    out.mkdir(parents=True, exist_ok=True)
    if classes is None:
        (site / "classes.html").write_text(
            render.page(
                "classes",
                "<h1>Classes</h1><p class='muted'>This run has no concept bottleneck model.</p>",
                "../",
            )
        )
        return
    files = [f"class-{k}.html" for k in range(len(classes.names))]
    for k, name in enumerate(classes.names):
        images = [
            render.ExplainedImage(i, thumbs[i][0], t, p, rows)
            for i, t, p, rows in classes.images[k]
        ]
        html = render.class_page(
            name,
            classes.weights[k],
            images,
            lambda lat: f"../units/{render.unit_file(SAE_GROUP, lat)}",
        )
        (out / files[k]).write_text(html)
    (site / "classes.html").write_text(render.classes_page(classes.names, files, classes.counts))


def _write_metrics_page(site: Path, site_final: Path, inputs: AtlasInputs) -> None:
    values = read_metrics(inputs.metrics)
    metrics = {}
    for label, data in values.items():
        path = inputs.metrics[label]
        side = sidecar_path(path)
        metrics[label] = (
            data,
            _rel(path, site_final),
            _rel(side, site_final) if side.exists() else None,
        )
    prov = []
    for a in sorted(set(map(Path, inputs.artifacts)), key=lambda p: p.as_posix()):
        side = sidecar_path(a)
        prov.append((a.as_posix(), _rel(side, site_final) if side.exists() else None))
    (site / "metrics.html").write_text(render.metrics_page(metrics, prov))
