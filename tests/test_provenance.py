"""Provenance records, the audit and the RO-Crate export.

Hand-made chains check each audit finding exactly; the real tiny run checks
that every artifact the DAG builds carries provenance and that the audit
catches an edited, a deleted and an upstream-changed file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from conftest import clone_run, run_snakemake
from neurodissect.activations.store import StoreWriter
from neurodissect.io import atomic_path, read_json, write_json, write_parquet
from neurodissect.provenance import digest, read_provenance, sha256_file, sidecar_path
from neurodissect.provenance.audit import audit
from neurodissect.provenance.rocrate import write_rocrate
from neurodissect.runtime import RunContext


class Named(list):
    """The shape of snakemake's Namedlist that RunContext reads (items + attributes)."""

    def __init__(self, **named):
        super().__init__(named.values())
        self._named = named

    def items(self):
        return self._named.items()

    def __getattr__(self, key):
        try:
            return self._named[key]
        except KeyError:
            raise AttributeError(key) from None


def run_job(rule, inputs, outputs, params, body, seed=None):
    with RunContext(
        rule=rule,
        input=Named(**inputs),
        output=Named(**outputs),
        params=Named(**params),
        wildcards={"dataset": "d"},
        seed=seed,
    ):
        body()


def build_chain(root: Path) -> dict[str, Path]:
    """raw.csv -> table.parquet -> store.zarr + metrics.json, each built by a RunContext job."""
    raw = root / "raw.csv"
    raw.write_text("id,x\na,1\nb,2\n")
    res = root / "results" / "d"
    table, store, metrics = (
        res / "table.parquet",
        res / "m" / "store.zarr",
        res / "m" / "metrics.json",
    )

    def make_table():
        write_parquet(pd.read_csv(raw), table)

    def make_store():
        df = pd.read_parquet(table)
        with StoreWriter(store, n_units=1, attrs={"kind": "activations"}) as w:
            w.begin_split("train", df["id"])
            w.append("train", df[["x"]].to_numpy(np.float32))
        write_json({"mean": float(df["x"].mean()), "split": "train"}, metrics)

    import os

    cwd = os.getcwd()
    os.chdir(root)  # rules run in the workflow's working directory with relative paths
    try:
        run_job(
            "prepare_data",
            {"raw": "raw.csv"},
            {"table": "results/d/table.parquet"},
            {"cfg": {"a": 1}},
            make_table,
        )
        run_job(
            "extract_activations",
            {"table": "results/d/table.parquet"},
            {"store": "results/d/m/store.zarr", "metrics": "results/d/m/metrics.json"},
            {"cfg": {"b": [1, 2]}, "code": "abc"},
            make_store,
            seed=7,
        )
    finally:
        os.chdir(cwd)
    return {
        "raw": raw,
        "table": table,
        "store": store,
        "metrics": metrics,
        "results": root / "results",
    }


def test_job_provenance_records_rule_params_inputs_and_environment(tmp_path):
    paths = build_chain(tmp_path)
    rec = read_provenance(paths["store"])
    assert rec["rule"] == "extract_activations"
    assert rec["params"]["cfg"] == {"b": [1, 2]} and rec["params"]["code"] == "abc"
    assert rec["params"]["wildcards"] == {"dataset": "d"}
    assert rec["inputs"] == {"results/d/table.parquet": read_provenance(paths["table"])["sha256"]}
    assert rec["seed"] == 7 and rec["device"] == "cpu"
    assert rec["package"]["name"] == "neurodissect" and rec["package"]["version"]
    assert {"python", "numpy", "zarr", "pandas"} <= set(rec["libraries"])
    assert rec["started"] <= rec["finished"]
    # the raw input has no sidecar: its content hash is recorded
    assert read_provenance(paths["table"])["inputs"]["raw.csv"] == sha256_file(paths["raw"])
    # Zarr stores carry the same record in their attrs (the digest covers them)
    attrs = dict(zarr.open_group(paths["store"], mode="r").attrs)
    assert attrs["provenance"]["rule"] == "extract_activations"
    assert attrs["kind"] == "activations"


