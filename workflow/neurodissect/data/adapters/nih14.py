"""NIH ChestX-ray14 (14 findings, multi-label), as released by the NIH Clinical
Center (nihcc.app.box.com/v/ChestXray-NIHCC) and mirrored on Kaggle (nih-chest-xrays/data)::

    Data_Entry_2017.csv    Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,
                           Patient Gender,View Position,OriginalImage[Width,Height],
                           OriginalImagePixelSpacing[x,y]      (v2020 file accepted too)
    train_val_list.txt     official train+val images, one name per line
    test_list.txt          official test images
    BBox_List_2017.csv     Image Index,Finding Label,Bbox [x,y,w,h],,,   (984 boxes)
    images_001/images/*.png ... images_012/images/*.png   (Kaggle; or one images/ folder)

``Finding Labels`` is pipe-separated ("Cardiomegaly|Effusion"; "No Finding" =
none). The official test list is kept; val is carved from train_val by patient.
The box file's header spreads "Bbox [x,y,w,h]" over four columns and names
infiltration "Infiltrate"; boxes are in pixels of the 1024 x 1024 PNGs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import RawDataset
from .common import (
    check_options,
    first_existing,
    index_files,
    line_of,
    read_id_list,
    read_table,
    records_frame,
    resolve,
    to_float,
)

CLASSES = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
CLASS_SYNONYMS = {
    "Atelectasis": ["Atelectasis", "atelectasis"],
    "Cardiomegaly": [
        "Cardiomegaly",
        "cardiomegaly",
        "enlarged heart",
        "enlarged cardiac silhouette",
    ],
    "Effusion": ["Effusion", "effusion", "pleural effusion"],
    "Infiltration": ["Infiltration", "infiltration", "infiltrate"],
    "Mass": ["Mass", "mass"],
    "Nodule": ["Nodule", "nodule"],
    "Pneumonia": ["Pneumonia", "pneumonia"],
    "Pneumothorax": ["Pneumothorax", "pneumothorax"],
    "Consolidation": ["Consolidation", "consolidation"],
    "Edema": ["Edema", "edema", "pulmonary edema"],
    "Emphysema": ["Emphysema", "emphysema"],
    "Fibrosis": ["Fibrosis", "fibrosis", "pulmonary fibrosis"],
    "Pleural_Thickening": ["Pleural_Thickening", "pleural thickening"],
    "Hernia": ["Hernia", "hernia", "hiatal hernia"],
}
NO_FINDING = "No Finding"
BOX_FINDING_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv spelling
METADATA_NAMES = ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"]
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
BOX_COLUMNS = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"]
DEFAULTS = {
    "metadata": None,
    "train_val_list": "train_val_list.txt",
    "test_list": "test_list.txt",
    "bbox_list": "BBox_List_2017.csv",
    "image_globs": ["images_*/images/*.png", "images/*.png"],
    "official_split": True,
}


def read_nih14(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("nih14", options, DEFAULTS)
    meta_path = (
        resolve(root, opts["metadata"])
        if opts["metadata"]
        else first_existing(root, METADATA_NAMES, "ChestX-ray14 metadata")
    )
    meta = read_table(meta_path, ["Image Index", "Finding Labels", "Patient ID"], HEADER)
    images = index_files(root, opts["image_globs"])
    missing_dir = opts["image_globs"][0].rsplit("/", 1)[0]

    problems: list[str] = []
    rows = []
    for i, r in enumerate(meta[["Image Index", "Finding Labels", "Patient ID"]].itertuples()):
        src = line_of(meta_path, i)
        name, findings, patient = (str(v).strip() for v in r[1:])
        if not name:
            problems.append(f"{src}: empty Image Index")
            continue
        labels = parse_findings(findings, src, problems)
        rows.append(
            {
                "image_id": name,
                "path": images.get(name, f"{missing_dir}/{name}"),  # absent: prepare reports it
                "source": src,
                "label": labels,
                "split": None,
                "report": None,
                "group": patient or name,
            }
        )
    records = records_frame(rows)
    if opts["official_split"]:
        records = apply_official_split(records, root, opts, meta_path.name, problems)
    boxes = None
    if opts["bbox_list"]:
        boxes = read_boxes(resolve(root, opts["bbox_list"]), set(records["image_id"]), problems)
    return RawDataset(
        records=records,
        classes=list(CLASSES),
        task="multilabel",
        modality="chest_xray",
        channels=1,
        class_synonyms={c: list(s) for c, s in CLASS_SYNONYMS.items()},
        boxes=boxes,
        problems=problems,
    )


def parse_findings(value: str, src: str, problems: list[str]) -> list[str]:
    """ "A|B" → [A, B]; "No Finding" → []; an unknown finding is a problem."""
    tokens = [t.strip() for t in value.split("|") if t.strip()]
    if not tokens:
        problems.append(f"{src}: empty Finding Labels (expected findings or '{NO_FINDING}')")
        return []
    if tokens == [NO_FINDING]:
        return []
    unknown = [t for t in tokens if t not in CLASSES]
    if unknown:
        problems.append(
            f"{src}: unknown label(s) {unknown} in Finding Labels; expected '{NO_FINDING}' "
            f"or findings from {CLASSES}"
        )
    return [t for t in dict.fromkeys(tokens) if t in CLASSES]


def apply_official_split(
    records: pd.DataFrame, root: Path, opts: dict, meta_name: str, problems: list[str]
) -> pd.DataFrame:
    """test_list.txt → test; train_val_list.txt → train or val (chosen later, by patient).

    Split-list names absent from the metadata, and metadata images in neither list
    (or in both), are problems.
    """
    known = set(records["image_id"])
    listed: dict[str, str] = {}
    for key, split in (("train_val_list", "trainval"), ("test_list", "test")):
        path = resolve(root, opts[key])
        for lineno, name in read_id_list(path, f"official split list ({key})"):
            src = f"{path.name}:{lineno}"
            if name not in known:
                problems.append(f"{src}: {name} is not in {meta_name}")
            elif name in listed:
                problems.append(f"{src}: {name} is in both official split lists")
            else:
                listed[name] = split
    source = dict(zip(records["image_id"], records["source"], strict=True))
    for name in sorted(known - set(listed)):
        src = source[name]
        problems.append(
            f"{src}: {name} is in neither {opts['train_val_list']} nor {opts['test_list']}"
        )
    records = records.copy()
    splits = [listed.get(i) for i in records["image_id"]]
    records["split"] = pd.Series(splits, index=records.index, dtype=object)
    return records


def read_boxes(path: Path, known: set[str], problems: list[str]) -> pd.DataFrame:
    """BBox_List_2017.csv → image_id, finding, x, y, w, h (pixels)."""
    table = read_table(path, BOX_COLUMNS, BOX_HEADER, what="bounding-box list")
    rows = []
    for i, r in enumerate(table[BOX_COLUMNS].itertuples(index=False)):
        src = line_of(path, i)
        name, finding = r[0].strip(), r[1].strip()
        finding = BOX_FINDING_ALIASES.get(finding, finding)
        coords = [to_float(v) for v in r[2:6]]
        if name not in known:
            problems.append(f"{src}: box for {name}, which is not in the metadata")
        elif finding not in CLASSES:
            problems.append(f"{src}: unknown label {r[1]!r} in Finding Label; expected {CLASSES}")
        elif any(c is None for c in coords) or coords[2] <= 0 or coords[3] <= 0:
            problems.append(f"{src}: box {list(r[2:6])} is not four numbers x,y,w,h with w,h > 0")
        else:
            rows.append(
                {
                    "image_id": name,
                    "finding": finding,
                    "x": coords[0],
                    "y": coords[1],
                    "w": coords[2],
                    "h": coords[3],
                }
            )
    return pd.DataFrame(rows, columns=["image_id", "finding", "x", "y", "w", "h"])


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """The files whose change must re-prepare the dataset (images are hashed separately)."""
    root, opts = Path(root), check_options("nih14", options, DEFAULTS)
    names = [opts["metadata"]] if opts["metadata"] else METADATA_NAMES
    meta = next(
        (resolve(root, n) for n in names if resolve(root, n).exists()), resolve(root, names[0])
    )
    keys = ["bbox_list"] + (["train_val_list", "test_list"] if opts["official_split"] else [])
    return [meta] + [resolve(root, opts[k]) for k in keys if opts[k]]
