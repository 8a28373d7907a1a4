"""Adaptive exemplars (MAMMI): the images that activate each unit most.

For unit j with activations a_j over the probing images,
t_j = max(a_j) − (max(a_j) − min(a_j))·(1 − p/100); the exemplars are the images with
a_j > t_j, highest first, capped at ``max_exemplars``. A unit with no image above its
threshold (constant activation) is *dead*: it is listed, never an error.

The exemplars are the top-``max_exemplars`` images overall that lie above t_j, so one
pass over the store suffices: a running top-k per unit plus running min/max, with row
blocks sized so that the working memory stays within ``memory_mb`` (on top of what the
interpreter and libraries already hold). Memory is bounded by units x (k + block rows), not by
the number of images. Ties are broken by row order (earlier rows first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..errors import InputError
from ..io import PathLike, write_parquet

log = logging.getLogger(__name__)

COLUMNS = ("unit", "rank", "image_id", "activation", "split", "threshold")
# bytes per unit per row while merging a block: the block (f4), the merged values (f4), the
# stable sort order (i8), the finiteness mask (b1), zarr's decoded chunks (f4); 40 measured
# with margin (bench_annotate.py: growth of peak RSS under the budget on a store 4x its size)
_BYTES_PER_CELL = 40


@dataclass(frozen=True)
class ExemplarParams:
    percentile: float = 93.0
    max_exemplars: int = 50
    probe_split: str = "test"
    memory_mb: float = 1024.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ExemplarParams:
        return settings_from(cls, cfg, section="annotate")


def adaptive_thresholds(amin: np.ndarray, amax: np.ndarray, percentile: float) -> np.ndarray:
    """t = max − (max − min)·(1 − p/100), per unit (float64)."""
    amin, amax = np.asarray(amin, np.float64), np.asarray(amax, np.float64)
    return amax - (amax - amin) * (1.0 - percentile / 100.0)


class RunningTopK:
    """Per column, the k largest values seen so far and their row numbers (earlier row wins ties)."""

    def __init__(self, k: int, n_units: int) -> None:
        self.k = int(k)
        self.values = np.full((0, n_units), -np.inf, dtype=np.float32)
        self.rows = np.zeros((0, n_units), dtype=np.int64)
        self.amin = np.full(n_units, np.inf)
        self.amax = np.full(n_units, -np.inf)
        self.n_rows = 0

    def update(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if not len(block):
            return
        self.amin = np.minimum(self.amin, block.min(axis=0))
        self.amax = np.maximum(self.amax, block.max(axis=0))
        kept = len(self.values)
        merged = np.concatenate([self.values, block])
        np.negative(merged, out=merged)  # descending order by a stable ascending sort
        # kept rows come first and are earlier than the block: stability keeps row order on ties
        order = np.argsort(merged, axis=0, kind="stable")[: self.k]
        self.values = -np.take_along_axis(merged, order, axis=0)
        from_block = order >= kept
        old = (
            np.take_along_axis(self.rows, np.where(from_block, 0, order), axis=0)
            if kept
            else np.zeros(order.shape, dtype=np.int64)
        )
        self.rows = np.where(from_block, self.n_rows + order - kept, old)
        self.n_rows += len(block)


@dataclass
class ExemplarSets:
    """Per unit: exemplar rows (probe-row numbers, best first) and their activations."""

    rows: list[np.ndarray]
    activations: list[np.ndarray]
    thresholds: np.ndarray  # (C,) float64
    amin: np.ndarray
    amax: np.ndarray
    n_rows: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dead(self) -> np.ndarray:
        return np.array([len(r) == 0 for r in self.rows], dtype=bool)


def finish(topk: RunningTopK, percentile: float) -> ExemplarSets:
    """Cut each unit's running top-k at its adaptive threshold."""
    t = adaptive_thresholds(topk.amin, topk.amax, percentile)
    above = topk.values.astype(np.float64) > t[None, :]
    rows = [topk.rows[above[:, j], j] for j in range(above.shape[1])]
    acts = [topk.values[above[:, j], j] for j in range(above.shape[1])]
    return ExemplarSets(rows, acts, t, topk.amin, topk.amax, topk.n_rows)


def select_from_array(acts: np.ndarray, percentile: float, max_exemplars: int) -> ExemplarSets:
    """Exemplars of every column of an in-memory (N, C) array."""
    topk = RunningTopK(max_exemplars, np.asarray(acts).shape[1])
    topk.update(acts)
    return finish(topk, percentile)


