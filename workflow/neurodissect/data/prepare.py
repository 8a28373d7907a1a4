"""prepare_data: a raw dataset folder → the manifest and its companion tables.

:func:`prepare_dataset` is the same for every format: the format's adapter
(:func:`~neurodissect.data.adapters.get_adapter`) reads the layout into a
:class:`~neurodissect.data.adapters.RawDataset`, then the checks, splitting,
hashing and writing below are shared. What happens to each RawDataset field:

``records`` (one row per image)
  ``image_id``  must be a non-empty string, unique; duplicates are culprits
                (every source row named).
  ``path``      relative to ``root``; an absolute path, one whose ``..`` leaves the
                root, or one that reaches outside through a symlink is a culprit (a
                symlinked *root* is fine). The file must exist and decode — really
                decoded, with ``image_loader`` if given, else
                :func:`~neurodissect.data.images.load_image` (image files and
                ``.npz``) in ``channels`` mode. The sha256 is of the file's bytes
                exactly as stored (the ``.npz`` for FairVLMed). Width and height of
                the decoded image go into the manifest.
  ``source``    ``file:row`` used in every message about the record; not written.
  ``label``     multiclass: one class name; multilabel: a list of class names
                (``[]`` = no finding). A name outside ``classes`` (or a missing
                label) is a culprit. Written as ``label`` (class index) or one 0/1
                column ``label:<class>`` per class.
  ``split``     ``train``/``val``/``test`` are kept; ``None`` = assign train/val/test
                (``val_fraction``/``test_fraction`` of those records); ``trainval`` =
                an official train+val pool, assigned train/val (``val_fraction`` of
                the pool; e.g. NIH's train_val_list). Anything else is a culprit.
  ``report``    kept as text (``""`` when None).
  ``group``     optional (patient / lesion): assigned splits never separate a group.
                Kept as a manifest column.
  other columns (e.g. ``attr:age``, ``study``) are kept as manifest columns.

``classes``, ``task``, ``modality``, ``channels``, ``class_synonyms``
  go into the manifest metadata with ``root`` (as given: a relative root stays
  relative to the working directory, so a run folder can be moved) and
  ``format``; a class without synonyms gets ``[class]``.
``boxes``         image_id, finding, x, y, w, h → boxes.parquet (rows of images that
                  are not in the manifest are dropped with the skipped images; ids
                  unknown to ``records`` are culprits).
``concepts_gt``   image_id + one bool column per planted concept → concepts_gt.parquet,
                  rows in manifest order; an image without a row is a culprit.
``concept_info``  concept → {"synonyms": [...], "kind": ...} → concepts_gt.json.
``problems``      adapter parse problems ("file:row: what"): always culprits.
``image_loader``  ``(path, record) -> PIL image`` for images a plain file reader
                  cannot decode; used only for the decode check here (the stages
                  read images through ``load_image``).

Splits are deterministic (``split_seed``), stratified by label (multilabel: by the
record's rarest positive class, "none" for no finding) and grouped: groups are
shuffled within their stratum and cut by cumulative image count.

Outputs in ``out_dir`` — always the same five files, empty tables with the right
columns where a dataset has nothing (so the rule has a fixed output set):
manifest.parquet, boxes.parquet, concepts_gt.parquet, concepts_gt.json,
skipped.parquet (image_id, path, source, reason). The manifest is written last.

Any culprit → one :class:`~neurodissect.errors.InputError` listing all of them, and
none of the five files is left in ``out_dir``. With ``on_bad_image="skip"`` records
whose image is missing, unreadable or outside the root are dropped instead and
listed in skipped.parquet; every other culprit is still an error.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError, collect
from ..io import PathLike, remove_path, write_json, write_parquet
from ..provenance import sha256_file
from ..storage import to_local
from .adapters import RawDataset, get_adapter
from .images import load_image
from .manifest import LABEL_PREFIX, SPLITS, TASKS, write_manifest

log = logging.getLogger(__name__)

OUTPUT_FILES = {
    "manifest": "manifest.parquet",
    "boxes": "boxes.parquet",
    "concepts_gt": "concepts_gt.parquet",
    "concepts_json": "concepts_gt.json",
    "skipped": "skipped.parquet",
}
BOX_COLUMNS = ["image_id", "finding", "x", "y", "w", "h"]
SKIPPED_COLUMNS = ["image_id", "path", "source", "reason"]
ON_BAD_IMAGE = ("error", "skip")


@dataclass(frozen=True)
class PrepareParams:
    """The ``data`` config keys prepare_data reads (how images are split and checked)."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    on_bad_image: str = "error"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> PrepareParams:
        return settings_from(cls, cfg, section="data", choices={"on_bad_image": ON_BAD_IMAGE})


