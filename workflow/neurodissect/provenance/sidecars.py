"""Finding sidecars under a results folder and the artifacts they describe.

Shared by the audit, the RO-Crate writer and ``audit --against`` (kept out of audit.py so
that none of them imports another's private names).
"""

from __future__ import annotations

from pathlib import Path

from . import SIDECAR_SUFFIX


def find_sidecars(results_dir: Path) -> list[Path]:
    """Every ``*.prov.json`` under ``results_dir``, sorted; temporaries of a job left out."""
    return sorted(p for p in results_dir.rglob(f"*{SIDECAR_SUFFIX}") if ".tmp-" not in p.name)


def artifact_of(sidecar: Path) -> Path:
    """The artifact a sidecar describes (its path minus the suffix)."""
    return sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])


def base_dir(artifact: Path, recorded: str) -> Path:
    """The workflow's working directory: ``artifact`` minus its recorded relative path."""
    rec = Path(recorded)
    if rec.is_absolute():
        return Path("/")
    parts = len(rec.parts)
    resolved = artifact.resolve()
    if tuple(resolved.parts[-parts:]) == rec.parts:
        return Path(*resolved.parts[:-parts]) if len(resolved.parts) > parts else Path("/")
    return resolved.parent
