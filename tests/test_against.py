"""Byte-reproducible artifacts and `neurodissect audit RESULTS --against OTHER`.

The writers are checked directly (the same content saved twice, at different
times and under different temporary names, gives the same bytes); the real tiny
DAG's rules are rerun on a copy and every artifact must come out byte-identical,
which `--against` confirms, while a deliberately changed artifact is reported.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from conftest import clone_run, job_names, run_snakemake
from neurodissect.activations.store import StoreWriter
from neurodissect.io import load_state_dict, save_state_dict, write_history, write_json
from neurodissect.provenance import VOLATILE_FIELDS, digest, read_provenance, write_provenance
from neurodissect.provenance.against import compare_runs

CLI = [sys.executable, "-m", "neurodissect.cli", "audit"]


def test_state_dicts_saved_twice_are_the_same_bytes_and_load_weights_only(tmp_path):
    state = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(4), "epoch": 3}
    save_state_dict(state, tmp_path / "a.pt")
    save_state_dict(state, tmp_path / "b" / "model.pt")  # another name, another temp name
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    loaded = load_state_dict(tmp_path / "a.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 3


def test_history_csv_leaves_epoch_times_to_the_sidecar(tmp_path):
    frame = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.25], "seconds": [1.5, 2.0]})
    timing = write_history(frame, tmp_path / "a.csv")
    assert timing == {"epoch_seconds": [1.5, 2.0]}
    write_history(frame.assign(seconds=[9.0, 8.0]), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert list(pd.read_csv(tmp_path / "a.csv").columns) == ["epoch", "train_loss"]


def _record(host: str, started: str) -> dict:
    return {
        "rule": "extract_activations",
        "params": {"cfg": {"a": 1}},
        "inputs": {},
        "package": {"name": "neurodissect", "version": "1", "git_commit": f"{host}-commit"},
        "seed": 0,
        "device": "cpu",
        "host": host,
        "started": started,
        "finished": started,
        "timing": {"epoch_seconds": [float(len(host))]},
    }


def _store(path: Path) -> Path:
    with StoreWriter(path, n_units=2, attrs={"kind": "activations"}) as w:
        w.begin_split("train", ["a", "b", "c"])
        w.append("train", np.arange(6, dtype=np.float32).reshape(3, 2))
    return path


def test_zarr_attrs_hold_no_volatile_provenance_so_restamped_stores_are_identical(tmp_path):
    a, b = tmp_path / "a" / "acts.zarr", tmp_path / "b" / "acts.zarr"
    for store, host in ((a, "host-one"), (b, "host-two")):
        store.parent.mkdir()
        with contextlib.chdir(store.parent):  # rules record paths relative to the workdir
            write_provenance(_store(Path(store.name)), _record(host, f"2026-0{len(host)}-01"))
    attrs = dict(zarr.open_group(a, mode="r").attrs)["provenance"]
    assert not set(VOLATILE_FIELDS) & set(attrs) and "git_commit" not in attrs["package"]
    assert attrs["rule"] == "extract_activations" and attrs["params"] == {"cfg": {"a": 1}}
    # the sidecar keeps everything, with the (now stable) digest of the store
    side = read_provenance(a)
    assert side["host"] == "host-one" and side["timing"] == {"epoch_seconds": [8.0]}
    assert side["package"]["git_commit"] == "host-one-commit"
    assert side["sha256"] == digest(a) == digest(b) == read_provenance(b)["sha256"]


def _run(root: Path, value: float, host: str) -> Path:
    """A results folder with a stamped parquet, JSON, .pt and Zarr store."""
    root.mkdir()
    with contextlib.chdir(root):  # rules record paths relative to the workdir
        _write_run(Path("results/d"), value, host)
    return root / "results"


def _write_run(res: Path, value: float, host: str) -> None:
    res.mkdir(parents=True)
    rec = _record(host, f"2026-01-0{len(host) % 9 + 1}T00:00:00+00:00")
    pd.DataFrame({"x": [1.0, value]}).to_parquet(res / "table.parquet")
    write_json({"mean": value, "split": "test"}, res / "metrics.json")
    save_state_dict({"w": torch.full((2,), value)}, res / "model.pt")
    _store(res / "acts.zarr")
    for name in ("table.parquet", "metrics.json", "model.pt", "acts.zarr"):
        write_provenance(res / name, rec)
    write_json({"started": host}, res.parent / "ro-crate-metadata.json")  # never compared
    write_provenance(res.parent / "ro-crate-metadata.json", rec)


def test_against_finds_two_runs_identical_despite_times_and_hosts(tmp_path):
    a, b = _run(tmp_path / "a", 2.0, "host-one"), _run(tmp_path / "b", 2.0, "host-three")
    assert json.loads((a / "d" / "metrics.json.prov.json").read_text())["host"] == "host-one"
    report = compare_runs(a, b)
    assert report.ok and report.lines() == []
    assert report.compared == [
        "d/acts.zarr",
        "d/metrics.json",
        "d/model.pt",
        "d/table.parquet",
    ]


def test_against_names_each_changed_and_one_sided_artifact(tmp_path):
    a, b = _run(tmp_path / "a", 2.0, "host-one"), _run(tmp_path / "b", 2.0, "host-one")
    write_json({"mean": 2.5, "split": "test"}, b / "d" / "metrics.json")
    zarr.open_group(b / "d" / "acts.zarr", mode="r+")["train/acts"][0, 0] = 42.0
    (a / "d" / "model.pt").unlink()  # its sidecar stays: not an artifact of run a any more
    extra = b / "d" / "extra.json"
    write_json({"n": 1}, extra)
    write_provenance(extra, _record("host-one", "2026-01-01T00:00:00+00:00"))
    report = compare_runs(a, b)
    assert [d.artifact for d in report.differ] == ["d/acts.zarr", "d/metrics.json"]
    assert report.differ[0].members == ["train/acts/c/0/0"]  # the chunk, not the metadata
    assert report.only_here == [] and report.only_other == ["d/extra.json", "d/model.pt"]

    proc = subprocess.run(
        [*CLI, str(a), "--against", str(b), "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("d/acts.zarr: differs: sha256 ")
    assert lines[1].startswith("d/metrics.json: differs")
    assert lines[2] == f"d/extra.json: only in {b}"
    assert "3 artifacts compared: 2 differ, 2 in one run only" in proc.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["ok"] is False and out["n_differ"] == 2 and out["only_other"][1] == "d/model.pt"
    assert "ro-crate-metadata.json" in out["excluded"]


def test_against_cli_exit_zero_on_identical_runs_and_clear_error_on_a_non_run(tmp_path):
    a, b = _run(tmp_path / "a", 1.0, "x"), _run(tmp_path / "b", 1.0, "y")
    ok = subprocess.run([*CLI, str(a), "--against", str(b)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 artifacts compared: identical" in ok.stdout
    (tmp_path / "empty").mkdir()
    bad = subprocess.run(
        [*CLI, str(a), "--against", str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "no provenance records" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- the real DAG -------------------------------------------------------------

# rules whose rerun writes every kind of artifact: .pt (train_sae), CSV (its history),
# Zarr (encode_latents, train_cavs, build_cbm), parquet (select_exemplars, name_concepts,
# select_concepts, evaluate_cbm), .npz (build_cbm), JSON and PNG figures (evaluate_cbm)
RERUN = ("train_sae", "encode_latents", "train_cavs", "build_cbm", "evaluate_cbm")


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a run except logs, benchmarks, sidecars and Snakemake's own state."""
    skip = ("logs", "benchmarks", ".snakemake")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not any(s in p.relative_to(root).parts for s in skip)
        and not p.name.endswith(".prov.json")
        and p.name not in (".snakemake_timestamp", "ro-crate-metadata.json")
    }


