"""Dataset adapters: one module per raw layout, all returning a :class:`RawDataset`.

An adapter only *reads* its layout (metadata files, split lists, reports,
boxes) and reports what it cannot parse. Checking the images (missing,
unreadable, escaping the root, duplicates), splitting, hashing and writing
the manifest are shared, in :mod:`neurodissect.data.prepare`, so every format
gets the same checks and the same single error message.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# format → "module:function"; imported lazily so one broken adapter can't break the rest
ADAPTERS: dict[str, str] = {
    "synthderm": "neurodissect.data.adapters.synthetic:read_synthderm",
    "synthcxr": "neurodissect.data.adapters.synthetic:read_synthcxr",
    "ham10000": "neurodissect.data.adapters.ham10000:read_ham10000",
    "nih14": "neurodissect.data.adapters.nih14:read_nih14",
    "chestx-det": "neurodissect.data.adapters.chestx_det:read_chestx_det",
    "mimic-cxr": "neurodissect.data.adapters.mimic_cxr:read_mimic_cxr",
    "fairvlmed": "neurodissect.data.adapters.fairvlmed:read_fairvlmed",
    "csv": "neurodissect.data.adapters.generic_csv:read_csv_dataset",
}


@dataclass
class RawDataset:
    """What an adapter found in a raw folder, before the shared checks.

    records columns:
      image_id   unique id (str)
      path       image path relative to root, as written in the source (checked later)
      source     "file:row" where the record came from, for error messages
      label      class name (multiclass) or list of class names (multilabel; [] = none)
      split      train/val/test, or None where the source has no official split, or
                 'trainval' for an official train+val pool (val carved out by group)
      report     free text, or None
      group      optional: patient / lesion id; splits never separate a group
    """

    records: pd.DataFrame
    classes: list[str]
    task: str  # multiclass | multilabel
    modality: str  # dermoscopy | chest_xray | fundus | other
    channels: int  # 1 or 3: what images are converted to
    class_synonyms: dict[str, list[str]] = field(default_factory=dict)
    boxes: pd.DataFrame | None = None  # image_id, finding, x, y, w, h
    concepts_gt: pd.DataFrame | None = None  # image_id + one bool column per planted concept
    concept_info: dict[str, Any] | None = None  # concept → {"synonyms": [...], ...}
    problems: list[str] = field(default_factory=list)  # parse problems, "file:row: what"
    # images that live outside plain files (e.g. FairVLMed .npz): id → callable returning PIL image
    image_loader: Callable[[Path, pd.Series], Any] | None = None


def get_adapter(fmt: str) -> Callable[..., RawDataset]:
    if fmt not in ADAPTERS:
        raise KeyError(f"unknown dataset format {fmt!r}; known: {sorted(ADAPTERS)}")
    module, func = ADAPTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)
