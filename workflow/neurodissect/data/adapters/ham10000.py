"""HAM10000 (dermoscopy, 7 diagnoses), as published on the ISIC archive / Harvard
Dataverse / Kaggle (kmader/skin-cancer-mnist-ham10000)::

    HAM10000_metadata.csv        lesion_id,image_id,dx,dx_type,age,sex,localization[,dataset]
    HAM10000_images_part_1/      ISIC_0024306.jpg ...
    HAM10000_images_part_2/      ISIC_0029306.jpg ...

Several images show the same lesion, so the split is grouped by ``lesion_id``
(no lesion in two splits). The dataset has no reports: attach your own with
``options.report_csv`` (columns image_id,report), or name concepts with
``naming.method: clip``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import InputError
from . import RawDataset
from .common import (
    check_options,
    first_existing,
    index_files,
    line_of,
    read_table,
    records_frame,
    resolve,
)

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
CLASS_SYNONYMS = {
    "akiec": [
        "akiec",
        "actinic keratosis",
        "actinic keratoses",
        "intraepithelial carcinoma",
        "bowen's disease",
    ],
    "bcc": ["bcc", "basal cell carcinoma"],
    "bkl": [
        "bkl",
        "benign keratosis",
        "seborrheic keratosis",
        "solar lentigo",
        "lichen planus-like keratosis",
    ],
    "df": ["df", "dermatofibroma"],
    "mel": ["mel", "melanoma"],
    "nv": ["nv", "melanocytic nevus", "melanocytic nevi", "nevus"],
    "vasc": ["vasc", "vascular lesion", "angioma", "angiokeratoma", "pyogenic granuloma"],
}
METADATA_NAMES = ["HAM10000_metadata.csv", "HAM10000_metadata"]  # Kaggle, Dataverse
IMAGE_DIRS = [
    "HAM10000_images_part_1",
    "HAM10000_images_part_2",
    "ham10000_images_part_1",
    "ham10000_images_part_2",  # Kaggle's lower-case duplicates
]
HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
REPORT_HEADER = "image_id,report"
DEFAULTS = {"metadata": None, "image_dirs": IMAGE_DIRS, "report_csv": None}


def read_ham10000(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("ham10000", options, DEFAULTS)
    meta_path = (
        resolve(root, opts["metadata"])
        if opts["metadata"]
        else first_existing(root, METADATA_NAMES, "HAM10000 metadata")
    )
    meta = read_table(meta_path, ["lesion_id", "image_id", "dx"], HEADER)
    image_dirs = [d for d in opts["image_dirs"] if (root / d).is_dir()]
    if not image_dirs:
        raise InputError(
            f"{root}: no image folder found; expected {opts['image_dirs'][:2]} holding ISIC_*.jpg"
        )
    images = index_files(root, [f"{d}/*.jpg" for d in image_dirs])

    problems: list[str] = []
    rows = []
    for i, r in enumerate(meta.itertuples(index=False)):
        src = line_of(meta_path, i)
        image_id, dx, lesion = r.image_id.strip(), r.dx.strip(), r.lesion_id.strip()
        if not image_id:
            problems.append(f"{src}: empty image_id")
            continue
        if dx not in CLASSES:
            problems.append(f"{src}: unknown label dx={dx!r}; expected one of {CLASSES}")
        if not lesion:
            problems.append(f"{src}: empty lesion_id (needed to keep a lesion in one split)")
        name = f"{image_id}.jpg"
        rows.append(
            {
                "image_id": image_id,
                "path": images.get(name, f"{image_dirs[0]}/{name}"),
                "source": src,
                "label": dx,
                "split": None,
                "report": None,
                "group": lesion or image_id,
            }
        )
    records = records_frame(rows)
    if opts["report_csv"]:
        records = attach_reports(records, resolve(root, opts["report_csv"]), problems)
    return RawDataset(
        records=records,
        classes=list(CLASSES),
        task="multiclass",
        modality="dermoscopy",
        channels=3,
        class_synonyms={c: list(s) for c, s in CLASS_SYNONYMS.items()},
        problems=problems,
    )


def attach_reports(records: pd.DataFrame, path: Path, problems: list[str]) -> pd.DataFrame:
    """Fill ``report`` from a user CSV (image_id,report); ids not in the metadata are problems."""
    reports = read_table(path, ["image_id", "report"], REPORT_HEADER, what="report CSV")
    known = set(records["image_id"])
    text: dict[str, str] = {}
    for i, (image_id, report) in enumerate(
        zip(reports["image_id"], reports["report"], strict=True)
    ):
        image_id = image_id.strip()
        if image_id not in known:
            problems.append(f"{line_of(path, i)}: image_id {image_id!r} is not in the metadata")
        elif image_id in text:
            problems.append(f"{line_of(path, i)}: second report for image_id {image_id!r}")
        else:
            text[image_id] = report.strip() or None
    records = records.copy()
    reports = [text.get(i) for i in records["image_id"]]
    records["report"] = pd.Series(reports, index=records.index, dtype=object)
    return records


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """The files whose change must re-prepare the dataset (images are hashed separately)."""
    root, opts = Path(root), check_options("ham10000", options, DEFAULTS)
    names = [opts["metadata"]] if opts["metadata"] else METADATA_NAMES
    meta = next(
        (resolve(root, n) for n in names if resolve(root, n).exists()), resolve(root, names[0])
    )
    return [meta] + ([resolve(root, opts["report_csv"])] if opts["report_csv"] else [])