@dataclass(frozen=True)
class PreparedDataset:
    """What :func:`prepare_dataset` wrote (paths) and how many images it kept / skipped."""

    paths: dict[str, Path]
    n_images: int
    n_skipped: int
    split_counts: dict[str, int]


def prepare_dataset(
    fmt: str,
    root: PathLike,
    out_dir: PathLike,
    params: PrepareParams = PrepareParams(),
    options: dict[str, Any] | None = None,
    threads: int = 1,
) -> PreparedDataset:
    """Read, check, split, hash and write one dataset of format ``fmt`` (its adapter's
    ``options``) from ``root`` to ``out_dir`` (see the module docstring)."""
    on_bad_image = params.on_bad_image
    val_fraction, test_fraction = params.val_fraction, params.test_fraction
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction}: each must be in "
            "(0, 1) and their sum below 1"
        )
    out_dir = Path(out_dir)
    paths = {k: out_dir / name for k, name in OUTPUT_FILES.items()}
    for p in paths.values():  # a failed run must not leave an earlier run's outputs
        remove_path(p)
    root_given = Path(root)  # recorded in the manifest as given (a logical path)
    root_read = to_local(root)  # where this job reads it (a stored run's local copy)
    if not root_read.is_dir():
        raise InputError(f"{root_given}: dataset root is not a folder")
    raw = get_adapter(fmt)(root_read, dict(options or {}))
    check_dataset_fields(raw, fmt)

    records = raw.records.reset_index(drop=True).copy()
    if "source" not in records:
        records["source"] = [f"record {i}" for i in range(len(records))]
    culprits = list(raw.problems)
    culprits += record_culprits(records, raw)
    images = inspect_images(records, root_read, raw.channels, raw.image_loader, threads)
    bad = images["problem"].notna()
    skipped = pd.DataFrame(
        {
            "image_id": records.loc[bad, "image_id"].astype(str),
            "path": records.loc[bad, "path"].astype(str),
            "source": records.loc[bad, "source"].astype(str),
            "reason": images.loc[bad, "problem"],
        },
        columns=SKIPPED_COLUMNS,
    ).reset_index(drop=True)
    if on_bad_image == "error":
        culprits += [f"{s}: {r}" for s, r in zip(skipped["source"], skipped["reason"], strict=True)]
    culprits += table_culprits(raw, set(records["image_id"].astype(str)))
    if culprits:
        raise InputError(collect(culprits, f"{root_given}: cannot prepare the {fmt} dataset"))

    keep = ~bad.to_numpy()
    records, images = records[keep].reset_index(drop=True), images[keep].reset_index(drop=True)
    if records.empty:
        raise InputError(f"{root_given}: no usable image left ({len(skipped)} skipped)")
    records["split"] = assign_splits(
        records, raw.classes, raw.task, val_fraction, test_fraction, params.split_seed
    )
    empty = [s for s in SPLITS if not (records["split"] == s).any()]
    if empty:
        raise InputError(
            f"{root_given}: split(s) {empty} would be empty ({len(records)} images, "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}); add images or "
            "raise the fractions"
        )
    manifest = manifest_frame(records, images, raw)
    meta = {
        "task": raw.task,
        "classes": list(raw.classes),
        "class_synonyms": {  # the class name first, as Manifest.class_synonyms promises
            c: list(dict.fromkeys([c, *(raw.class_synonyms.get(c) or [])])) for c in raw.classes
        },
        "root": root_given.as_posix(),
        "format": fmt,
        "modality": raw.modality,
        "channels": int(raw.channels),
    }
    kept = manifest["image_id"]
    try:  # the manifest last: its presence means the set is complete
        write_parquet(boxes_frame(raw.boxes, kept), paths["boxes"])
        write_parquet(concepts_frame(raw.concepts_gt, kept), paths["concepts_gt"])
        write_json(raw.concept_info or {}, paths["concepts_json"])
        write_parquet(skipped, paths["skipped"])
        write_manifest(manifest, meta, paths["manifest"])
    except BaseException:
        for p in paths.values():
            remove_path(p)
        raise
    counts = {s: int((manifest["split"] == s).sum()) for s in SPLITS}
    log.info("prepared %d images (%s), skipped %d", len(manifest), counts, len(skipped))
    return PreparedDataset(paths, len(manifest), len(skipped), counts)