def test_rerunning_rules_of_the_tiny_dag_gives_the_same_bytes(tiny_run, tmp_path):
    run = clone_run(tiny_run, tmp_path / "run")
    model_dir = "results/tiny/resnet18-s0"
    target = f"{model_dir}/cbm/metrics.json"
    before = _files(run / "results")
    proc = run_snakemake(run, target, "--forcerun", *RERUN, configfile=run / "config.yaml")
    ran = {job.split(":")[0] for job in job_names(proc.stdout + proc.stderr)}
    assert set(RERUN) <= ran, ran
    after = _files(run / "results")
    assert before.keys() == after.keys()
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == [], changed
    sae = f"{model_dir}/sae/sae.pt"
    assert (run / sae).stat().st_mtime > (tiny_run / sae).stat().st_mtime  # really rewritten
    report = compare_runs(run / "results", tiny_run / "results")
    assert report.ok, report.lines()

    # a deliberately changed artifact is named, and only it
    scores = run / model_dir / "cbm" / "scores.zarr"
    acts = zarr.open_group(scores, mode="r+")["test/acts"]
    acts[0, 0] = acts[0, 0] + 1
    proc = subprocess.run(
        [*CLI, str(run / "results"), "--against", str(tiny_run / "results")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert [line.split(":")[0] for line in proc.stdout.splitlines()[:-2]] == [
        "tiny/resnet18-s0/cbm/scores.zarr"
    ]
