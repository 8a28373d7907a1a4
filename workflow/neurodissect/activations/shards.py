"""Sharded writing of one activation store (``activations.shards: S``).

Each of S jobs (one per GPU) writes a chunk-aligned row range of every split into its own
*part*: a complete Zarr store skeleton (the same array metadata as the whole store) that
holds only the chunk files of its rows; the root attrs carry ``shard`` (index, count, row
ranges per split). ``seal_shards`` then checks that the parts agree and that their ranges
tile every split exactly once, and links (or copies) every chunk file into the final store
atomically. Because ranges are aligned to whole chunks of every array (``acts`` and, when
kept, ``maps``), each chunk file is written by exactly one shard, with the same bytes as an
unsharded run: the sealed store is byte-equal to S = 1.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import PathLike, atomic_path
from .store import map_chunk_rows

META = "zarr.json"


def row_alignment(
    n_rows: int, chunk_rows: int, n_units: int, spatial_shape: Sequence[int] | None = None
) -> int:
    """Rows per shard boundary: a multiple of the chunk rows of every array of a split."""
    align = min(chunk_rows, max(n_rows, 1))
    if spatial_shape is not None:
        align = math.lcm(
            align, min(map_chunk_rows(chunk_rows, n_units, spatial_shape), max(n_rows, 1))
        )
    return align


def shard_range(n_rows: int, align: int, shards: int, index: int) -> tuple[int, int]:
    """Rows [start, stop) of shard ``index`` of ``shards``: whole blocks of ``align`` rows,
    spread as evenly as possible (a shard may be empty when there are fewer blocks)."""
    if shards < 1 or not 0 <= index < shards:
        raise ValueError(f"shard {index} of {shards}: need 0 <= index < shards")
    blocks = math.ceil(n_rows / align) if n_rows else 0
    lo, hi = index * blocks // shards, (index + 1) * blocks // shards
    return min(lo * align, n_rows), min(hi * align, n_rows)


def _array_dirs(root: Path) -> list[Path]:
    """Directories of the Zarr arrays under ``root`` (relative paths)."""
    out = []
    for meta in sorted(root.rglob(META)):
        if json.loads(meta.read_text()).get("node_type") == "array":
            out.append(meta.parent.relative_to(root))
    return out


def _chunk_files(root: Path, array: Path) -> list[Path]:
    return sorted(
        p.relative_to(root) for p in (root / array).rglob("*") if p.is_file() and p.name != META
    )


def _root_attrs(part: Path) -> dict[str, Any]:
    return json.loads((part / META).read_text()).get("attributes", {})


def _check_tiling(parts: Sequence[Path], infos: list[dict]) -> None:
    """Every split's shard ranges must cover [0, n) exactly once, in shard order."""
    count = len(parts)
    problems = []
    indices = sorted(info.get("index", -1) for info in infos)
    if indices != list(range(count)) or any(info.get("of") != count for info in infos):
        problems.append(
            f"shard indices {indices} / counts {[i.get('of') for i in infos]}, "
            f"expected 0..{count - 1} of {count}"
        )
    order = sorted(range(count), key=lambda k: infos[k].get("index", -1))
    splits = {s for info in infos for s in info.get("rows", {})}
    for split in sorted(splits):
        n = infos[0].get("n_rows", {}).get(split)
        edge = 0
        for k in order:
            start, stop = infos[k]["rows"].get(split, (None, None))
            if start != edge:
                problems.append(f"{parts[k]}: split {split} starts at row {start}, expected {edge}")
            edge = stop if stop is not None else edge
        if edge != n:
            problems.append(f"split {split}: shards end at row {edge}, the split has {n} rows")
    if problems:
        raise InputError("shards do not tile the store:\n  - " + "\n  - ".join(problems))


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # cheap: the parts stay intact (they are the rule's inputs)
    except OSError:
        shutil.copy2(src, dest)


def seal_shards(parts: Sequence[PathLike], out_path: PathLike) -> dict[str, Any]:
    """Merge the shard parts of one store into ``out_path`` (atomically) after checking
    them; returns what goes into provenance (shard count, row ranges, chunk files)."""
    import zarr

    parts = [Path(p) for p in parts]
    if not parts:
        raise InputError(f"{out_path}: no shard parts to seal")
    infos = []
    for part in parts:
        if not (part / META).is_file():
            raise InputError(f"{part}: not a Zarr store (no {META}); did its shard job finish?")
        info = _root_attrs(part).get("shard")
        if not isinstance(info, dict):
            raise InputError(f"{part}: not a shard part (root attrs lack 'shard')")
        infos.append(info)
    _check_tiling(parts, infos)
    arrays = _array_dirs(parts[0])
    metas = sorted(p.relative_to(parts[0]) for p in parts[0].rglob(META))
    for part in parts[1:]:
        other = sorted(p.relative_to(part) for p in part.rglob(META))
        same = other == metas and all(
            (part / m).read_bytes() == (parts[0] / m).read_bytes() for m in metas if m != Path(META)
        )
        if not same:
            raise InputError(f"{part}: array layout differs from {parts[0]} (not the same store)")
    n_chunks = 0
    with atomic_path(out_path) as tmp:
        for m in metas:
            _link(parts[0] / m, tmp / m)
        (tmp / META).unlink()
        shutil.copy2(parts[0] / META, tmp / META)  # rewritten below: never edit a link
        owner: dict[Path, Path] = {}
        for part in parts:
            for array in arrays:
                for chunk in _chunk_files(part, array):
                    if chunk in owner:
                        # the image_id arrays are whole-split chunks every shard writes alike
                        if (owner[chunk] / chunk).read_bytes() != (part / chunk).read_bytes():
                            raise InputError(
                                f"{chunk}: written differently by {owner[chunk]} "
                                f"and {part} (shard ranges overlap?)"
                            )
                        continue
                    owner[chunk] = part
                    _link(part / chunk, tmp / chunk)
                    n_chunks += 1
        group = zarr.open_group(tmp, mode="r+")
        attrs = dict(group.attrs)
        attrs.pop("shard")
        group.attrs.clear()
        group.attrs.update(attrs)  # the same root attrs as an unsharded store
    order = sorted(infos, key=lambda i: i["index"])
    return {"shards": len(parts), "shard_rows": [i["rows"] for i in order], "chunk_files": n_chunks}


def shard_attrs(
    index: int, shards: int, rows: dict[str, tuple[int, int]], n_rows: dict[str, int]
) -> dict[str, Any]:
    """The ``shard`` root attribute of a part (what ``seal_shards`` checks)."""
    return {
        "shard": {
            "index": int(index),
            "of": int(shards),
            "rows": {s: [int(a), int(b)] for s, (a, b) in rows.items()},
            "n_rows": {s: int(n) for s, n in n_rows.items()},
        }
    }


def plan_ranges(n_rows: dict[str, int], align: dict[str, int], shards: int, index: int):
    """Shard ``index``'s row range per split (``align[split]`` rows per block) and its
    ``shard`` attrs, for a writer that fills only those rows."""
    ranges = {s: shard_range(n, align[s], shards, index) for s, n in n_rows.items()}
    return ranges, shard_attrs(index, shards, ranges, n_rows)