# -- checks ---------------------------------------------------------------------------
def check_dataset_fields(raw: RawDataset, fmt: str) -> None:
    """An adapter bug (not a user error) when the dataset-level fields are malformed."""
    missing = [c for c in ("image_id", "path", "label", "split") if c not in raw.records]
    if missing:
        raise ValueError(f"adapter {fmt!r} returned records without columns {missing}")
    if raw.task not in TASKS or int(raw.channels) not in (1, 3) or not raw.classes:
        raise ValueError(
            f"adapter {fmt!r}: task {raw.task!r} / channels {raw.channels!r} / "
            f"classes {raw.classes!r} not valid"
        )


def record_culprits(records: pd.DataFrame, raw: RawDataset) -> list[str]:
    """Duplicate ids, labels outside the class list, unknown split values."""
    out = []
    ids = records["image_id"]
    for src, image_id in zip(records["source"], ids, strict=True):
        if not isinstance(image_id, str) or not image_id.strip():
            out.append(f"{src}: empty or non-text image id {image_id!r}")
    dup = ids[ids.duplicated(keep=False)]
    for image_id in sorted(set(dup.astype(str))):
        where = ", ".join(records.loc[ids == image_id, "source"].astype(str))
        out.append(f"{where}: duplicate image id {image_id!r}")
    classes = set(raw.classes)
    for src, label in zip(records["source"], records["label"], strict=True):
        problem = label_problem(label, classes, raw.task == "multilabel")
        if problem:
            expected = "class names from" if raw.task == "multilabel" else "one of"
            out.append(f"{src}: {problem}; expected {expected} {list(raw.classes)}")
    allowed = set(SPLITS) | {"trainval"}
    for src, split in zip(records["source"], records["split"], strict=True):
        if not is_missing(split) and split not in allowed:
            out.append(f"{src}: unknown split {split!r}; expected train, val, test or blank")
    return out


def label_problem(label: Any, classes: set[str], multilabel: bool) -> str | None:
    if multilabel:
        if not isinstance(label, (list, tuple, np.ndarray)):
            return f"label {label!r} is not a list of class names"
        unknown = [x for x in label if x not in classes]
        return f"unknown label(s) {unknown}" if unknown else None
    if is_missing(label) or label == "":
        return "missing label"
    if not isinstance(label, str):
        return f"label {label!r} is not a class name"
    return None if label in classes else f"unknown label {label!r}"


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def table_culprits(raw: RawDataset, known_ids: set[str]) -> list[str]:
    """Boxes and ground-truth rows must refer to images the records list."""
    out = []
    if raw.boxes is not None and len(raw.boxes):
        absent = [c for c in BOX_COLUMNS if c not in raw.boxes]
        if absent:
            out.append(f"boxes: missing columns {absent}; expected {BOX_COLUMNS}")
        else:
            unknown = sorted(set(raw.boxes["image_id"].astype(str)) - known_ids)
            out += [f"boxes: box for unknown image id {i!r}" for i in unknown]
    if raw.concepts_gt is not None:
        have = set(raw.concepts_gt["image_id"].astype(str))
        out += [f"concept ground truth: no row for image {i!r}" for i in sorted(known_ids - have)]
    return out


