"""Which raw files feed ``prepare_data``, per format, so Snakemake reruns it when
the metadata of a real dataset changes (the images themselves are hashed into
the manifest and checked by the audit).

Imported by ``workflow/rules/common.smk`` at parse time.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from . import ADAPTERS

SYNTHETIC = ("synthderm", "synthcxr")


def metadata_files(fmt: str, root: str | Path, options: dict | None = None) -> list[str]:
    """Paths (as strings) of the metadata files of a real dataset under ``root``.

    A synthetic format has none here (its generated folder is the rule's input).
    """
    if fmt in SYNTHETIC:
        return []
    module = importlib.import_module(ADAPTERS[fmt].split(":")[0])
    return [str(p) for p in module.metadata_files(Path(root), options or {})]
