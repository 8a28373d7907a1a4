"""The unit-activation store: one Zarr v3 group, the same layout for layer
activations, SAE latents and CLIP image embeddings.

Layout::

    store.zarr/                 attrs: kind, layer, n_units, splits, spatial_shape, ... (+ provenance)
      {split}/                  one subgroup per split present (train, val, test), manifest row order
        image_id  (N,)          strings
        acts      (N, C)        float32, chunked over rows
        maps      (N, C, h, w)  float16, optional spatial maps for localization
      train_aug/                augmented views of the train images (optional, no maps):
        image_id  (N*V,)        each train image id V times, image-major (V = attrs views)
        acts      (N*V, C)

Augmented splits are extra training rows for the SAE, not images of the manifest:
``splits`` lists only the image splits every stage iterates over;
``augmented_splits`` lists the others, read only when asked for by name.

Writers append row blocks in any size; rows are buffered and written in whole
chunks, so memory stays bounded by one chunk and no chunk is rewritten.
Readers stream row chunks (``iter_chunks``) so no stage needs N x C in RAM.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import PathLike, atomic_path

SPLIT_ORDER = ("train", "val", "test")
AUGMENTED_SUFFIX = "_aug"  # train_aug: augmented views of the train split


class _RowBuffer:
    """Rows appended in any block size, written to one array in whole chunks."""

    def __init__(self, array, dtype, start: int = 0) -> None:
        self.array, self.dtype = array, dtype
        self.chunk_rows = array.chunks[0]
        self.filled = start  # a shard writes rows [start, stop) of the array
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def append(self, block: np.ndarray) -> None:
        self._pending.append(block)
        self._pending_rows += len(block)
        if self._pending_rows >= self.chunk_rows:
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        if not self._pending:
            return
        rows = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        # write whole chunks now; keep the remainder unless this is the end
        n = len(rows) if final else (len(rows) // self.chunk_rows) * self.chunk_rows
        if n:
            self.array[self.filled : self.filled + n] = rows[:n].astype(self.dtype, copy=False)
            self.filled += n
        rest = rows[n:].copy() if n else rows  # a copy frees the written block
        self._pending = [rest] if len(rest) else []
        self._pending_rows = len(rest)


def map_chunk_rows(chunk_rows: int, n_units: int, spatial_shape: Sequence[int]) -> int:
    """Rows per chunk of the spatial maps.

    Map chunks hold fewer rows: one chunk of C x h x w float16 per ~8 MB; they are buffered
    and flushed on their own, so memory stays ~one map chunk per split."""
    h, w = spatial_shape
    return max(1, min(chunk_rows, (8 << 20) // max(1, n_units * h * w * 2)))


class _SplitBuffer:
    def __init__(
        self,
        group,
        n_rows: int,
        n_units: int,
        chunk_rows: int,
        spatial_shape,
        compressors,
        rows: tuple[int, int] | None = None,
    ):
        start, self.n_rows = rows if rows is not None else (0, n_rows)
        acts = group.create_array(
            "acts",
            shape=(n_rows, n_units),
            dtype="float32",
            chunks=(min(chunk_rows, max(n_rows, 1)), n_units),
            compressors=compressors,
        )
        self.acts = _RowBuffer(acts, np.float32, start)
        self.maps = None
        if spatial_shape is not None:
            h, w = spatial_shape
            map_rows = map_chunk_rows(chunk_rows, n_units, spatial_shape)
            maps = group.create_array(
                "maps",
                shape=(n_rows, n_units, h, w),
                dtype="float16",
                chunks=(min(map_rows, max(n_rows, 1)), n_units, h, w),
                compressors=compressors,
            )
            self.maps = _RowBuffer(maps, np.float16, start)

    def append(self, acts: np.ndarray, maps: np.ndarray | None) -> None:
        self.acts.append(acts)
        if self.maps is not None:
            self.maps.append(maps)

    def close(self, where: str) -> None:
        for buf in (self.acts, self.maps):
            if buf is not None:
                buf.flush(final=True)
                if buf.filled != self.n_rows:
                    raise ValueError(f"{where}: wrote {buf.filled} rows, expected {self.n_rows}")


class StoreWriter:
    """Write a store atomically: nothing appears at ``path`` until ``close`` succeeds.

    Usage::

        with StoreWriter(path, n_units=C, attrs={"kind": "activations", "layer": "fc"}) as w:
            w.begin_split("train", image_ids)          # all ids of the split, in order
            for acts in batches:                      # (b, C) float32 [, maps (b, C, h, w)]
                w.append("train", acts)
    """

    def __init__(
        self,
        path: PathLike,
        *,
        n_units: int,
        attrs: dict[str, Any] | None = None,
        chunk_rows: int = 1024,
        spatial_shape: Sequence[int] | None = None,
        compressors: Any = "auto",
    ) -> None:
        self.path = Path(path)
        self.n_units = int(n_units)
        self.attrs = dict(attrs or {})
        self.chunk_rows = int(chunk_rows)
        self.spatial_shape = tuple(spatial_shape) if spatial_shape is not None else None
        self.compressors = compressors
        self._splits: dict[str, _SplitBuffer] = {}
        self._augmented: list[str] = []
        self._ctx = None
        self._group = None

    def __enter__(self) -> StoreWriter:
        import zarr

        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._group = zarr.open_group(tmp, mode="w", zarr_format=3)
        return self

    def begin_split(
        self,
        split: str,
        image_ids: Sequence[str],
        rows: tuple[int, int] | None = None,
        *,
        augmented: bool = False,
    ) -> None:
        """Start ``split`` (all its ids, in order). ``rows=(start, stop)``: this writer fills
        only those rows (one shard, see ``activations.shards``; ``start`` chunk-aligned). An
        ``augmented`` split holds extra rows (no maps), listed apart."""
        if split in self._splits:
            raise ValueError(f"split {split!r} already started")
        if augmented:
            self._augmented.append(split)
        g = self._group.create_group(split)
        ids = np.asarray([str(i) for i in image_ids])
        id_arr = g.create_array(
            "image_id", shape=(len(ids),), dtype=str, chunks=(max(len(ids), 1),)
        )
        if len(ids):
            id_arr[:] = ids
        spatial = None if augmented else self.spatial_shape
        self._splits[split] = _SplitBuffer(
            g, len(ids), self.n_units, self.chunk_rows, spatial, self.compressors, rows
        )

    def append(self, split: str, acts: np.ndarray, maps: np.ndarray | None = None) -> None:
        acts = np.asarray(acts, dtype=np.float32)
        if acts.ndim != 2 or acts.shape[1] != self.n_units:
            raise ValueError(f"expected rows of {self.n_units} units, got shape {acts.shape}")
        buf = self._splits[split]
        if (maps is None) != (buf.maps is None):
            raise ValueError("maps must be given for every block exactly when spatial_shape is set")
        buf.append(acts, maps)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is None:
                for name, buf in self._splits.items():
                    buf.close(f"{self.path}/{name}")
                splits = [s for s in SPLIT_ORDER if s in self._splits]
                splits += [s for s in self._splits if s not in splits and s not in self._augmented]
                extra = {"augmented_splits": list(self._augmented)} if self._augmented else {}
                self._group.attrs.update(
                    {
                        **self.attrs,
                        **extra,
                        "n_units": self.n_units,
                        "splits": splits,
                        "spatial_shape": list(self.spatial_shape) if self.spatial_shape else None,
                    }
                )
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))


class ActivationStore:
    """Read side of the layout above, streaming by row chunks."""

    def __init__(self, path: PathLike) -> None:
        import zarr

        self.path = Path(path)
        try:
            self.group = zarr.open_group(self.path, mode="r")
        except Exception as exc:  # zarr raises several types for a missing / foreign folder
            raise InputError(f"{self.path}: not a readable Zarr v3 store ({exc})") from None
        self.attrs = dict(self.group.attrs)
        if "n_units" not in self.attrs or "splits" not in self.attrs:
            raise InputError(f"{self.path}: not an activation store (attrs lack n_units/splits)")

    @property
    def splits(self) -> list[str]:
        return list(self.attrs["splits"])

    @property
    def augmented_splits(self) -> list[str]:
        """Splits of extra (augmented-view) rows; not in ``splits``, read only by name."""
        return list(self.attrs.get("augmented_splits") or [])

    @property
    def n_units(self) -> int:
        return int(self.attrs["n_units"])

    @property
    def spatial_shape(self) -> tuple[int, int] | None:
        s = self.attrs.get("spatial_shape")
        return tuple(s) if s else None

    def _split_group(self, split: str):
        if split not in self.splits and split not in self.augmented_splits:
            have = self.splits + self.augmented_splits
            hint = ""
            if split.endswith(AUGMENTED_SUFFIX):
                hint = "; augmented views are extracted when activations.augment_views > 0"
            raise InputError(f"{self.path}: no split {split!r} (has {have}){hint}")
        return self.group[split]

    def resolve_splits(self, split: str | Sequence[str]) -> list[str]:
        """'all' → every split in order; a name → [name]; a list → itself."""
        if isinstance(split, str):
            return self.splits if split == "all" else [split]
        return list(split)

    def n_rows(self, split: str) -> int:
        return int(self._split_group(split)["acts"].shape[0])

    def image_ids(self, split: str | Sequence[str]) -> np.ndarray:
        # Zarr returns numpy's variable-width StringDType; hand out plain '<U' arrays
        parts = [
            np.asarray(self._split_group(s)["image_id"][:]).astype(object).astype(str)
            for s in self.resolve_splits(split)
        ]
        return np.concatenate(parts) if parts else np.array([], dtype=str)

    def acts_array(self, split: str):
        """The lazy Zarr array (N, C) of one split."""
        return self._split_group(split)["acts"]

    def read(self, split: str | Sequence[str]) -> np.ndarray:
        """All rows of the split(s) in memory: only for stores known to be small."""
        parts = [self.acts_array(s)[:] for s in self.resolve_splits(split)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_units), np.float32)

    def iter_chunks(
        self, split: str | Sequence[str], rows: int | None = None
    ) -> Iterator[tuple[str, int, np.ndarray]]:
        """Yield (split, start_row, block) over the split(s), ``rows`` at a time (default: the chunk size)."""
        for s in self.resolve_splits(split):
            arr = self.acts_array(s)
            step = rows or arr.chunks[0]
            for start in range(0, arr.shape[0], step):
                yield s, start, arr[start : start + step]

    def has_maps(self, split: str) -> bool:
        return "maps" in self._split_group(split)

    def maps_array(self, split: str):
        """The lazy Zarr array (N, C, h, w) float16 of one split's spatial maps."""
        g = self._split_group(split)
        if "maps" not in g:
            raise InputError(
                f"{self.path}: split {split!r} has no spatial maps "
                "(enable them with activations.spatial_maps)"
            )
        return g["maps"]
