"""Results in an S3 bucket through Snakemake's storage plugin, against a local S3 server.

A moto server (``ThreadedMotoServer``) runs on 127.0.0.1 on a free port inside this
test process; the workflow reaches it through ``--storage-s3-endpoint-url``, the audit
through ``--endpoint-url`` / ``AWS_ENDPOINT_URL_S3``. Credentials are moto's dummies.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_snakemake, write_config
from neurodissect.provenance import SIDECAR_SUFFIX, read_provenance
from neurodissect.provenance.audit import audit
from neurodissect.provenance.remote import download_prefix, split_url
from neurodissect.runtime import RunContext
from neurodissect.storage import LOCAL_ROOT_ENV, to_local, to_logical
from test_provenance import Named, build_chain

BUCKET = "neurodissect-test"
# the tiny DAG with one dissected layer and no augmented views: every rule still runs, with
# fewer jobs (storage changes nothing in what a second layer or the views do)
STORAGE_CONFIG = {
    "layers": ["fc"],
    "activations": {"augment_views": 0},
    "sae": {"train_splits": ["train"]},
}


@pytest.fixture(scope="module")
def s3():
    """A local S3 server with one bucket; yields (endpoint URL, boto3 client)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in creds.items():
            mp.setenv(key, value)
        mp.delenv(LOCAL_ROOT_ENV, raising=False)
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    server.stop()


def upload_tree(client, folder: Path, prefix: str) -> None:
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(f), BUCKET, f"{prefix}/{f.relative_to(folder).as_posix()}")


# -- logical paths vs local copies ----------------------------------------------------------
def test_paths_map_between_logical_and_local_copies_only_with_storage(monkeypatch):
    monkeypatch.delenv(LOCAL_ROOT_ENV, raising=False)
    assert to_local("results/d/raw") == Path("results/d/raw")
    assert (
        to_logical(".snakemake/storage/s3/b/run/results/x")
        == ".snakemake/storage/s3/b/run/results/x"
    )
    monkeypatch.setenv(LOCAL_ROOT_ENV, ".snakemake/storage/s3/b/run")
    assert to_local("results/d/raw") == Path(".snakemake/storage/s3/b/run/results/d/raw")
    assert to_local("/data/ham10000") == Path("/data/ham10000")  # the user's own folder
    # an already local path is not mapped twice
    assert to_local(".snakemake/storage/s3/b/run/results/x") == Path(
        ".snakemake/storage/s3/b/run/results/x"
    )
    assert to_logical(".snakemake/storage/s3/b/run/results/d/m.pt") == "results/d/m.pt"
    assert to_logical("/elsewhere/raw.csv") == "/elsewhere/raw.csv"


def test_a_job_on_storage_copies_records_logical_paths(tmp_path, monkeypatch):
    """Provenance written by a job that Snakemake handed local copies names the same paths
    as a local run, so the audit resolves them in the bucket."""
    monkeypatch.chdir(tmp_path)
    local = Path(".snakemake/storage/s3/b/run")
    src, out = local / "results/d/in.txt", local / "results/d/out.txt"
    src.parent.mkdir(parents=True)
    src.write_text("in")
    monkeypatch.setenv(LOCAL_ROOT_ENV, str(local))
    with RunContext(
        rule="r", input=Named(src=str(src)), output=Named(out=str(out)), params=Named()
    ):
        out.write_text("out")
    rec = read_provenance(out)
    assert rec["artifact"] == "results/d/out.txt"
    assert list(rec["inputs"]) == ["results/d/in.txt"]


def test_sidecars_declared_as_outputs_get_no_provenance_of_their_own(tmp_path):
    out = tmp_path / "a.json"
    side = str(out) + SIDECAR_SUFFIX
    with RunContext(rule="r", input=Named(), output=Named(out=str(out), side=side), params=Named()):
        out.write_text("{}")
    assert Path(side).exists()
    assert not Path(side + SIDECAR_SUFFIX).exists()


def test_compare_names_runs_from_logical_paths_of_stored_metrics(tmp_path, monkeypatch):
    from neurodissect.evaluate.compare import collect_metrics

    monkeypatch.chdir(tmp_path)
    local = ".snakemake/storage/s3/b/run"
    metrics = Path(local, "results/tiny/resnet18-s0/cbm/metrics.json")
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"cbm_accuracy": 0.5, "split": "test"}')
    monkeypatch.setenv(LOCAL_ROOT_ENV, local)
    long = collect_metrics("results", [str(metrics)])
    assert long[["dataset", "model", "stage", "metric", "value"]].values.tolist() == [
        ["tiny", "resnet18-s0", "cbm", "cbm_accuracy", 0.5]
    ]


