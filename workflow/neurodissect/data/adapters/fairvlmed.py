"""Harvard-FairVLMed (10,000 SLO fundus images with clinical notes, glaucoma yes/no,
six demographic attributes), as documented in the README of
github.com/Harvard-Ophthalmology-AI-Lab/FairCLIP::

    Training/data_00001.npz ...    7,000   (official split = folder)
    Validation/data_07001.npz ...  1,000
    Test/data_08001.npz ...        2,000   ("Testing/" accepted too)
    gpt-4_summarized_notes.csv     filename, ..., summary in the third column (optional;
                                   FairCLIP's scripts spell it gpt4_summarized_notes.csv)

Each .npz holds ``slo_fundus`` (the image array), ``note`` (the de-identified
clinical note), ``glaucoma`` (0/1), and ``age``, ``gender``, ``race``,
``ethnicity``, ``language``, ``maritalstatus`` (coded as in that README). The
image stays inside the .npz: the manifest path is the .npz file (its bytes are
hashed) and :func:`neurodissect.data.images.load_image` reads its image array.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, InputError
from . import RawDataset
from .common import check_options, line_of, read_table, records_frame, resolve

CLASSES = ["non-glaucoma", "glaucoma"]
CLASS_SYNONYMS = {
    "non-glaucoma": ["non-glaucoma", "no glaucoma", "normal optic nerve", "glaucoma suspect"],
    "glaucoma": [
        "glaucoma",
        "primary open angle glaucoma",
        "poag",
        "optic nerve cupping",
        "normal tension glaucoma",
    ],
}
# attribute codes, from the FairCLIP README
ATTRIBUTES = {
    "gender": {0: "female", 1: "male"},
    "race": {0: "asian", 1: "black", 2: "white"},
    "ethnicity": {0: "non-hispanic", 1: "hispanic", -1: "unknown"},
    "language": {0: "english", 1: "spanish", 2: "other", -1: "unknown"},
    "maritalstatus": {
        0: "married or partnered",
        1: "single",
        2: "divorced",
        3: "widowed",
        4: "legally separated",
        -1: "unknown",
    },
}
REQUIRED_KEYS = ("glaucoma", "note")
BASE_COLUMNS = ["image_id", "path", "source", "label", "split", "report"]
SUMMARY_HEADER = "filename,<original note>,<summary>"
DEFAULTS = {
    "split_dirs": {"train": ["Training"], "val": ["Validation"], "test": ["Test", "Testing"]},
    "image_key": "slo_fundus",
    "report": "note",  # note | summary | none
    "summary_csv": "gpt-4_summarized_notes.csv",
    "summary_column": None,  # None = the third column, as FairCLIP's loader reads it
}


def read_fairvlmed(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("fairvlmed", options, DEFAULTS)
    if opts["report"] not in ("note", "summary", "none"):
        raise ConfigError(
            f"dataset format 'fairvlmed': options.report must be note, summary or none, "
            f"got {opts['report']!r}"
        )
    files = list_npz(root, {**DEFAULTS["split_dirs"], **opts["split_dirs"]})
    problems: list[str] = []
    rows = [read_sample(root, rel, split, opts["image_key"], problems) for rel, split in files]
    rows = [r for r in rows if r is not None]
    attr_columns = sorted({k for r in rows for k in r if k.startswith("attr:")})
    records = records_frame(rows, [*BASE_COLUMNS, *attr_columns])
    if "attr:age" in records:
        records["attr:age"] = records["attr:age"].astype(float)
    if opts["report"] == "summary":
        summaries = read_summaries(summary_path(root, opts), opts, problems)
        names = records["path"].map(lambda p: Path(p).name)
        records["report"] = pd.Series(
            [summaries.get(n) for n in names], index=records.index, dtype=object
        )
        absent = records.loc[records["report"].isna(), "path"].tolist()
        problems += [f"{p}: no summary in {opts['summary_csv']}" for p in absent]
    elif opts["report"] == "none":
        records["report"] = pd.Series([None] * len(records), index=records.index, dtype=object)
    return RawDataset(
        records=records,
        classes=list(CLASSES),
        task="multiclass",
        modality="fundus",
        channels=3,
        class_synonyms={c: list(s) for c, s in CLASS_SYNONYMS.items()},
        problems=problems,
    )


def list_npz(root: Path, split_dirs: dict) -> list[tuple[str, str]]:
    """(path relative to root, split) of every .npz in the official split folders."""
    out = []
    for split in ("train", "val", "test"):
        dirs = [d for d in split_dirs.get(split, []) if (root / d).is_dir()]
        if not dirs:
            raise InputError(
                f"{root}: no {split} folder; expected one of {split_dirs.get(split)} "
                "holding data_*.npz"
            )
        out += [
            (p.relative_to(root).as_posix(), split) for p in sorted((root / dirs[0]).glob("*.npz"))
        ]
    return out


def read_sample(root: Path, rel: str, split: str, image_key: str, problems: list[str]):
    """One record from one .npz: label, note and attributes (the image is read later)."""
    try:
        with np.load(root / rel, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in (image_key, *REQUIRED_KEYS) if k not in keys]
            if missing:
                problems.append(
                    f"{rel}: missing key(s) {missing}; found {sorted(keys)}; expected "
                    f"{image_key}, {', '.join(REQUIRED_KEYS)} and the attributes"
                )
                return None
            glaucoma = npz["glaucoma"].item()
            note = str(npz["note"].item()).strip() or None
            attrs = {k: npz[k].item() for k in (*ATTRIBUTES, "age") if k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        problems.append(f"{rel}: unreadable .npz ({exc})")
        return None
    if glaucoma not in (0, 1):
        problems.append(f"{rel}: unknown label glaucoma={glaucoma!r}; expected 0 or 1")
        return None
    row = {
        "image_id": Path(rel).stem,
        "path": rel,
        "source": rel,
        "label": CLASSES[int(glaucoma)],
        "split": split,
        "report": note,
    }
    for name, codes in ATTRIBUTES.items():
        if name in attrs:
            row[f"attr:{name}"] = codes.get(int(attrs[name]), str(attrs[name]))
    if "age" in attrs:
        row["attr:age"] = float(attrs["age"])
    return row


def summary_path(root: Path, opts: dict) -> Path:
    """The summary CSV; by default either spelling FairCLIP uses (README vs its scripts)."""
    if opts["summary_csv"] != DEFAULTS["summary_csv"]:
        return resolve(root, opts["summary_csv"])
    names = [DEFAULTS["summary_csv"], "gpt4_summarized_notes.csv"]
    return next((root / n for n in names if (root / n).exists()), root / names[0])


def read_summaries(path: Path, opts: dict, problems: list[str]) -> dict[str, str]:
    """npz file name → summary text, from the summarized-notes CSV."""
    table = read_table(path, ["filename"], SUMMARY_HEADER, what="summarized notes CSV")
    column = opts["summary_column"]
    if column is None:
        if table.shape[1] < 3:
            raise InputError(
                f"{path}: {table.shape[1]} columns; expected the summary in the third column "
                f"({SUMMARY_HEADER}) or set options.summary_column"
            )
        column = table.columns[2]
    elif column not in table.columns:
        raise InputError(
            f"{path}: no column {column!r} (options.summary_column); found {list(table.columns)}"
        )
    out = {}
    for i, (name, text) in enumerate(zip(table["filename"], table[column], strict=True)):
        name = name.strip()
        if name in out:
            problems.append(f"{line_of(path, i)}: second summary for {name}")
        out[name] = text.strip() or None
    return out


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """What must re-prepare the dataset: the split folders (a file added or removed
    changes their mtime) and the summary CSV when reports come from it. Labels and
    notes live in the .npz files, which are hashed."""
    root, opts = Path(root), check_options("fairvlmed", options, DEFAULTS)
    split_dirs = {**DEFAULTS["split_dirs"], **opts["split_dirs"]}
    dirs = []
    for names in split_dirs.values():
        dirs.append(next((root / d for d in names if (root / d).is_dir()), root / names[0]))
    summary = [summary_path(root, opts)] if opts["report"] == "summary" else []
    return dirs + summary
