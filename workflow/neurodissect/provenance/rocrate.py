"""Export the provenance of a results folder as an RO-Crate (Workflow Run
Crate style), using the ``rocrate`` library (ro-crate-py).

Every artifact with a sidecar becomes a File / Dataset entity (sha256,
format, creation time); every job becomes a CreateAction whose instrument is
the rule (a SoftwareApplication, part of neurodissect at its git commit),
whose object is its inputs and whose result is its outputs, with the params
that shaped it as PropertyValues. Only ``ro-crate-metadata.json`` is written,
next to the artifacts: nothing is copied.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..io import read_json
from . import SIDECAR_SUFFIX
from .sidecars import artifact_of, base_dir, find_sidecars

FORMATS = {
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".png": "image/png",
    ".pt": "application/octet-stream",
    ".npz": "application/octet-stream",
    ".md": "text/markdown",
    ".zarr": "application/x-zarr",
}


def _entity_id(path: Path, root: Path) -> str:
    # inputs outside the crate (raw data) get a relative path that leaves it ("../")
    rel = Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    return rel + ("/" if path.is_dir() else "")


def write_rocrate(results_dir: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """The RO-Crate of every provenance record under ``results_dir``, written to ``dest``
    (default: ``results_dir/ro-crate-metadata.json``)."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    root = Path(results_dir)
    crate = ROCrate(gen_preview=False)
    crate.name = "neurodissect results"
    crate.description = (
        "Artifacts of a neurodissect run with their provenance (rules, params, inputs)."
    )
    entities: dict[str, object] = {}

    def data_entity(path: Path, props: dict | None = None):
        eid = _entity_id(path, root)
        if eid in entities:
            if props:
                entities[eid].properties().update(props)
            return entities[eid]
        base = {"encodingFormat": FORMATS.get(path.suffix, "application/octet-stream")}
        base.update(props or {})
        if path.is_dir():
            ent = crate.add_dataset(source=None, dest_path=eid, properties=base)
        else:
            ent = crate.add_file(source=None, dest_path=eid, properties=base)
        entities[eid] = ent
        return ent

    software: dict[str, object] = {}
    actions: dict[tuple, object] = {}
    for side in find_sidecars(root):
        rec = read_json(side)
        artifact = artifact_of(side)
        if not artifact.exists():
            continue
        out = data_entity(
            artifact, {"sha256": rec.get("sha256"), "dateCreated": rec.get("finished")}
        )
        rule = rec.get("rule", "unknown")
        pkg = rec.get("package", {})
        if rule not in software:
            software[rule] = crate.add(
                ContextEntity(
                    crate,
                    f"#rule-{rule}",
                    properties={
                        "@type": "SoftwareApplication",
                        "name": f"neurodissect rule {rule}",
                        "softwareVersion": pkg.get("version"),
                        "version": pkg.get("git_commit") or pkg.get("version"),
                    },
                )
            )
        job_key = (rule, json.dumps(rec.get("params", {}), sort_keys=True), rec.get("started"))
        if job_key not in actions:
            base = base_dir(artifact, rec.get("artifact", artifact.name))
            inputs = []
            for inp, sha in sorted(rec.get("inputs", {}).items()):
                p = Path(inp) if Path(inp).is_absolute() else base / inp
                inputs.append(
                    data_entity(
                        p,
                        None if p.with_name(p.name + SIDECAR_SUFFIX).exists() else {"sha256": sha},
                    )
                )
            idx = len(actions)
            params = [
                crate.add(
                    ContextEntity(
                        crate,
                        f"#param-{idx}-{k}",
                        properties={
                            "@type": "PropertyValue",
                            "name": k,
                            "value": json.dumps(v, sort_keys=True),
                        },
                    )
                )
                for k, v in sorted(rec.get("params", {}).items())
            ]
            wc = rec.get("params", {}).get("wildcards", {})
            label = " ".join(f"{k}={v}" for k, v in sorted(wc.items()))
            actions[job_key] = crate.add_action(
                software[rule],
                identifier=f"#job-{idx}-{rule}",
                object=inputs,
                result=[],
                properties={
                    "name": f"{rule} {label}".strip(),
                    "startTime": rec.get("started"),
                    "endTime": rec.get("finished"),
                    "agent": {"@id": "#host-" + str(rec.get("host", "unknown"))},
                    "additionalProperty": [{"@id": p.id} for p in params],
                    "description": f"seed={rec.get('seed')} device={rec.get('device')}",
                },
            )
        actions[job_key].append_to("result", out)
    dest = Path(dest) if dest is not None else root / "ro-crate-metadata.json"
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".tmp-rocrate-") as tmp:
        crate.metadata.write(tmp)
        os.replace(Path(tmp) / "ro-crate-metadata.json", dest)
    return dest
