"""Adapters for the folders `neurodissect synth` writes (see neurodissect.data.synth):

synthderm (HAM10000-like)::

    synthderm_metadata.csv   lesion_id,image_id,dx,dx_type,age,sex,localization,image
    images/SD_0000000.png

synthcxr (NIH ChestX-ray14-like)::

    Data_Entry.csv   Image Index,Finding Labels,Follow-up #,Patient ID,...,Image Path
    BBox_List.csv    Image Index,Finding Label,Bbox [x,y,w,h],Concept
    images/00000001_000.png

and for both: reports.csv (image_id,report), ground_truth/concepts.csv (image_id +
one 0/1 column per planted concept), ground_truth/concepts.json (concept → synonyms,
kind, ...). Rows that cannot be parsed become ``problems`` naming ``file:line``;
labels, paths and images are checked by prepare_dataset.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import InputError
from ..synth.layout import GT_CONCEPTS_CSV, GT_CONCEPTS_JSON, REPORTS_CSV
from . import RawDataset
from .common import check_options, line_of, read_json, read_table, records_frame, to_float

RECORD_COLUMNS = ["image_id", "path", "source", "label", "split", "report", "group"]


def read_synthderm(root: Path, options: dict | None = None) -> RawDataset:
    from ..synth import derm

    root = Path(root)
    check_options("synthderm", options, {})
    path = root / derm.METADATA_CSV
    table = read_table(
        path, ["image_id", "lesion_id", "dx", "image"], ",".join(derm.METADATA_HEADER)
    )
    problems: list[str] = []
    reports = read_reports(root, problems)
    rows = [
        {
            "image_id": r.image_id.strip(),
            "path": r.image.strip(),
            "source": line_of(path, i),
            "label": r.dx.strip(),
            "split": None,
            "report": reports.get(r.image_id.strip()),
            "group": r.lesion_id.strip() or r.image_id.strip(),
        }
        for i, r in enumerate(table.itertuples(index=False))
    ]
    records = records_frame(rows, RECORD_COLUMNS)
    concepts_gt, concept_info = read_ground_truth(root, problems)
    return RawDataset(
        records=records,
        classes=list(derm.CLASSES),
        task="multiclass",
        modality="dermoscopy",
        channels=3,
        class_synonyms={c: list(s) for c, s in derm.CLASS_SYNONYMS.items()},
        concepts_gt=concepts_gt,
        concept_info=concept_info,
        problems=problems,
    )


def read_synthcxr(root: Path, options: dict | None = None) -> RawDataset:
    from ..synth import cxr

    root = Path(root)
    check_options("synthcxr", options, {})
    path = root / cxr.DATA_ENTRY_CSV
    table = read_table(
        path,
        ["Image Index", "Finding Labels", "Patient ID", "Image Path"],
        ",".join(cxr.DATA_ENTRY_HEADER),
    )
    problems: list[str] = []
    reports = read_reports(root, problems)
    rows = []
    for i, (name, findings, patient, rel) in enumerate(
        table[["Image Index", "Finding Labels", "Patient ID", "Image Path"]].itertuples(index=False)
    ):
        labels = [t.strip() for t in findings.split("|") if t.strip()]
        if cxr.NO_FINDING in labels:
            if len(labels) > 1:
                problems.append(f"{line_of(path, i)}: '{cxr.NO_FINDING}' together with {labels}")
            labels = []
        rows.append(
            {
                "image_id": name.strip(),
                "path": rel.strip(),
                "source": line_of(path, i),
                "label": labels,
                "split": None,
                "report": reports.get(name.strip()),
                "group": patient.strip() or name.strip(),
            }
        )
    concepts_gt, concept_info = read_ground_truth(root, problems)
    return RawDataset(
        records=records_frame(rows, RECORD_COLUMNS),
        classes=list(cxr.CLASSES),
        task="multilabel",
        modality="chest_xray",
        channels=1,
        class_synonyms={c: list(s) for c, s in cxr.CLASS_SYNONYMS.items()},
        boxes=read_boxes(root / cxr.BBOX_CSV, cxr.BBOX_HEADER, problems),
        concepts_gt=concepts_gt,
        concept_info=concept_info,
        problems=problems,
    )


def read_reports(root: Path, problems: list[str]) -> dict[str, str]:
    path = root / REPORTS_CSV
    table = read_table(path, ["image_id", "report"], "image_id,report", what="reports")
    out: dict[str, str] = {}
    for i, (image_id, text) in enumerate(table[["image_id", "report"]].itertuples(index=False)):
        if image_id.strip() in out:
            problems.append(f"{line_of(path, i)}: second report for {image_id.strip()!r}")
        out[image_id.strip()] = text.strip()
    return out


def read_ground_truth(root: Path, problems: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per-image 0/1 concept table and the concept descriptions; they must agree."""
    info_path = root / GT_CONCEPTS_JSON
    info = read_json(info_path, "concept descriptions: {concept: {synonyms: [...], kind: ...}}")
    if not isinstance(info, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("synonyms"), list) for v in info.values()
    ):
        raise InputError(f"{info_path}: expected {{concept: {{'synonyms': [...], ...}}}}")
    path = root / GT_CONCEPTS_CSV
    table = read_table(
        path, ["image_id", *info], "image_id," + ",".join(info), what="concept ground truth"
    )
    extra = [c for c in table.columns if c not in info and c != "image_id"]
    if extra:
        problems.append(f"{path.name}: columns {extra} are not described in {info_path.name}")
    for col in info:
        bad = table.index[~table[col].str.strip().isin(["0", "1"])]
        problems += [
            f"{line_of(path, i)}: {col}={table.at[i, col]!r}; expected 0 or 1" for i in bad
        ]
    gt = pd.DataFrame({"image_id": table["image_id"].str.strip()})
    for col in info:
        gt[col] = table[col].str.strip() == "1"
    return gt, info


def read_boxes(path: Path, header: list[str], problems: list[str]) -> pd.DataFrame:
    """BBox_List.csv → image_id, finding, x, y, w, h, concept."""
    table = read_table(
        path, header, ",".join(header[:2]) + ",Bbox [x,y,w,h],Concept", what="bounding-box list"
    )
    rows = []
    for i, r in enumerate(table[header].itertuples(index=False)):
        coords = [to_float(v) for v in r[2:6]]
        if any(c is None for c in coords) or coords[2] <= 0 or coords[3] <= 0:
            problems.append(f"{line_of(path, i)}: box {list(r[2:6])} is not x,y,w,h with w,h > 0")
            continue
        rows.append(
            {
                "image_id": r[0].strip(),
                "finding": r[1].strip(),
                "x": coords[0],
                "y": coords[1],
                "w": coords[2],
                "h": coords[3],
                "concept": r[6].strip(),
            }
        )
    return pd.DataFrame(rows, columns=["image_id", "finding", "x", "y", "w", "h", "concept"])
