"""`neurodissect synth`: procedurally generated raw datasets with planted ground truth.

Two kinds, each laid out like the real dataset it stands in for and read back
through its adapter (:mod:`neurodissect.data.adapters.synthetic`) like any other:

- ``synthderm`` (HAM10000-like): synthderm_metadata.csv, images/SD_*.png
- ``synthcxr`` (NIH ChestX-ray14-like): Data_Entry.csv, BBox_List.csv,
  images/<patient>_<follow-up>.png

plus, for both, reports.csv, ground_truth/{concepts.csv, concepts.json, labels.csv}
and dataset_card.md (classes, concepts, prevalences, the spurious correlations).
What is planted and how cases, labels and reports are sampled lives in
:mod:`.derm` / :mod:`.cxr`; how images look in :mod:`.derm_draw` /
:mod:`.cxr_draw` (on the primitives of :mod:`.draw`); report sentences
in :mod:`.reports`; file writing in :mod:`.layout`.

Deterministic: every image, case and report comes from its own random stream
keyed by (seed, kind, purpose, index), so the same arguments give byte-identical
files, and the first k images do not depend on ``n``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

from ...errors import InputError
from ...io import PathLike, atomic_path
from .layout import SynthParams

log = logging.getLogger(__name__)

KINDS = ("synthderm", "synthcxr")
MIN_SIZE = 16
# the defaults of config/schema.yaml $defs/synth (tests/test_config.py keeps them equal)
DEFAULTS = asdict(SynthParams())


def generate(kind: str, out: PathLike, params: SynthParams, workers: int = 1) -> Path:
    """Write a synthetic raw dataset folder at ``out`` (created atomically) and return it.

    An existing ``out`` is replaced only if it holds an earlier synthetic dataset.
    ``workers`` processes render images in parallel (same files for any number).
    """
    check_arguments(kind, params)
    params = replace(params, noise=float(params.noise), difficulty=float(params.difficulty))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "dataset_card.md").exists():
        raise InputError(
            f"{out}: exists and is not an earlier synthetic dataset; choose an empty or new "
            "folder (it would be replaced)"
        )
    if kind == "synthderm":
        from .derm import generate_synthderm as write
    else:
        from .cxr import generate_synthcxr as write
    start = time.perf_counter()
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write(tmp, params, workers)
    log.info(
        "wrote %d %s images (%d px) to %s in %.1f s",
        params.n,
        kind,
        params.size,
        out,
        time.perf_counter() - start,
    )
    return out


def check_arguments(kind: str, params: SynthParams) -> None:
    n, size, seed = params.n, params.size, params.seed
    problems = []
    if kind not in KINDS:
        problems.append(f"kind {kind!r} is not one of {list(KINDS)}")
    if not isinstance(n, int) or n < 1:
        problems.append(f"n={n!r}: expected a positive number of images")
    if not isinstance(size, int) or size < MIN_SIZE:
        problems.append(f"size={size!r}: expected an image side of at least {MIN_SIZE} px")
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"seed={seed!r}: expected a non-negative integer")
    for name, value in (("noise", params.noise), ("difficulty", params.difficulty)):
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            problems.append(f"{name}={value!r}: expected a number in [0, 1]")
    if problems:
        raise InputError("synth: " + "; ".join(problems))
