"""Results in object storage: logical workflow paths vs Snakemake's local copies.

With ``--default-storage-provider s3`` Snakemake hands a job the *local copy* of
each input and output (``.snakemake/storage/s3/<bucket>/<prefix>/results/...``),
while the workflow's own paths (a manifest's image root, provenance records) are
*logical*: ``results/...`` relative to the run, as in a local run. The workflow
puts the local-copy folder of its storage prefix in ``NEURODISSECT_STORAGE_LOCAL_ROOT``
(unset without storage), and these two functions translate, so provenance and
manifests hold the same paths whether a run lives on disk or in a bucket.

Light on purpose (no boto3): the Snakefile and every job import it.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_ROOT_ENV = "NEURODISSECT_STORAGE_LOCAL_ROOT"


def local_root() -> str | None:
    """The folder holding the local copies of the storage prefix, or None (no storage)."""
    return os.environ.get(LOCAL_ROOT_ENV) or None


def to_local(path: str | os.PathLike) -> Path:
    """Where a logical path's file is in this job: under the local root when storage is
    on and the path is relative (absolute paths are the user's own files, left as given)."""
    p = Path(path)
    root = local_root()
    if root is None or p.is_absolute() or _under(os.fspath(p), root):
        return p
    return Path(root) / p


def to_logical(path: str | os.PathLike) -> str:
    """The logical path of a job's file: its local copy's path minus the local root."""
    s = os.path.normpath(os.fspath(path))
    root = local_root()
    if root is not None and _under(s, root):
        return os.path.relpath(s, os.path.normpath(root))
    return os.fspath(path)


def _under(path: str, root: str) -> bool:
    root = os.path.normpath(root)
    return os.path.normpath(path).startswith(root + os.sep)