def block_rows(n_units: int, k: int, memory_mb: float, chunk_rows: int) -> int:
    """Rows read per step: what fits the working-memory budget beside the k kept rows, in
    whole chunks where possible. The budget is on top of the interpreter and libraries,
    which a long-lived process (a notebook, a test session) may have grown arbitrarily."""
    fit = int(memory_mb * 2**20 // (_BYTES_PER_CELL * max(1, n_units))) - k
    if fit < 1:
        need = (k + chunk_rows) * _BYTES_PER_CELL * n_units / 2**20
        raise InputError(
            f"annotate.memory_mb = {memory_mb} is too small for {n_units} units x {k} "
            f"exemplars; raise it to at least {need:.0f}"
        )
    return max(1, (fit // chunk_rows) * chunk_rows) if fit >= chunk_rows else fit


def stream_exemplars(
    store, splits: list[str], params: ExemplarParams, rows: int | None = None
) -> ExemplarSets:
    """Exemplars over the probing split(s) of an ActivationStore, in bounded memory
    (``rows`` per step if given, else what ``params.memory_mb`` allows)."""
    from ..runtime import progress

    topk = RunningTopK(params.max_exemplars, store.n_units)
    for split in splits:
        arr = store.acts_array(split)
        step = rows or block_rows(
            store.n_units, params.max_exemplars, params.memory_mb, arr.chunks[0]
        )
        for start in progress(range(0, arr.shape[0], step), desc=f"exemplars {split}"):
            block = np.asarray(arr[start : start + step])
            bad = ~np.isfinite(block)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise InputError(
                    f"{store.path}: split {split!r} row {start + r} unit {c} is not finite "
                    f"({block[r, c]}); {int(bad.sum())} such values in rows "
                    f"{start}..{start + len(block) - 1}"
                )
            topk.update(block)
    return finish(topk, params.percentile)


def exemplar_table(
    sets: ExemplarSets, image_ids: np.ndarray, row_split: np.ndarray
) -> pd.DataFrame:
    """Long table: one row per (unit, rank) with the image id, activation, split, threshold."""
    units = np.concatenate([np.full(len(r), j) for j, r in enumerate(sets.rows)] or [[]])
    ranks = np.concatenate([np.arange(len(r)) for r in sets.rows] or [[]])
    rows = np.concatenate(sets.rows or [[]]).astype(np.int64)
    acts = np.concatenate(sets.activations or [[]]).astype(np.float32)
    return pd.DataFrame(
        {
            "unit": units.astype(np.int64),
            "rank": ranks.astype(np.int64),
            "image_id": np.asarray(image_ids)[rows].astype(str),
            "activation": acts,
            "split": np.asarray(row_split)[rows].astype(str),
            "threshold": sets.thresholds[units.astype(np.int64)],
        }
    )


def select_exemplars(store_path: PathLike, out_path: PathLike, params: ExemplarParams) -> dict:
    """Rule entry point: exemplars.parquet for every unit of a store (layer or SAE latents).

    Dead units (no image above the threshold) have no rows; they are listed in the
    parquet metadata under ``dead_units``.
    """
    from ..activations.store import ActivationStore

    store = ActivationStore(store_path)
    splits = store.resolve_splits(params.probe_split)
    missing = [s for s in splits if s not in store.splits]
    if missing:
        raise InputError(
            f"{store_path}: annotate.probe_split {params.probe_split!r} needs split(s) "
            f"{missing}, the store has {store.splits}"
        )
    ids = store.image_ids(splits)
    row_split = np.concatenate([np.full(store.n_rows(s), s) for s in splits])
    if len(ids) == 0:
        raise InputError(f"{store_path}: probing split {params.probe_split!r} has no images")
    sets = stream_exemplars(store, splits, params)
    table = exemplar_table(sets, ids, row_split)
    dead = np.flatnonzero(sets.dead).tolist()
    meta = {
        "n_units": store.n_units,
        "n_images": int(len(ids)),
        "probe_split": params.probe_split,
        "splits": splits,
        "percentile": params.percentile,
        "max_exemplars": params.max_exemplars,
        "dead_units": dead,
        "store_attrs": {k: store.attrs.get(k) for k in ("kind", "layer", "class_units")},
    }
    write_parquet(table, out_path, metadata=meta)
    counts = np.array([len(r) for r in sets.rows])
    log.info(
        "%d units: %d dead, exemplars per live unit: median %s, %d at the cap of %d",
        store.n_units,
        len(dead),
        np.median(counts[counts > 0]) if (counts > 0).any() else 0,
        int((counts == params.max_exemplars).sum()),
        params.max_exemplars,
    )
    return {"n_units": store.n_units, "n_dead": len(dead), "n_exemplar_rows": len(table)}


def read_exemplars(path: PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """exemplars.parquet and its metadata; a foreign or missing file is an InputError."""
    from ..io import read_parquet_metadata, read_table

    df = read_table(path, "not found (run select_exemplars first)")
    meta = read_parquet_metadata(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing or "n_units" not in meta:
        raise InputError(f"{path}: not an exemplars table (missing {missing or ['metadata']})")
    return df.sort_values(["unit", "rank"], kind="stable").reset_index(drop=True), meta
