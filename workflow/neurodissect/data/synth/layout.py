"""Writing a synthetic raw dataset: random streams, PNGs, CSVs, ground truth and the
dataset card. Everything here is byte-deterministic: no timestamps in PNGs,
fixed column and row order, ``\\n`` line endings, sorted JSON keys.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...config import settings_from
from .reports import PlantedConcept

IMAGES_DIR = "images"
REPORTS_CSV = "reports.csv"
GT_DIR = "ground_truth"
GT_CONCEPTS_CSV = f"{GT_DIR}/concepts.csv"
GT_CONCEPTS_JSON = f"{GT_DIR}/concepts.json"
GT_LABELS_CSV = f"{GT_DIR}/labels.csv"
CARD = "dataset_card.md"

# independent random streams per purpose, so e.g. a change to report wording
# never changes an image
STREAM_GROUPS, STREAM_CASE, STREAM_RENDER, STREAM_REPORT = 0, 1, 2, 3


@dataclass(frozen=True)
class SynthParams:
    """A generated dataset's settings (config ``datasets.<name>.synth``; the defaults are
    those of config/schema.yaml $defs/synth, tests/test_config.py keeps them equal)."""

    n: int = 3000  # images
    size: int = 64  # image side (px)
    seed: int = 0
    noise: float = 0.1  # fraction of labels redrawn at random (0..1)
    difficulty: float = 0.5  # 0 = large, high-contrast structures; 1 = small, faint, noisy

    @classmethod
    def from_config(cls, synth: dict[str, Any], section: str = "synth") -> SynthParams:
        return settings_from(cls, synth, section=section)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def run_items(
    make_item: Callable[[Path, SynthParams, int, Any], Any],
    root: Path,
    params: SynthParams,
    keys: Sequence[Any],
    workers: int,
    desc: str,
) -> list[Any]:
    """``[make_item(root, params, i, keys[i]) for i]``, in order, over ``workers``
    processes. Each item draws from its own random streams, so the result (and every
    file) is the same for any number of workers."""
    from ...runtime import progress

    chunk = 64
    starts = range(0, len(keys), chunk)
    jobs = [(make_item, root, params, s, list(keys[s : s + chunk])) for s in starts]
    pool = None
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        # fork before any other thread exists (the progress bar starts one); spawn would
        # re-run the caller's __main__, which is the rule script itself under Snakemake
        pool = multiprocessing.get_context("fork").Pool(workers)
    bar = progress(total=len(keys), desc=desc, unit="img")
    out: list[Any] = []
    try:
        for part in pool.imap(_run_chunk, jobs) if pool else map(_run_chunk, jobs):
            out += part
            bar.update(len(part))
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    return out


def _run_chunk(job) -> list[Any]:
    make_item, root, params, start, keys = job
    return [make_item(root, params, start + k, key) for k, key in enumerate(keys)]


def stream(seed: int, kind_code: int, purpose: int, index: int = 0) -> np.random.Generator:
    """The random stream for one purpose and one item: a pure function of its key."""
    return np.random.default_rng([seed, kind_code, purpose, index])


def save_png(pixels: np.ndarray, path: Path) -> None:
    """A PNG without time or software chunks: same pixels → same bytes."""
    mode = "L" if pixels.ndim == 2 else "RGB"
    Image.fromarray(pixels, mode=mode).save(path, format="PNG", compress_level=6)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_ground_truth(
    root: Path,
    image_ids: Sequence[str],
    present: np.ndarray,
    concepts: Sequence[PlantedConcept],
    causes: dict[str, list[str]],
) -> dict[str, float]:
    """ground_truth/concepts.csv (0/1 per concept) and concepts.json; returns prevalences.

    ``causes``: class → the concepts planted as its cause; each concept's JSON entry
    lists the classes it causes (``causes``, empty for artifacts).
    """
    names = [c.name for c in concepts]
    write_csv(
        root / GT_CONCEPTS_CSV,
        ["image_id", *names],
        ([i, *map(int, row)] for i, row in zip(image_ids, present, strict=True)),
    )
    prevalence = dict(zip(names, present.mean(axis=0).tolist(), strict=True))
    info = {
        c.name: {
            **c.info(prevalence[c.name]),
            "causes": sorted(k for k, names in causes.items() if c.name in names),
        }
        for c in concepts
    }
    (root / GT_CONCEPTS_JSON).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return prevalence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def concept_table(concepts: Sequence[PlantedConcept], prevalence: dict[str, float]) -> str:
    return markdown_table(
        ["concept", "kind", "drawn as", "prevalence", "synonyms (ground truth for naming)"],
        (
            [
                f"`{c.name}`",
                c.kind,
                c.description,
                f"{prevalence[c.name]:.1%}",
                ", ".join(c.synonyms),
            ]
            for c in concepts
        ),
    )