# -- images -----------------------------------------------------------------------------
def inspect_images(
    records: pd.DataFrame,
    root: Path,
    channels: int,
    loader: Callable[[Path, pd.Series], Any] | None,
    threads: int = 1,
) -> pd.DataFrame:
    """Per record: sha256, width, height, or the problem that makes the image unusable."""
    from ..runtime import progress

    root_real = root.resolve()
    rels = records["path"].tolist()  # one column read, not a pandas row per image
    real_dirs: dict[str, Path] = {}  # a folder's resolved path, shared by its images

    def one(i: int) -> tuple[str | None, int, int, str | None]:
        rel = rels[i]
        path, problem = resolve_inside(root, root_real, rel, real_dirs)
        if problem:
            return None, 0, 0, problem
        if not path.is_file():
            return None, 0, 0, f"image {rel!r} not found under {root}"
        try:
            sha = sha256_file(path)
            img = loader(path, records.iloc[i]) if loader else load_image(path, channels)
            width, height = img.size
        except Exception as exc:  # any decoder failure is a corrupt image
            reason = str(exc).splitlines()[0] if str(exc) else ""
            return None, 0, 0, f"image {rel!r} unreadable ({type(exc).__name__}: {reason})"
        return sha, width, height, None

    def batch(start: int) -> list[tuple[str | None, int, int, str | None]]:
        return [one(i) for i in range(start, min(start + _IMAGES_PER_TASK, len(rels)))]

    # tasks of many images: a future per image cost the main thread as much as a decode
    results: list[tuple[str | None, int, int, str | None]] = []
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        starts = range(0, len(rels), _IMAGES_PER_TASK)
        bar = progress(total=len(rels), desc="images")
        for part in pool.map(batch, starts):
            results += part
            bar.update(len(part))
        bar.close()
    return pd.DataFrame(results, columns=["sha256", "width", "height", "problem"])


_IMAGES_PER_TASK = 32


def resolve_inside(
    root: Path, root_real: Path, rel: Any, real_dirs: dict[str, Path] | None = None
) -> tuple[Path, str | None]:
    """``root / rel`` if it stays inside the root (after following symlinks).

    ``real_dirs`` caches resolved folders: an image that is a plain file (not a link)
    resolves to its folder's resolved path / its name, one ``lstat`` instead of one per
    path component."""
    if is_missing(rel) or not str(rel).strip():
        return root, "empty image path"
    rel = str(rel)
    if Path(rel).is_absolute() or os.path.isabs(rel):
        return root, f"image path {rel!r} is absolute; expected a path relative to the root"
    if os.path.normpath(rel).split(os.sep)[0] == "..":
        return root, f"image path {rel!r} leaves the dataset root through '..'"
    path = root / rel
    try:
        real = _resolved_file(path, real_dirs) if real_dirs is not None else None
        real = real or path.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        return root, f"image path {rel!r} cannot be resolved ({exc})"
    if not real.is_relative_to(root_real):
        return root, f"image path {rel!r} is a symlink to {real}, outside the dataset root"
    return path, None


def _resolved_file(path: Path, real_dirs: dict[str, Path]) -> Path | None:
    """``path.resolve()`` for a regular file through a cached resolve of its folder; None
    (resolve the whole path) for a link, a missing file or a '.'/'..' last component."""
    if path.name in ("", ".", ".."):
        return None
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    folder = str(path.parent)
    real = real_dirs.get(folder)
    if real is None:
        real = real_dirs[folder] = path.parent.resolve()
    return real / path.name


