"""The manifest: one row per image, the contract every stage reads.

Columns: image_id, path (relative to the dataset root), split
(train/val/test), report (may be empty), sha256 of the image bytes, and the
labels: ``label`` (int class index) for multi-class data, or one 0/1 column
``label:<class>`` per class for multi-label data.

Dataset-level facts live in the parquet schema metadata (key ``neurodissect``):
task, classes, class_synonyms, root, format, modality, channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import PathLike, read_parquet_metadata, write_parquet
from ..storage import to_local

SPLITS = ("train", "val", "test")
TASKS = ("multiclass", "multilabel")
LABEL_PREFIX = "label:"
BASE_COLUMNS = ("image_id", "path", "split", "report", "sha256")
META_KEYS = ("task", "classes", "class_synonyms", "root", "format", "modality", "channels")


@dataclass
class Manifest:
    df: pd.DataFrame
    meta: dict[str, Any]
    path: Path | None = field(default=None)

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def multilabel(self) -> bool:
        return self.meta["task"] == "multilabel"

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def class_synonyms(self) -> dict[str, list[str]]:
        """class → names a report or concept may use for it (the class name first)."""
        return {c: list(self.meta.get("class_synonyms", {}).get(c, [c])) for c in self.classes}

    @property
    def root(self) -> Path:
        """The image folder as this process sees it (the local copy of a stored run)."""
        return to_local(self.meta["root"])

    @property
    def channels(self) -> int:
        return int(self.meta.get("channels", 3))

    @property
    def label_columns(self) -> list[str]:
        if self.multilabel:
            return [LABEL_PREFIX + c for c in self.classes]
        return ["label"]

    def labels(self) -> np.ndarray:
        """(N,) int64 class indices, or (N, K) float32 multi-hot for multi-label data."""
        if self.multilabel:
            return self.df[self.label_columns].to_numpy(dtype=np.float32)
        return self.df["label"].to_numpy(dtype=np.int64)

    def split(self, name: str) -> Manifest:
        """Rows of one split (``all`` = every row), index reset."""
        if name == "all":
            return self
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS} or 'all'")
        return Manifest(
            self.df[self.df["split"] == name].reset_index(drop=True), self.meta, self.path
        )

    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.df["path"]]

    def __len__(self) -> int:
        return len(self.df)


def read_manifest(path: PathLike) -> Manifest:
    """Read and check a manifest; a malformed one is an InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: manifest not found (run the prepare_data rule first)")
    meta = read_parquet_metadata(path)
    df = pd.read_parquet(path)
    missing_meta = [k for k in META_KEYS if k not in meta]
    missing_cols = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing_meta or missing_cols:
        raise InputError(
            f"{path}: not a neurodissect manifest (missing columns {missing_cols}, "
            f"missing metadata {missing_meta})"
        )
    m = Manifest(df, meta, path)
    absent = [c for c in m.label_columns if c not in df.columns]
    if absent:
        raise InputError(f"{path}: label columns {absent} missing for task {m.task}")
    return m


def write_manifest(df: pd.DataFrame, meta: dict[str, Any], dest: PathLike) -> None:
    """Check the contract and write atomically."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"manifest metadata lacks {missing}")
    if meta["task"] not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    m = Manifest(df, meta)
    cols = [*BASE_COLUMNS, *m.label_columns]
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(f"manifest lacks columns {absent}")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise ValueError(f"unknown split values {bad_split}")
    extra = [c for c in df.columns if c not in cols]
    write_parquet(df[cols + extra].reset_index(drop=True), dest, metadata=meta)


def check_same_ids(ids_a, ids_b, name_a: PathLike, name_b: PathLike) -> None:
    """Two artifacts must describe the same images in the same order; else name both files."""
    a = np.asarray(ids_a).astype(object).astype(str)
    b = np.asarray(ids_b).astype(object).astype(str)
    if a.shape == b.shape and np.array_equal(a, b):
        return
    only_a = sorted(set(a) - set(b))[:5]
    only_b = sorted(set(b) - set(a))[:5]
    detail = (
        f"{len(a)} vs {len(b)} images; only in first: {only_a}; only in second: {only_b}"
        if (only_a or only_b)
        else "same ids in a different order"
    )
    raise InputError(f"image ids of {name_a} and {name_b} do not match ({detail})")
