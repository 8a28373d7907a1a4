"""The DAG with the real snakemake: a run on a tiny config, then a dry run with nothing
to do; the synthetic chest radiograph example; rerun scope of the data rules."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from conftest import REPO, clone_run, run_snakemake, write_config
from neurodissect.data.manifest import read_manifest

DATA_OUTPUTS = (
    "manifest.parquet",
    "boxes.parquet",
    "concepts_gt.parquet",
    "concepts_gt.json",
    "skipped.parquet",
    "overview.png",
)


def planned_rules(proc) -> set[str]:
    """Rule names of the jobs a dry run plans (from its job table)."""
    text = proc.stdout + proc.stderr
    return {
        line.split()[0]
        for line in text.splitlines()
        if line.strip() and line.split()[0] in KNOWN_RULES and line.split()[-1].isdigit()
    }


KNOWN_RULES = {"synthesize_data", "prepare_data", "dataset_overview"}


def run_targets(workdir, *args, configfile):
    """run_snakemake puts --configfile before the args: start them with a flag (-p, which
    changes nothing here) so the targets are not read as more config files."""
    return run_snakemake(workdir, "-p", *args, configfile=configfile)


def test_whole_dag_runs_and_a_second_dry_run_has_nothing_to_do(tiny_run):
    """tiny_run ran `snakemake` (rule all) on TINY_CONFIG; whatever stages exist by now."""
    data = tiny_run / "results" / "tiny" / "data"
    for name in DATA_OUTPUTS:
        assert (data / name).exists(), name
        assert (data / f"{name}.prov.json").exists(), name  # provenance of every output
    assert (tiny_run / "results" / "tiny" / "raw" / "dataset_card.md").exists()
    m = read_manifest(data / "manifest.parquet")
    assert len(m) == 240 and set(m.df["split"]) == {"train", "val", "test"}
    prov = json.loads((data / "manifest.parquet.prov.json").read_text())
    assert prov["rule"] == "prepare_data"
    again = run_snakemake(tiny_run, "-n", configfile=tiny_run / "config.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_synthcxr_example_config_prepares_boxes_and_reruns_only_what_changed(tmp_path):
    base = yaml.safe_load((REPO / "config" / "examples" / "synthcxr.yaml").read_text())
    changes = {"datasets": {"synthcxr": {"synth": {"n": 60, "size": 32}}}}
    cfg = write_config(tmp_path / "config.yaml", changes, base=base)
    target = "results/synthcxr/data/overview.png"
    run_targets(tmp_path, target, configfile=cfg)

    data = tmp_path / "results" / "synthcxr" / "data"
    m = read_manifest(data / "manifest.parquet")
    assert m.multilabel and len(m) == 60 and m.meta["root"] == "results/synthcxr/raw"
    boxes = pd.read_parquet(data / "boxes.parquet")
    assert len(boxes) > 0 and set(boxes["image_id"]) <= set(m.df["image_id"])
    assert (data / "overview.png").stat().st_size > 10_000

    assert "Nothing to be done" in run_targets(tmp_path, target, "-n", configfile=cfg).stdout
    # a split option reruns the preparation, not the generator ...
    resplit = write_config(
        tmp_path / "resplit.yaml", {**changes, "data": {"split_seed": 1}}, base=base
    )
    plan = planned_rules(run_targets(tmp_path, target, "-n", configfile=resplit))
    assert plan == {"prepare_data", "dataset_overview"}
    # ... a generator option regenerates the data
    reseed = write_config(
        tmp_path / "reseed.yaml",
        {"datasets": {"synthcxr": {"synth": {"n": 60, "size": 32, "seed": 1}}}},
        base=base,
    )
    plan = planned_rules(run_targets(tmp_path, target, "-n", configfile=reseed))
    assert plan == {"synthesize_data", "prepare_data", "dataset_overview"}


def test_report_includes_the_overview_figure(tmp_path):
    cfg = write_config(tmp_path / "config.yaml")
    target = "results/tiny/data/overview.png"
    run_targets(tmp_path, target, configfile=cfg)
    run_targets(tmp_path, target, "--report", str(tmp_path / "report.zip"), configfile=cfg)
    import zipfile

    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        names = z.namelist()
    assert any(n.endswith("overview.png") for n in names), names[:20]


def test_report_of_the_whole_run_holds_every_stage_figure(tiny_run, tmp_path):
    """`snakemake --report` on the finished tiny run (offline, nothing rerun): one entry per
    figure of every stage, each with its caption."""
    import zipfile

    run = clone_run(tiny_run, tmp_path / "run")
    report = tmp_path / "report.zip"
    run_snakemake(run, "--report", str(report), configfile=run / "config.yaml")
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
    figures = {n.rsplit("/", 1)[-1] for n in names if n.endswith(".png")}
    # one line per stage, in pipeline order
    stems = """overview learning_curve training exemplars concepts sae_training named_concepts
        cbm_class_concepts cbm_explanations cbm_concept_scores summary comparison"""
    expected = {f"{stem}.png" for stem in stems.split()}
    assert expected <= figures, sorted(expected - figures)


def test_used_as_a_snakemake_module_from_another_workflow(tmp_path):
    """docs/running.md "Using neurodissect as a Snakemake module": an outer Snakefile imports the
    workflow with its own config and prefixed rule names, and runs it through prepare_data."""
    import subprocess
    import sys

    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "Snakefile").write_text(f"""
configfile: "config/config.yaml"

module neurodissect:
    snakefile: "{REPO / "Snakefile"}"
    config: config

use rule * from neurodissect as nd_*
""")
    (outer / "config").mkdir()
    write_config(
        outer / "config" / "config.yaml",
        {"datasets": {"tiny": {"synth": {"n": 40, "size": 32, "seed": 0}}}},
    )
    target = "results/tiny/data/manifest.parquet"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", target]
    proc = subprocess.run(cmd, cwd=outer, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(read_manifest(outer / target).df) == 40  # the outer config, not the demo's
    prov = json.loads((outer / f"{target}.prov.json").read_text())
    assert prov["rule"] == "nd_prepare_data" and prov["params"]["cfg"]["val_fraction"] == 0.15
    dry = subprocess.run([*cmd, "-n"], cwd=outer, capture_output=True, text=True, timeout=600)
    assert "Nothing to be done" in dry.stdout + dry.stderr