def test_failed_job_leaves_no_artifact_and_no_provenance(tmp_path):
    dest = tmp_path / "out.parquet"

    def body():
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        run_job("x", {}, {"out": str(dest)}, {}, body)
    assert not dest.exists() and not sidecar_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_directory_digest_ignores_snakemakes_timestamp_marker_but_not_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"abc")
    before = digest(tmp_path)
    (tmp_path / ".snakemake_timestamp").touch()  # snakemake adds it to directory() outputs
    assert digest(tmp_path) == before
    (tmp_path / "sub" / "a.bin").write_bytes(b"abd")
    assert digest(tmp_path) != before


def test_audit_passes_on_a_consistent_chain(tmp_path):
    paths = build_chain(tmp_path)
    report = audit(paths["results"])
    assert report.ok, [f.line() for f in report.findings]
    assert len(report.checked) == 3


def test_audit_names_an_edited_artifact(tmp_path):
    paths = build_chain(tmp_path)
    paths["metrics"].write_text('{"mean": 99}')
    findings = audit(paths["results"]).findings
    assert [(f.artifact, f.problem) for f in findings] == [("results/d/m/metrics.json", "modified")]


def test_audit_names_a_deleted_artifact_and_its_orphaned_consumers(tmp_path):
    paths = build_chain(tmp_path)
    paths["table"].unlink()
    got = {(f.artifact, f.problem) for f in audit(paths["results"]).findings}
    assert got == {
        ("results/d/table.parquet", "missing"),
        ("results/d/m/store.zarr", "missing-input"),
        ("results/d/m/metrics.json", "missing-input"),
    }


def test_audit_names_artifacts_built_from_an_input_that_changed_since(tmp_path):
    paths = build_chain(tmp_path)
    paths["raw"].write_text("id,x\na,1\nb,3\n")  # raw data changed after the table was built
    findings = audit(paths["results"]).findings
    assert [(f.artifact, f.problem) for f in findings] == [
        ("results/d/table.parquet", "stale-input")
    ]
    assert "raw.csv" in findings[0].detail


