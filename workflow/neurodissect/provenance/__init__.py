"""Provenance of every artifact: a ``<artifact>.prov.json`` sidecar (and, for
Zarr stores, the same record in the root group's attrs).

The record holds the rule, the params (config subset) that shaped the
artifact, the sha256 of each input artifact, the artifact's own sha256,
package version and git commit, library versions, seed, device and times.
``neurodissect audit`` re-hashes artifacts against these records.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import socket
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..io import PathLike, read_json, write_json
from ..storage import to_logical

SIDECAR_SUFFIX = ".prov.json"
LIBRARIES = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "pyarrow",
    "zarr",
    "scikit-learn",
    "open_clip_torch",
    "spacy",
    "snakemake",
    "matplotlib",
)
_CHUNK = 1 << 20
# Snakemake touches this marker inside directory() outputs after the job: not content
SNAKEMAKE_MARKERS = frozenset({".snakemake_timestamp"})
# Record fields that change from one run to the next (wall-clock times, the host, per-epoch
# timings a job reports under "timing", and the git commit, which moves with every unrelated
# commit while params.code pins the code a rule ran): kept in the sidecar only, never inside
# an artifact, so the same config and seed give the same bytes.
VOLATILE_FIELDS = ("host", "started", "finished", "timing")
VOLATILE_PACKAGE_FIELDS = ("git_commit",)


def sidecar_path(artifact: PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: PathLike) -> str:
    """Digest of a directory: every file's relative path and content, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.name not in SNAKEMAKE_MARKERS)
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def digest(path: PathLike) -> str:
    """sha256 of a file, or the tree digest of a directory."""
    p = Path(path)
    return sha256_tree(p) if p.is_dir() else sha256_file(p)


def recorded_digest(path: PathLike) -> str:
    """The digest an input had when it was built (from its sidecar), else hash it now.

    Downstream records stay cheap for big stores; the audit checks separately
    that each artifact still matches its own sidecar, so the chain is closed.
    """
    side = sidecar_path(path)
    if side.exists():
        try:
            return read_json(side)["sha256"]
        except (KeyError, ValueError):
            pass
    return digest(path)


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the checkout the package runs from (``+dirty`` if modified)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)
    return versions


def current_device() -> str:
    """The device this process computed on, for jobs that do not record theirs:
    'cuda:<i> (<name>)' once CUDA has been used (initialised), else 'cpu' — a CPU job
    on a GPU host is 'cpu', and a job that sees one GPU names that one, not GPU 0's."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_record(
    *,
    rule: str,
    params: dict[str, Any],
    inputs: list[PathLike],
    seed: int | None = None,
    device: str | None = None,
    started: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Provenance record shared by all outputs of one job (without their own digests)."""
    return {
        "rule": rule,
        "params": params,
        # logical paths (results/...), also when Snakemake hands the job storage copies
        "inputs": {to_logical(p): recorded_digest(p) for p in inputs if Path(p).exists()},
        "package": {"name": "neurodissect", "version": __version__, "git_commit": git_commit()},
        "libraries": library_versions(),
        "seed": seed,
        "device": device or current_device(),
        "host": socket.gethostname(),
        "started": started or now(),
        "finished": now(),
        **(extra or {}),
    }


def stable_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without its volatile fields (what may go inside an artifact)."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    if isinstance(out.get("package"), dict):
        package = out["package"].items()
        out["package"] = {k: v for k, v in package if k not in VOLATILE_PACKAGE_FIELDS}
    return out


def write_provenance(artifact: PathLike, record: dict[str, Any]) -> dict[str, Any]:
    """Stamp ``artifact`` with ``record``: Zarr attrs first (so the digest covers them), then
    the sidecar. The attrs get the record less its volatile fields; the sidecar gets it all."""
    artifact = Path(artifact)
    full = {"artifact": to_logical(artifact), **record}
    if artifact.is_dir() and (artifact / "zarr.json").exists():
        import zarr

        zarr.open_group(artifact, mode="r+").attrs["provenance"] = stable_record(full)
    full["sha256"] = digest(artifact)
    write_json(full, sidecar_path(artifact))
    return full


def read_provenance(artifact: PathLike) -> dict[str, Any]:
    side = sidecar_path(artifact)
    if not side.exists():
        raise FileNotFoundError(f"{artifact}: no provenance sidecar {side.name}")
    return read_json(side)
