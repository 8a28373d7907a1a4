"""Spatial maps of the exemplars, quantised for the pages' heat-map overlays.

A unit's map over an exemplar image is the (h, w) slice of the activation store's
``maps`` array (the conv layer before pooling). The page draws it over the thumbnail,
bilinearly upsampled, so only h·w bytes per exemplar travel in the HTML.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..activations.store import ActivationStore

ROW_BLOCK = 256  # images whose maps are read at once


def exemplar_maps(store_path: Path, exemplars: pd.DataFrame) -> dict[tuple[int, str], np.ndarray]:
    """(unit, image_id) → the unit's float32 (h, w) map over that image, for every exemplar
    row whose image is in a split with maps; empty when the store has none."""
    store = ActivationStore(store_path)
    if store.spatial_shape is None:
        return {}
    out: dict[tuple[int, str], np.ndarray] = {}
    wanted = set(exemplars["image_id"].astype(str))
    for split in store.splits:
        if not store.has_maps(split):
            continue
        ids = store.image_ids(split)
        rows = {i: r for r, i in enumerate(ids) if i in wanted}
        if not rows:
            continue
        sel = exemplars[exemplars["image_id"].isin(list(rows))]
        wanted_by_row: dict[int, list[int]] = {}
        for unit, image_id in zip(sel["unit"], sel["image_id"], strict=True):
            wanted_by_row.setdefault(rows[image_id], []).append(int(unit))
        order = sorted(wanted_by_row)
        arr = store.maps_array(split)
        # blocks of rows keep memory bounded on real data (7x7 maps of 2,048 channels)
        for start in range(0, len(order), ROW_BLOCK):
            block = order[start : start + ROW_BLOCK]
            maps = np.asarray(arr.oindex[block], dtype=np.float32)
            for k, r in enumerate(block):
                for unit in wanted_by_row[r]:
                    out[(unit, str(ids[r]))] = maps[k, unit].copy()  # not a view of the block
    return out


def quantise(maps: list[np.ndarray]) -> list[str]:
    """Each map as "h w v…" (v = 0–255 hex pairs) scaled by the largest value over all of
    ``maps`` (one unit's exemplars), so heat compares across its images; negatives → 0."""
    if not maps:
        return []
    top = max(float(np.max(m)) for m in maps)
    scale = 255.0 / top if top > 0 else 0.0
    out = []
    for m in maps:
        q = np.clip(np.nan_to_num(m) * scale, 0, 255).round().astype(np.uint8)
        out.append(f"{q.shape[0]} {q.shape[1]} {q.tobytes().hex()}")
    return out
