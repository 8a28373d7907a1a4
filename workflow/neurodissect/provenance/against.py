"""`neurodissect audit RESULTS --against OTHER`: which artifacts differ between two runs.

The same config and seed on the same platform give the same bytes, so a rerun (on
another machine, or after a change that should not matter) is checked against a
published run artifact by artifact. An artifact is anything with a provenance
sidecar; it is compared by the sha256 of its content, computed afresh on both sides:

- a file: its bytes;
- a folder (Zarr store, CLIP model folder, atlas, raw dataset): every member file's
  relative path and sha256. Snakemake's ``.snakemake_timestamp`` marker is skipped,
  and in each ``zarr.json`` the provenance fields that are volatile by design (host,
  start/end times, timings, git commit: :data:`~neurodissect.provenance.VOLATILE_FIELDS`)
  are dropped before hashing; runs since these fields left the attrs have none to drop.

Not compared: the ``*.prov.json`` sidecars and ``ro-crate-metadata.json`` (provenance
documents, which hold times and hosts on purpose) and files without a sidecar (logs,
benchmarks, Snakemake's metadata).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import write_json
from . import SIDECAR_SUFFIX, SNAKEMAKE_MARKERS, VOLATILE_FIELDS, sha256_file, stable_record
from .sidecars import artifact_of, find_sidecars

# provenance documents written next to the artifacts: volatile by design, never compared
PROVENANCE_DOCUMENTS = frozenset({"ro-crate-metadata.json"})
EXCLUDED = (
    f"*{SIDECAR_SUFFIX} sidecars and {', '.join(sorted(PROVENANCE_DOCUMENTS))} "
    "(provenance: times, hosts); files without a sidecar (logs, benchmarks); in zarr.json "
    f"the provenance fields {', '.join(VOLATILE_FIELDS)}, package.git_commit"
)


def _zarr_json_digest(path: Path) -> str:
    """sha256 of a zarr.json with its provenance attrs' volatile fields dropped."""
    meta = json.loads(path.read_text())
    prov = meta.get("attributes", {}).get("provenance")
    if isinstance(prov, dict):
        meta["attributes"]["provenance"] = stable_record(prov)
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def member_digests(path: Path) -> dict[str, str]:
    """Relative path → content sha256 of every file in a folder (see the module doc)."""
    out = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        if f.name in SNAKEMAKE_MARKERS:
            continue
        rel = f.relative_to(path).as_posix()
        out[rel] = _zarr_json_digest(f) if f.name == "zarr.json" else sha256_file(f)
    return out


def content_digest(path: Path) -> tuple[str, dict[str, str]]:
    """(sha256 of the artifact's content, member digests — empty for a file)."""
    if not path.is_dir():
        return sha256_file(path), {}
    members = member_digests(path)
    h = hashlib.sha256()
    for rel, sha in members.items():
        h.update(rel.encode() + b"\0" + sha.encode() + b"\n")
    return h.hexdigest(), members


def artifacts_under(root: Path) -> dict[str, Path]:
    """Relative path → artifact of every sidecar under ``root`` (provenance documents left out)."""
    out = {}
    for side in find_sidecars(root):
        artifact = artifact_of(side)
        if artifact.name not in PROVENANCE_DOCUMENTS and artifact.exists():
            out[artifact.relative_to(root).as_posix()] = artifact
    return out


@dataclass
class Difference:
    artifact: str
    sha256: str
    other_sha256: str
    members: list[str]  # member files that differ (folders only), sorted

    def line(self) -> str:
        where = ""
        if self.members:
            shown = ", ".join(self.members[:5])
            more = f" and {len(self.members) - 5} more" if len(self.members) > 5 else ""
            where = f" ({len(self.members)} member file(s): {shown}{more})"
        return (
            f"{self.artifact}: differs: sha256 {self.sha256[:12]}… here, "
            f"{self.other_sha256[:12]}… in the other run{where}"
        )


@dataclass
class AgainstReport:
    results_dir: str
    other_dir: str
    compared: list[str] = field(default_factory=list)
    differ: list[Difference] = field(default_factory=list)
    only_here: list[str] = field(default_factory=list)
    only_other: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.differ or self.only_here or self.only_other)

    def lines(self) -> list[str]:
        out = [d.line() for d in self.differ]
        out += [f"{a}: only in {self.results_dir}" for a in self.only_here]
        out += [f"{a}: only in {self.other_dir}" for a in self.only_other]
        return out

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "results_dir": self.results_dir,
            "other_dir": self.other_dir,
            "n_compared": len(self.compared),
            "n_differ": len(self.differ),
            "differ": [d.__dict__ for d in self.differ],
            "only_here": self.only_here,
            "only_other": self.only_other,
            "excluded": EXCLUDED,
            "compared": self.compared,
        }


def _differing_members(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def compare_runs(results_dir: str | os.PathLike, other_dir: str | os.PathLike) -> AgainstReport:
    """Every artifact whose content differs between two results folders, or is in one only."""
    here, there = Path(results_dir), Path(other_dir)
    found = {}
    for d in (here, there):
        if not d.is_dir():
            raise InputError(f"{d}: not a folder")
        found[d] = artifacts_under(d)
        if not found[d]:
            raise InputError(
                f"{d}: no provenance records (*{SIDECAR_SUFFIX}) found — "
                "is this a neurodissect results folder?"
            )
    mine, theirs = found[here], found[there]
    report = AgainstReport(os.fspath(here), os.fspath(there))
    report.only_here = sorted(mine.keys() - theirs.keys())
    report.only_other = sorted(theirs.keys() - mine.keys())
    for rel in sorted(mine.keys() & theirs.keys()):
        report.compared.append(rel)
        (a, a_members), (b, b_members) = content_digest(mine[rel]), content_digest(theirs[rel])
        if a != b:
            members = _differing_members(a_members, b_members)
            report.differ.append(Difference(rel, a, b, members))
    return report


def against_main(args) -> int:
    """CLI entry: one line per differing artifact; exit 0 iff the two runs agree."""
    report = compare_runs(args.results_dir, args.against)
    for line in report.lines():
        print(line)
    n_only = len(report.only_here) + len(report.only_other)
    status = "identical" if report.ok else f"{len(report.differ)} differ, {n_only} in one run only"
    print(f"audit --against: {len(report.compared)} artifacts compared: {status}")
    print(f"not compared: {EXCLUDED}")
    if getattr(args, "json", None):
        write_json(report.to_dict(), args.json)
    return 0 if report.ok else 1
