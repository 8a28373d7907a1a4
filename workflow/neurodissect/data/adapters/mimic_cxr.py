"""MIMIC-CXR in the cleaned R2Gen release (github.com/cuhksz-nlp/R2Gen, used by
the concepts-from-neurons paper), plus a CheXpert-style label CSV::

    annotation.json   {"train": [{"id": "<dicom id>", "study_id": 50414267,
                                  "subject_id": 10000032, "report": "...",
                                  "image_path": ["p10/p10000032/s50414267/<dicom id>.jpg"],
                                  "split": "train"}, ...], "val": [...], "test": [...]}
    images/           p10/p10000032/s50414267/<dicom id>.jpg ...
    options.label_csv e.g. mimic-cxr-2.0.0-chexpert.csv (MIMIC-CXR-JPG):
                      subject_id,study_id,Atelectasis,...,Support Devices
                      with 1.0 positive, 0.0 negative, -1.0 uncertain, blank unmentioned

The R2Gen split is kept (it is by patient); reports feed the vocabulary and the
report namer; labels come from the label CSV, joined on the study.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import ConfigError, InputError
from . import RawDataset
from .common import (
    RECORD_COLUMNS,
    check_options,
    line_of,
    read_json,
    read_table,
    records_frame,
    resolve,
    to_float,
)

CHEXPERT_LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]  # fmt: skip   (the 14 CheXpert observations without "No Finding")
CLASS_SYNONYMS = {
    "Atelectasis": ["Atelectasis", "atelectasis"],
    "Cardiomegaly": [
        "Cardiomegaly",
        "cardiomegaly",
        "enlarged heart",
        "enlarged cardiac silhouette",
    ],
    "Consolidation": ["Consolidation", "consolidation"],
    "Edema": ["Edema", "edema", "pulmonary edema", "vascular congestion"],
    "Enlarged Cardiomediastinum": [
        "Enlarged Cardiomediastinum",
        "enlarged cardiomediastinum",
        "widened mediastinum",
    ],
    "Fracture": ["Fracture", "fracture", "rib fracture"],
    "Lung Lesion": ["Lung Lesion", "lung lesion", "nodule", "mass"],
    "Lung Opacity": ["Lung Opacity", "lung opacity", "opacity", "opacification"],
    "No Finding": ["No Finding", "no acute cardiopulmonary process", "normal"],
    "Pleural Effusion": ["Pleural Effusion", "pleural effusion", "effusion"],
    "Pleural Other": ["Pleural Other", "pleural thickening", "pleural abnormality"],
    "Pneumonia": ["Pneumonia", "pneumonia"],
    "Pneumothorax": ["Pneumothorax", "pneumothorax"],
    "Support Devices": [
        "Support Devices",
        "support devices",
        "tube",
        "catheter",
        "line",
        "pacemaker",
    ],
}
SPLITS = ("train", "val", "test")
ENTRY_KEYS = ("id", "study_id", "subject_id", "report", "image_path")
LABEL_HEADER = "subject_id,study_id,Atelectasis,Cardiomegaly,...,Support Devices"
DEFAULTS = {
    "annotation": "annotation.json",
    "image_dir": "images",
    "label_csv": None,
    "labels": CHEXPERT_LABELS,
    "uncertain": "negative",  # how -1.0 counts: negative (U-Zeros) or positive (U-Ones)
}


def read_mimic_cxr(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("mimic-cxr", options, DEFAULTS)
    if not opts["label_csv"]:
        raise ConfigError(
            "dataset format 'mimic-cxr': options.label_csv is required: the R2Gen annotation.json "
            "has reports but no labels; give a CheXpert-style CSV such as "
            f"mimic-cxr-2.0.0-chexpert.csv from MIMIC-CXR-JPG (header {LABEL_HEADER})"
        )
    if opts["uncertain"] not in ("negative", "positive"):
        raise ConfigError(
            f"dataset format 'mimic-cxr': options.uncertain must be negative or positive, "
            f"got {opts['uncertain']!r}"
        )
    classes = list(opts["labels"])
    problems: list[str] = []
    ann_path = resolve(root, opts["annotation"])
    records = read_annotation(ann_path, opts["image_dir"], problems)
    labels = read_labels(resolve(root, opts["label_csv"]), classes, opts["uncertain"], problems)
    joined = [
        join_labels(labels, subject, study, src, problems)
        for subject, study, src in zip(
            records.pop("subject"), records.pop("study"), records["source"], strict=True
        )
    ]
    records["label"] = pd.Series(joined, index=records.index, dtype=object)
    return RawDataset(
        records=records,
        classes=classes,
        task="multilabel",
        modality="chest_xray",
        channels=1,
        class_synonyms={c: list(CLASS_SYNONYMS.get(c, [c])) for c in classes},
        problems=problems,
    )


def read_annotation(path: Path, image_dir: str, problems: list[str]) -> pd.DataFrame:
    """One record per listed image; group = subject (patient)."""
    ann = read_json(path, "the R2Gen annotation.json ({train: [...], val: [...], test: [...]})")
    if not isinstance(ann, dict) or any(not isinstance(ann.get(s), list) for s in SPLITS):
        found = sorted(ann) if isinstance(ann, dict) else type(ann).__name__
        raise InputError(
            f"{path}: expected an object with lists 'train', 'val' and 'test' of "
            f"{{{', '.join(ENTRY_KEYS)}}} entries; found {found}"
        )
    rows = []
    for split in SPLITS:
        for i, entry in enumerate(ann[split]):
            src = f"{path.name}:{split}[{i}]"
            missing = [k for k in ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
            if missing:
                problems.append(f"{src}: missing key(s) {missing}; expected {list(ENTRY_KEYS)}")
                continue
            paths = entry["image_path"]
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths:
                problems.append(f"{src}: image_path must be a non-empty list of paths")
                continue
            report = str(entry["report"] or "").strip() or None
            for k, rel in enumerate(paths):
                rows.append(
                    {
                        "image_id": str(entry["id"]) if len(paths) == 1 else f"{entry['id']}_{k}",
                        "path": f"{image_dir}/{rel}" if image_dir else str(rel),
                        "source": src,
                        "split": split,
                        "report": report,
                        "group": str(entry["subject_id"]),
                        "subject": str(entry["subject_id"]),
                        "study": str(entry["study_id"]),
                    }
                )
    columns = [c for c in RECORD_COLUMNS if c != "label"]
    return records_frame(rows, [*columns, "subject", "study"])


def read_labels(
    path: Path, classes: list[str], uncertain: str, problems: list[str]
) -> dict[tuple[str, str], list[str]]:
    """(subject_id, study_id) → positive classes; -1 counts as ``uncertain`` says."""
    table = read_table(path, ["subject_id", "study_id", *classes], LABEL_HEADER, "label CSV")
    positive = {"1", "-1"} if uncertain == "positive" else {"1"}
    out: dict[tuple[str, str], list[str]] = {}
    for i, row in enumerate(table[["subject_id", "study_id", *classes]].itertuples(index=False)):
        key = (id_str(row[0]), id_str(row[1]))
        found = []
        for cls, raw in zip(classes, row[2:], strict=True):
            value = to_float(raw) if raw.strip() else 0.0
            if value not in (1.0, 0.0, -1.0):
                problems.append(f"{line_of(path, i)}: {cls}={raw!r}; expected 1, 0, -1 or blank")
            elif str(int(value)) in positive:
                found.append(cls)
        if key in out:
            problems.append(f"{line_of(path, i)}: second row for study {key[1]}")
        out[key] = found
    return out


def id_str(value) -> str:
    """'50414267', '50414267.0' and 50414267 name the same study."""
    f = to_float(str(value))
    return str(int(f)) if f is not None and f == int(f) else str(value).strip()


def join_labels(labels: dict, subject: str, study: str, src: str, problems: list[str]):
    key = (id_str(subject), id_str(study))
    if key not in labels:
        problems.append(f"{src}: study {study} of subject {subject} is not in the label CSV")
        return []
    return list(labels[key])


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """The files whose change must re-prepare the dataset (images are hashed separately)."""
    root, opts = Path(root), check_options("mimic-cxr", options, DEFAULTS)
    files = [resolve(root, opts["annotation"])]
    return files + ([resolve(root, opts["label_csv"])] if opts["label_csv"] else [])
