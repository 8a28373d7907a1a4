"""Atomic artifact writes and small readers shared by every stage.

Every artifact is written to a temporary sibling and renamed into place, so an
interrupted job never leaves a plausible-looking half artifact behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def _tmp_sibling(dest: Path) -> Path:
    return dest.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{dest.name}")


def remove_path(path: PathLike) -> None:
    """Remove a file or a directory tree if it exists."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def atomic_path(dest: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success.

    Works for files and directories (e.g. Zarr stores). On error the temporary
    is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(dest)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path for {dest}")
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        remove_path(tmp)


def write_json(obj: Any, dest: PathLike) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    # numpy scalars / arrays and paths appear in metrics and provenance
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(df, dest: PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write a DataFrame to parquet atomically; ``metadata`` goes into the schema as JSON."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"neurodissect"] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


def write_history(frame, dest: PathLike, timed: str = "seconds") -> dict[str, list[float]]:
    """Write a per-epoch training history as CSV, without its wall-clock column ``timed``.

    Epoch times differ from run to run; returned as ``{"epoch_seconds": [...]}`` for the
    job's provenance sidecar (its ``timing`` field), so the CSV has the same bytes each run.
    """
    seconds = [float(x) for x in frame[timed]] if timed in frame else []
    with atomic_path(dest) as tmp:
        frame.drop(columns=timed, errors="ignore").to_csv(tmp, index=False)
    return {"epoch_seconds": seconds}


def read_parquet_metadata(path: PathLike) -> dict[str, Any]:
    """The ``neurodissect`` JSON block written by :func:`write_parquet` (empty if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"neurodissect")
    return json.loads(raw) if raw else {}


def save_state_dict(state: dict, dest: PathLike) -> None:
    """``torch.save`` atomically; contents must load with ``weights_only=True``.

    Saved through a file handle: given a path, torch names the zip's root folder after
    the file, and the temporary name is random, so the same state gave different bytes.
    """
    import torch

    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def read_table(path: PathLike, missing: str):
    """``pd.read_parquet`` with both failures as one InputError naming the file; ``missing``
    tells the user what to do when it does not exist."""
    import pandas as pd

    from .errors import InputError

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except Exception as exc:  # pyarrow raises several types for a corrupt / foreign file
        raise InputError(f"{path}: not a readable parquet table ({exc})") from None


def read_weights(path: PathLike, missing: str) -> dict:
    """:func:`load_state_dict` with both failures as one InputError naming the file;
    ``missing`` tells the user what to do when it does not exist."""
    from .errors import InputError

    try:
        return load_state_dict(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def load_state_dict(path: PathLike, map_location: str = "cpu") -> dict:
    """Load a ``.pt`` file safely; a corrupt or foreign file is a clear error naming it."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        raise ValueError(
            f"{path}: not a readable weights-only PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