# -- the audit reads a bucket ------------------------------------------------------------------
def test_s3_urls_need_a_bucket_and_a_prefix():
    assert split_url("s3://bucket/run/results/") == ("bucket", "run/results")
    with pytest.raises(Exception, match="expected s3://BUCKET/PREFIX/results"):
        split_url("s3://bucket")


def test_audit_reads_a_bucket_and_catches_an_edited_object(s3, tmp_path):
    endpoint, client = s3
    paths = build_chain(tmp_path)
    upload_tree(client, tmp_path, "chain")  # the run: raw.csv beside results/
    url = f"s3://{BUCKET}/chain/results"
    report = audit(url, endpoint_url=endpoint)
    assert report.ok, [f.line() for f in report.findings]
    assert "results/d/m/store.zarr" in report.checked and len(report.checked) == 3

    client.put_object(Bucket=BUCKET, Key="chain/results/d/m/metrics.json", Body=b"{}")
    report = audit(url, endpoint_url=endpoint)
    assert [(f.artifact, f.problem) for f in report.findings] == [
        ("results/d/m/metrics.json", "modified")
    ]
    dest = tmp_path / "copy"
    n_files = sum(p.is_file() for p in paths["results"].rglob("*"))
    assert download_prefix(url, dest, endpoint) == n_files
    assert (dest / "d" / "m" / "metrics.json").read_bytes() == b"{}"


def test_audit_of_an_empty_prefix_is_one_clear_error(s3):
    endpoint, _ = s3
    with pytest.raises(Exception, match="no objects under this prefix"):
        audit(f"s3://{BUCKET}/nothing/results", endpoint_url=endpoint)


# -- the tiny DAG with its results in the bucket -------------------------------------------------
def run_on_s3(workdir: Path, endpoint: str, prefix: str, *args: str):
    return run_snakemake(
        workdir,
        "--default-storage-provider",
        "s3",
        "--default-storage-prefix",
        f"s3://{BUCKET}/{prefix}",
        "--storage-s3-endpoint-url",
        endpoint,
        *args,
        configfile=workdir / "config.yaml",
    )


def test_tiny_dag_on_s3_completes_reruns_nothing_and_audits_from_the_bucket(s3, tmp_path):
    endpoint, client = s3
    write_config(tmp_path / "config.yaml", STORAGE_CONFIG)
    run_on_s3(tmp_path, endpoint, "tiny")

    keys = {
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="tiny/")
        for o in page.get("Contents", ())
    }
    for artifact in (
        "results/tiny/data/manifest.parquet",
        "results/audit.json",
        "results/tiny/resnet18-s0/cbm/metrics.json",
    ):
        assert f"tiny/{artifact}" in keys and f"tiny/{artifact}{SIDECAR_SUFFIX}" in keys
    assert any(k.startswith("tiny/results/tiny/resnet18-s0/activations/fc.zarr/") for k in keys)
    # no artifact is left in the working directory (only the training jobs' emptied
    # resume-checkpoint folders) besides Snakemake's own
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    shutil.rmtree(tmp_path / ".snakemake" / "storage", ignore_errors=True)

    again = run_on_s3(tmp_path, endpoint, "tiny", "-n")
    out = again.stdout + again.stderr
    assert "Nothing to be done" in out, out[-3000:]  # the reasons of what would rerun

    cli = [sys.executable, "-m", "neurodissect.cli", "audit", f"s3://{BUCKET}/tiny/results"]
    ok = subprocess.run([*cli, "--endpoint-url", endpoint], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "raw images checked: OK" in ok.stdout

    # the endpoint may also come from boto3's environment variable
    client.put_object(Bucket=BUCKET, Key="tiny/results/tiny/vocab/concepts.parquet", Body=b"x")
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint}
    bad = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert "results/tiny/vocab/concepts.parquet: modified" in bad.stdout


def test_files_the_config_names_are_read_in_place_not_from_the_bucket(s3, tmp_path):
    """A concept list given by absolute path stays a local input of build_vocabulary (a
    dry run would otherwise stop at a missing s3://.../abs/path object)."""
    endpoint, _ = s3
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("pigment network\nblue-white veil\n")
    write_config(
        tmp_path / "config.yaml", {**STORAGE_CONFIG, "vocab": {"concept_list": str(concepts)}}
    )
    # a missing input (the list looked up in the bucket) fails the dry run
    dry = run_on_s3(tmp_path, endpoint, "dry", "-n")
    inputs = [line for line in (dry.stdout + dry.stderr).splitlines() if "input:" in line]
    assert any(str(concepts) in line for line in inputs)
    assert not any(f"{BUCKET}/dry/{str(concepts).lstrip('/')}" in line for line in inputs)