# -- splits ------------------------------------------------------------------------------
def assign_splits(
    records: pd.DataFrame,
    classes: list[str],
    task: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> pd.Series:
    """Official splits kept; blank → train/val/test; ``trainval`` → train/val."""
    split = records["split"].map(lambda s: None if is_missing(s) else s).astype(object)
    strata = stratum_keys(records["label"], classes, task == "multilabel")
    groups = (
        records["group"].map(lambda g: None if is_missing(g) else str(g))
        if "group" in records
        else pd.Series([None] * len(records), index=records.index, dtype=object)
    )
    # an ungrouped record is its own group
    groups = groups.where(groups.notna(), "\0" + records["image_id"].astype(str))
    rng = np.random.default_rng(seed)
    out = split.copy()
    for pool, fractions in (
        (None, {"test": test_fraction, "val": val_fraction}),
        ("trainval", {"val": val_fraction}),
    ):
        mask = split.isna() if pool is None else split == pool
        if mask.any():
            out[mask] = grouped_stratified(groups[mask], strata[mask], fractions, rng)
    return out


def stratum_keys(labels: pd.Series, classes: list[str], multilabel: bool) -> pd.Series:
    """Multiclass: the label; multilabel: the rarest positive class (or 'none')."""
    if not multilabel:
        return labels.astype(str)
    freq = {c: 0 for c in classes}
    for lab in labels:
        for c in lab:
            freq[c] += 1
    return labels.map(lambda lab: min(lab, key=lambda c: (freq[c], c)) if len(lab) else "none")


def grouped_stratified(
    groups: pd.Series, strata: pd.Series, fractions: dict[str, float], rng: np.random.Generator
) -> np.ndarray:
    """Split names per record: within each stratum, shuffled groups are cut by cumulative
    image count (a group's midpoint decides), so each split gets about its fraction.

    A group's stratum is the most common stratum of its records (ties: the first in
    sorted order), so a group is never split across strata either.
    """
    frame = pd.DataFrame({"group": groups.to_numpy(), "stratum": strata.to_numpy()})
    group_stratum = (
        frame.groupby(["group", "stratum"])
        .size()
        .reset_index(name="n")
        .sort_values(["group", "n", "stratum"], ascending=[True, False, True])
        .drop_duplicates("group")
        .set_index("group")["stratum"]
    )
    sizes = frame.groupby("group").size().to_dict()  # a dict: a Series lookup per group was slow
    assigned: dict[str, str] = {}
    for stratum in sorted(set(group_stratum)):
        members = sorted(group_stratum.index[group_stratum == stratum])
        order = [members[i] for i in rng.permutation(len(members))]
        n = sum(int(sizes[g]) for g in order)
        cuts, total = [], 0.0
        for name, frac in fractions.items():
            total += frac * n
            cuts.append((total, name))
        done = 0
        for g in order:
            mid = done + sizes[g] / 2
            assigned[g] = next((name for cut, name in cuts if mid < cut), "train")
            done += int(sizes[g])
    return frame["group"].map(assigned).to_numpy(dtype=object)


# -- tables ------------------------------------------------------------------------------
def manifest_frame(records: pd.DataFrame, images: pd.DataFrame, raw: RawDataset) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "image_id": records["image_id"].astype(str),
            "path": records["path"].astype(str).map(lambda p: Path(p).as_posix()),
            "split": records["split"].astype(str),
            "report": records["report"].map(lambda r: "" if is_missing(r) else str(r))
            if "report" in records
            else "",
            "sha256": images["sha256"],
        }
    )
    if raw.task == "multilabel":
        for c in raw.classes:
            df[LABEL_PREFIX + c] = (
                records["label"].map(lambda lab, c=c: int(c in lab)).astype(np.int8)
            )
    else:
        index = {c: i for i, c in enumerate(raw.classes)}
        df["label"] = records["label"].map(index).astype(np.int64)
    df["width"] = images["width"].astype(np.int64)
    df["height"] = images["height"].astype(np.int64)
    reserved = {"image_id", "path", "split", "report", "label", "source"}
    for col in records.columns:
        if col not in reserved and col not in df:
            df[col] = records[col].to_numpy()
    return df


def boxes_frame(boxes: pd.DataFrame | None, kept: pd.Series) -> pd.DataFrame:
    if boxes is None or boxes.empty:
        return pd.DataFrame(
            {
                "image_id": pd.Series(dtype=str),
                "finding": pd.Series(dtype=str),
                **{c: pd.Series(dtype=np.float64) for c in ("x", "y", "w", "h")},
            }
        )
    out = boxes[boxes["image_id"].astype(str).isin(set(kept))].copy()
    out["image_id"] = out["image_id"].astype(str)
    for c in ("x", "y", "w", "h"):
        out[c] = out[c].astype(np.float64)
    return out[BOX_COLUMNS + [c for c in out.columns if c not in BOX_COLUMNS]].reset_index(
        drop=True
    )


def concepts_frame(gt: pd.DataFrame | None, kept: pd.Series) -> pd.DataFrame:
    if gt is None:
        return pd.DataFrame({"image_id": pd.Series(dtype=str)})
    gt = gt.assign(image_id=gt["image_id"].astype(str)).set_index("image_id")
    out = gt.loc[list(kept)].astype(bool).reset_index()
    return out
