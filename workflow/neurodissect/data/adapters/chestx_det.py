"""ChestX-Det (3,578 NIH ChestX-14 images, 13 findings with boxes and polygons;
the localization probing set of the mask-free annotation paper), as published at
github.com/Deepwise-AILab/ChestX-Det-Dataset::

    train.json   [{"file_name": "36200.png", "syms": ["Effusion", ...],
    test.json      "boxes": [[x1, y1, x2, y2], ...], "polygons": [[[x, y], ...], ...]}, ...]
    train/*.png             images of train_data.zip (train_data/train/ accepted too)
    test/*.png              images of test_data.zip

The annotation files go by their released names ``train.json`` / ``test.json`` or
by MAMMI's ``ChestX_Det_train.json`` / ``ChestX_Det_test.json`` (options
``train_json`` / ``test_json``: names tried in order; the log says which was read).
``syms[i]`` is the finding of ``boxes[i]``; an entry without syms has no finding.
The official train/test split is kept (val is carved from train); boxes become
x, y, w, h in pixels of the 1024 x 1024 PNGs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ...errors import InputError
from . import RawDataset
from .common import RECORD_COLUMNS, check_options, index_files, read_json, records_frame, resolve

log = logging.getLogger(__name__)

CLASSES = [
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "Diffuse Nodule",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Fracture",
    "Mass",
    "Nodule",
    "Pleural Thickening",
    "Pneumothorax",
]
CLASS_SYNONYMS = {
    "Atelectasis": ["Atelectasis", "atelectasis"],
    "Calcification": ["Calcification", "calcification", "calcified granuloma"],
    "Cardiomegaly": [
        "Cardiomegaly",
        "cardiomegaly",
        "enlarged heart",
        "enlarged cardiac silhouette",
    ],
    "Consolidation": ["Consolidation", "consolidation"],
    "Diffuse Nodule": ["Diffuse Nodule", "diffuse nodules", "multiple nodules", "miliary nodules"],
    "Effusion": ["Effusion", "effusion", "pleural effusion"],
    "Emphysema": ["Emphysema", "emphysema"],
    "Fibrosis": ["Fibrosis", "fibrosis", "pulmonary fibrosis"],
    "Fracture": ["Fracture", "fracture", "rib fracture"],
    "Mass": ["Mass", "mass"],
    "Nodule": ["Nodule", "nodule"],
    "Pleural Thickening": ["Pleural Thickening", "pleural thickening"],
    "Pneumothorax": ["Pneumothorax", "pneumothorax"],
}
ENTRY_KEYS = ("file_name", "syms", "boxes")
ENTRY_LAYOUT = (
    '{"file_name": ..., "syms": [...], "boxes": [[x1, y1, x2, y2], ...], "polygons": [...]}'
)
DEFAULTS = {
    "train_json": ["train.json", "ChestX_Det_train.json"],
    "test_json": ["test.json", "ChestX_Det_test.json"],
    "train_image_dirs": ["train", "train_data/train", "train_data"],
    "test_image_dirs": ["test", "test_data/test", "test_data"],
}


def read_chestx_det(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("chestx-det", options, DEFAULTS)
    problems: list[str] = []
    rows: list[dict] = []
    boxes: list[dict] = []
    for part, split in (("train", "trainval"), ("test", "test")):
        path = annotation_file(root, opts[f"{part}_json"], part)
        log.info("ChestX-Det %s annotations: read %s", part, path)
        entries = read_json(path, f"ChestX-Det {part} annotations (a JSON list of {ENTRY_LAYOUT})")
        if not isinstance(entries, list):
            raise InputError(f"{path}: expected a JSON list of {ENTRY_LAYOUT}")
        dirs = opts[f"{part}_image_dirs"]
        images = index_files(root, [f"{d}/*.png" for d in dirs])
        for i, entry in enumerate(entries):
            parsed = parse_entry(entry, f"{path.name}[{i}]", problems)
            if parsed is None:
                continue
            name, labels, entry_boxes = parsed
            rows.append(
                {
                    "image_id": name,
                    "path": images.get(name, f"{dirs[0]}/{name}"),  # absent: prepare reports it
                    "source": f"{path.name}[{i}]",
                    "label": labels,
                    "split": split,
                    "report": None,
                }
            )
            boxes += [{"image_id": name, **b} for b in entry_boxes]
    records = records_frame(rows, RECORD_COLUMNS[:-1])  # no patient ids are published
    return RawDataset(
        records=records,
        classes=list(CLASSES),
        task="multilabel",
        modality="chest_xray",
        channels=1,
        class_synonyms={c: list(s) for c, s in CLASS_SYNONYMS.items()},
        boxes=pd.DataFrame(boxes, columns=["image_id", "finding", "x", "y", "w", "h"]),
        problems=problems,
    )


def _candidates(root: Path, value: str | list[str]) -> list[Path]:
    return [resolve(root, v) for v in ([value] if isinstance(value, str) else value)]


def annotation_file(root: Path, value: str | list[str], part: str) -> Path:
    """The first existing of the ``{part}_json`` option's names, else one clear error."""
    paths = _candidates(root, value)
    for path in paths:
        if path.is_file():
            return path
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths]
    raise InputError(
        f"{root}: ChestX-Det {part} annotations not found; expected one of {names} "
        f"(as released: {part}.json; MAMMI's copy: ChestX_Det_{part}.json)"
    )


def parse_entry(entry, src: str, problems: list[str]):
    """(file name, unique findings, boxes as x,y,w,h) of one entry, or None if unusable."""
    if not isinstance(entry, dict):
        problems.append(f"{src}: expected an object {ENTRY_LAYOUT}")
        return None
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        problems.append(f"{src}: missing key(s) {missing}; expected {ENTRY_LAYOUT}")
        return None
    name, syms, raw_boxes = entry["file_name"], entry["syms"], entry["boxes"]
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{src}: file_name must be a non-empty string")
        return None
    if not isinstance(syms, list) or not isinstance(raw_boxes, list):
        problems.append(f"{src}: syms and boxes must be lists")
        return None
    unknown = sorted({s for s in syms if s not in CLASSES}, key=str)
    if unknown:
        problems.append(f"{src}: unknown label(s) {unknown} in syms; expected {CLASSES}")
    if len(raw_boxes) != len(syms):
        problems.append(f"{src}: {len(syms)} syms but {len(raw_boxes)} boxes (one box per sym)")
    out = []
    pairs = zip(syms, raw_boxes, strict=True) if len(raw_boxes) == len(syms) else []
    for sym, box in pairs:
        if sym not in CLASSES:
            continue
        ok = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        )
        if not ok or box[2] <= box[0] or box[3] <= box[1]:
            problems.append(
                f"{src}: box {box!r} of {sym} is not [x1, y1, x2, y2] with x2>x1, y2>y1"
            )
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append({"finding": sym, "x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1})
    labels = [s for s in dict.fromkeys(syms) if s in CLASSES]
    return name.strip(), labels, out


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """The files whose change must re-prepare the dataset (images are hashed separately)."""
    root, opts = Path(root), check_options("chestx-det", options, DEFAULTS)
    out = []
    for part in ("train", "test"):
        paths = _candidates(root, opts[f"{part}_json"])
        out.append(next((p for p in paths if p.is_file()), paths[0]))  # absent: prepare says
    return out
