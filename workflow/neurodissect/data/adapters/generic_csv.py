"""Any image folder described by one CSV whose column names the config gives::

datasets:
  mine:
    format: csv
    root: /data/mine
    options:
      csv: labels.csv            # relative to root
      image_column: file         # image path relative to root
      label_column: diagnosis    # one class name per row (multi-class) ...
      # label_separator: "|"     # ... or several per cell (multi-label)
      # label_columns: [a, b]    # ... or one 0/1 column per class (multi-label)
      report_column: report      # optional free text
      split_column: split        # optional train/val/test (blank = assign)
      group_column: patient      # optional: never split a group
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import ConfigError
from . import RawDataset
from .common import check_options, line_of, read_table, resolve

SPLITS = ("train", "val", "test")
TRUE = {"1", "1.0", "true", "yes", "y", "t"}
FALSE = {"0", "0.0", "false", "no", "n", "f", ""}
MODALITIES = ("dermoscopy", "chest_xray", "fundus", "other")
LIST_OPTIONS = ("label_columns", "classes")  # null by default, lists when given
DEFAULTS = {
    "csv": None,
    "image_column": "path",
    "id_column": None,
    "label_column": None,
    "label_separator": None,
    "label_columns": None,
    "classes": None,
    "report_column": None,
    "split_column": None,
    "group_column": None,
    "modality": "other",
    "channels": 3,
    "class_synonyms": {},
}


def read_csv_dataset(root: Path, options: dict | None = None) -> RawDataset:
    root = Path(root)
    opts = check_options("csv", options, DEFAULTS, LIST_OPTIONS)
    check_config(opts)
    path = resolve(root, opts["csv"])
    named = [
        opts["image_column"],
        opts["id_column"],
        opts["label_column"],
        *(opts["label_columns"] or []),
        opts["report_column"],
        opts["split_column"],
        opts["group_column"],
    ]
    required = [c for c in named if c]
    table = read_table(path, required, ",".join(required), what="dataset CSV")
    problems: list[str] = []
    multilabel = bool(opts["label_columns"]) or bool(opts["label_separator"])
    labels = (
        multi_hot_labels(table, opts["label_columns"], path, problems)
        if opts["label_columns"]
        else cell_labels(table[opts["label_column"]], opts["label_separator"], path, problems)
    )
    classes = list(opts["classes"] or opts["label_columns"] or sorted(set(flatten(labels))))
    check_known(labels, classes, opts["label_column"], path, problems)
    paths = column_or(table, opts["image_column"], None)
    columns = {
        "image_id": column_or(table, opts["id_column"], paths),
        "path": paths,
        "source": [line_of(path, i) for i in range(len(table))],
        "label": labels,
        "split": split_values(table, opts["split_column"], path, problems),
        "report": column_or(table, opts["report_column"], None),
    }
    if opts["group_column"]:
        columns["group"] = column_or(table, opts["group_column"], None)
    records = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})
    return RawDataset(
        records=records,
        classes=classes,
        task="multilabel" if multilabel else "multiclass",
        modality=opts["modality"],
        channels=int(opts["channels"]),
        class_synonyms={c: list(v) for c, v in (opts["class_synonyms"] or {}).items()},
        problems=problems,
    )


def check_config(opts: dict) -> None:
    if not opts["csv"]:
        raise ConfigError("dataset format 'csv': options.csv (the CSV file) is required")
    if bool(opts["label_column"]) == bool(opts["label_columns"]):
        raise ConfigError(
            "dataset format 'csv': give exactly one of options.label_column (class names, "
            "optionally split by options.label_separator) or options.label_columns (0/1 columns)"
        )
    if opts["modality"] not in MODALITIES:
        raise ConfigError(f"dataset format 'csv': options.modality must be one of {MODALITIES}")
    if int(opts["channels"]) not in (1, 3):
        raise ConfigError("dataset format 'csv': options.channels must be 1 or 3")
    unknown = sorted(
        set(opts["class_synonyms"] or {}) - set(opts["classes"] or opts["label_columns"] or [])
    )
    if unknown and (opts["classes"] or opts["label_columns"]):
        raise ConfigError(
            f"dataset format 'csv': options.class_synonyms names unknown classes {unknown}"
        )


def cell_labels(column: pd.Series, separator: str | None, path: Path, problems: list[str]):
    out = []
    for i, value in enumerate(column):
        value = value.strip()
        if separator:
            out.append([v.strip() for v in value.split(separator) if v.strip()])
        else:
            if not value:
                problems.append(f"{line_of(path, i)}: empty label")
            out.append(value)
    return out


def multi_hot_labels(table: pd.DataFrame, columns: list[str], path: Path, problems: list[str]):
    out = []
    for i, row in enumerate(table[columns].itertuples(index=False)):
        positive = []
        for col, raw in zip(columns, row, strict=True):
            value = raw.strip().lower()
            if value in TRUE:
                positive.append(col)
            elif value not in FALSE:
                problems.append(f"{line_of(path, i)}: {col}={raw!r}; expected 0/1 (or true/false)")
        out.append(positive)
    return out


def check_known(labels, classes, column, path: Path, problems: list[str]) -> None:
    known = set(classes)
    for i, value in enumerate(labels):
        values = value if isinstance(value, list) else [value]
        unknown = [v for v in values if v and v not in known]
        if unknown:
            problems.append(
                f"{line_of(path, i)}: unknown label(s) {unknown} in {column}; expected {classes}"
            )


def split_values(table: pd.DataFrame, column: str | None, path: Path, problems: list[str]):
    if not column:
        return [None] * len(table)
    out = []
    for i, value in enumerate(table[column]):
        value = value.strip().lower()
        if value and value not in SPLITS:
            problems.append(
                f"{line_of(path, i)}: {column}={value!r}; expected one of {SPLITS} or blank"
            )
        out.append(value if value in SPLITS else None)
    return out


def column_or(table: pd.DataFrame, column: str | None, default) -> list:
    """Stripped values of ``column`` (blank → None), or ``default`` when no column is named."""
    if not column:
        return list(default) if default is not None else [None] * len(table)
    return [v.strip() or None for v in table[column]]


def flatten(labels) -> list[str]:
    return [v for value in labels for v in (value if isinstance(value, list) else [value]) if v]


def metadata_files(root: Path, options: dict | None = None) -> list[Path]:
    """The files whose change must re-prepare the dataset (images are hashed separately)."""
    root, opts = Path(root), check_options("csv", options, DEFAULTS, LIST_OPTIONS)
    return [resolve(root, opts["csv"])] if opts["csv"] else []
