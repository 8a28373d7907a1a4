"""`neurodissect audit RESULTS_DIR`: re-check every artifact against its provenance.

For every ``*.prov.json`` sidecar under the folder:

1. the artifact still exists and its sha256 equals the recorded one (else it was
   deleted or edited after it was built);
2. every recorded input still exists and is the version the artifact was built
   from: its own sidecar's sha256 (or, for raw inputs without provenance, its
   current hash) equals the digest recorded in the artifact's provenance;
3. for manifests, each raw image's bytes still hash to the manifest's sha256
   column, closing the chain back to the raw data (``--skip-images`` skips it).

Paths in a record are relative to the directory the workflow ran in; that base
is recovered from where the sidecar sits, so a results folder can be moved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import read_json, write_json
from . import SIDECAR_SUFFIX, digest, sha256_file
from .remote import is_remote, local_results
from .sidecars import artifact_of, base_dir, find_sidecars

log_prefix = "audit"


@dataclass
class Finding:
    artifact: str
    problem: str  # missing | modified | stale-input | missing-input | image | unreadable
    detail: str

    def line(self) -> str:
        return f"{self.artifact}: {self.problem}: {self.detail}"


@dataclass
class AuditReport:
    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    images_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "n_artifacts": len(self.checked),
            "n_images_checked": self.images_checked,
            "problems": [f.__dict__ for f in self.findings],
            "artifacts": self.checked,
        }


def _current_input_digest(path: Path) -> str:
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if side.exists():
        return read_json(side).get("sha256", "")
    return digest(path)


def _check_images(manifest: Path, report: AuditReport, rel: str) -> None:
    from ..data.manifest import read_manifest

    m = read_manifest(manifest)
    base = base_dir(manifest, rel)
    logical = Path(m.meta["root"])  # as recorded (m.root is where a running job reads it)
    root = logical if logical.is_absolute() else base / logical
    bad = []
    for image_id, path, sha in zip(m.df["image_id"], m.df["path"], m.df["sha256"], strict=True):
        f = root / path
        if not f.exists():
            bad.append(f"{image_id} ({f}) missing")
        elif sha256_file(f) != sha:
            bad.append(f"{image_id} ({f}) changed")
        report.images_checked += 1
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        report.findings.append(Finding(rel, "image", f"{len(bad)} raw image(s) differ: {shown}"))


def audit(
    results_dir: str | os.PathLike, check_images: bool = True, endpoint_url: str | None = None
) -> AuditReport:
    """Audit a local results folder or an ``s3://BUCKET/RUN/results`` URL (read through
    a temporary copy, see :mod:`.remote`; ``endpoint_url`` for S3-compatible servers)."""
    if is_remote(results_dir):
        with local_results(results_dir, endpoint_url) as local:
            return audit(local, check_images)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: not a folder")
    sidecars = find_sidecars(results_dir)
    if not sidecars:
        raise InputError(
            f"{results_dir}: no provenance records (*{SIDECAR_SUFFIX}) found — "
            "is this a neurodissect results folder? Run the workflow first."
        )
    report = AuditReport()
    for side in sidecars:
        artifact = artifact_of(side)
        try:
            rec = read_json(side)
        except ValueError as exc:
            report.findings.append(
                Finding(str(side), "unreadable", f"provenance is not JSON ({exc})")
            )
            continue
        rel = rec.get("artifact", artifact.name)
        report.checked.append(rel)
        if not artifact.exists():
            report.findings.append(Finding(rel, "missing", "artifact deleted after it was built"))
            continue
        now = digest(artifact)
        if now != rec.get("sha256"):
            report.findings.append(
                Finding(
                    rel,
                    "modified",
                    f"sha256 is {now[:12]}…, provenance recorded {str(rec.get('sha256'))[:12]}…",
                )
            )
        base = base_dir(artifact, rel)
        for inp, recorded in sorted(rec.get("inputs", {}).items()):
            path = Path(inp) if Path(inp).is_absolute() else base / inp
            if not path.exists():
                report.findings.append(
                    Finding(rel, "missing-input", f"input {inp} no longer exists")
                )
                continue
            current = _current_input_digest(path)
            if current != recorded:
                report.findings.append(
                    Finding(
                        rel,
                        "stale-input",
                        f"built from {inp} sha256 {recorded[:12]}…, which is now {current[:12]}…",
                    )
                )
        if (
            check_images
            and rec.get("rule") == "prepare_data"
            and artifact.name == "manifest.parquet"
        ):
            _check_images(artifact, report, rel)
    return report


def audit_main(args) -> int:
    """CLI entry: print one line per problem; exit 0 iff everything agrees."""
    endpoint = getattr(args, "endpoint_url", None)
    if getattr(args, "rocrate", False) and is_remote(args.results_dir):
        raise InputError(
            "--rocrate writes into the results folder, which is a bucket here: the "
            "workflow's audit rule writes results/ro-crate-metadata.json there"
        )
    report = audit(
        args.results_dir,
        check_images=not getattr(args, "skip_images", False),
        endpoint_url=endpoint,
    )
    for f in report.findings:
        print(f.line())
    status = "OK" if report.ok else f"{len(report.findings)} problem(s)"
    print(
        f"audit: {len(report.checked)} artifacts, {report.images_checked} raw images checked: {status}"
    )
    if getattr(args, "json", None):
        write_json(report.to_dict(), args.json)
    if getattr(args, "rocrate", False):
        from .rocrate import write_rocrate

        print(f"RO-Crate metadata: {write_rocrate(args.results_dir)}")
    return 0 if report.ok else 1