def test_audit_cli_exit_codes_and_messages(tmp_path):
    paths = build_chain(tmp_path)
    cli = [sys.executable, "-m", "neurodissect.cli", "audit"]
    ok = subprocess.run([*cli, str(paths["results"])], capture_output=True, text=True)
    assert ok.returncode == 0 and "3 artifacts" in ok.stdout and "OK" in ok.stdout
    paths["metrics"].write_text("{}")
    bad = subprocess.run([*cli, str(paths["results"])], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith("results/d/m/metrics.json: modified")
    empty = tmp_path / "empty"
    empty.mkdir()
    none = subprocess.run([*cli, str(empty)], capture_output=True, text=True)
    assert none.returncode == 1 and "no provenance records" in none.stderr
    assert "Traceback" not in none.stderr


def test_rocrate_lists_artifacts_with_hashes_and_one_action_per_job(tmp_path):
    paths = build_chain(tmp_path)
    meta = write_rocrate(paths["results"])
    graph = {e["@id"]: e for e in json.loads(meta.read_text())["@graph"]}
    table = graph["d/table.parquet"]
    assert table["@type"] == "File" and table["sha256"] == read_provenance(paths["table"])["sha256"]
    assert graph["d/m/store.zarr/"]["@type"] == "Dataset"
    actions = [e for e in graph.values() if e.get("@type") == "CreateAction"]
    assert sorted(a["instrument"]["@id"] for a in actions) == [
        "#rule-extract_activations",
        "#rule-prepare_data",
    ]
    extract = next(a for a in actions if a["instrument"]["@id"] == "#rule-extract_activations")
    assert {r["@id"] for r in extract["result"]} == {"d/m/store.zarr/", "d/m/metrics.json"}
    assert extract["object"] == [{"@id": "d/table.parquet"}]
    prepare = next(a for a in actions if a["instrument"]["@id"] == "#rule-prepare_data")
    assert prepare["object"] == [{"@id": "../raw.csv"}]  # raw data outside the crate


# -- the real DAG -------------------------------------------------------------


def _artifacts(results: Path) -> list[Path]:
    """Everything a rule wrote except logs, benchmarks and the sidecars themselves."""
    skip = ("logs", "benchmarks", "raw")
    out = []
    for p in sorted(results.rglob("*")):
        rel = p.relative_to(results).parts
        if any(s in rel for s in skip) or p.name.endswith(".prov.json") or p.name.startswith("."):
            continue
        if any(part.endswith(".zarr") or part == "model" for part in rel[:-1]):
            continue  # files inside a store / open_clip folder belong to that artifact
        if any(sidecar_path(results.joinpath(*rel[:i])).exists() for i in range(1, len(rel))):
            continue  # inside a directory artifact with its own record (a figure folder)
        folder_artifact = p.name.endswith(".zarr") or p.name == "model" or sidecar_path(p).exists()
        if ".resume" in rel or (p.is_dir() and not folder_artifact):
            continue
        out.append(p)
    return out


def test_every_artifact_of_a_real_run_has_provenance(tiny_run):
    results = tiny_run / "results"
    missing = [
        str(p.relative_to(tiny_run)) for p in _artifacts(results) if not sidecar_path(p).exists()
    ]
    assert not missing, f"artifacts without provenance: {missing}"
    assert read_json(results / "audit.json")["ok"] is True


def test_audit_catches_tampering_on_a_real_run(tiny_run, tmp_path):
    run = clone_run(tiny_run, tmp_path / "run")
    results = run / "results"
    assert audit(results).ok
    manifest = results / "tiny" / "data" / "manifest.parquet"
    metrics = next(results.rglob("opaque/metrics.json"))
    # 1. edit an artifact
    metrics.write_text(metrics.read_text().replace("0", "1", 1))
    # 2. delete one
    concepts = next(results.rglob("vocab/concepts.parquet"))
    concepts.unlink()
    # 3. change an upstream input: one raw image
    m = pd.read_parquet(manifest)
    img = results / "tiny" / "raw" / m["path"].iloc[0]
    img.write_bytes(img.read_bytes() + b"\0")
    problems = {(f.artifact, f.problem) for f in audit(results).findings}
    rel = lambda p: str(p.relative_to(run))  # noqa: E731
    assert (rel(metrics), "modified") in problems
    assert (rel(concepts), "missing") in problems
    assert (rel(manifest), "image") in problems
    proc = subprocess.run(
        [sys.executable, "-m", "neurodissect.cli", "audit", str(results)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    for artifact, _ in [(rel(metrics), 0), (rel(concepts), 0), (rel(manifest), 0)]:
        assert artifact in proc.stdout


def test_audit_names_artifacts_built_before_their_input_was_rebuilt(tiny_run, tmp_path):
    """A raw image changes and only prepare_data is rerun: everything downstream is stale."""
    run = clone_run(tiny_run, tmp_path / "run")
    results = run / "results"
    manifest = results / "tiny" / "data" / "manifest.parquet"
    img = results / "tiny" / "raw" / pd.read_parquet(manifest)["path"].iloc[0]
    img.write_bytes(img.read_bytes() + b"\0")
    run_snakemake(
        run, "--forcerun", "prepare_data", "--until", "prepare_data", configfile=run / "config.yaml"
    )
    findings = audit(results).findings
    stale = {f.artifact for f in findings if f.problem == "stale-input"}
    assert any("opaque/model.pt" in a for a in stale), findings
    assert any("vocab/concepts.parquet" in a for a in stale), findings
    assert not any(f.artifact.endswith("manifest.parquet") for f in findings), findings
