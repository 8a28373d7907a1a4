"""Exact partial reruns: after a change, Snakemake plans exactly the jobs it invalidates.

Each test clones the finished tiny run, changes one thing (a config value, the
model list, a package module) and reads the job list of a real dry run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, clone_run, config_with, job_names, planned_jobs, run_snakemake

# Everything downstream of the annotation branch / the SAE branch / the latents' names, by rule.
ANNOTATION = {
    "select_exemplars:annotate",
    "match_concepts",
    "evaluate_annotation",
    "verify_names:annotate",
}
NAMING_AND_AFTER = {
    "name_concepts",
    "evaluate_sae",
    "train_cavs",
    "select_concepts",
    "build_cbm",
    "evaluate_cbm",
    "verify_names:sae",
}
# the SAE branch: its own rules, then everything after the latents' names
SAE_CHAIN = {"train_sae", "encode_latents", "select_exemplars:sae", "sae_baselines"}
SAE_CHAIN |= NAMING_AND_AFTER
ALWAYS_AFTER = {"summary_figure", "atlas", "compare", "audit", "all"}  # summaries of everything


@pytest.fixture
def changed(tiny_run, tmp_path):
    """changes -> a config file (in this test's folder): the tiny run's config with them."""
    return lambda changes: config_with(tiny_run, changes, tmp_path / "config.yaml")


@pytest.fixture
def run(tiny_run) -> Path:
    """The session's tiny run, shared read-only: every check here is a dry run."""
    return tiny_run


def test_finished_run_has_nothing_to_do(run):
    assert planned_jobs(run, run / "config.yaml") == set()


def _reversed_keys(value):
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    return value


def test_the_same_config_in_another_key_order_reruns_nothing(run, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            _reversed_keys(yaml.safe_load((run / "config.yaml").read_text())), sort_keys=False
        )
    )
    assert planned_jobs(run, cfg) == set()


def test_sae_l1_coefficient_reruns_the_sae_chain_only(run, changed):
    jobs = planned_jobs(run, changed({"sae": {"l1_coefficient": 1e-3}}))
    assert "train_sae" in jobs
    assert jobs - ALWAYS_AFTER <= SAE_CHAIN, jobs
    assert not jobs & {"train_opaque", "extract_activations", "prepare_data", *ANNOTATION}


@pytest.mark.parametrize(
    "change", [{"normalize": "whiten"}, {"normalize_eps": 0.5}], ids=["normalize", "normalize_eps"]
)
def test_sae_normalisation_reruns_the_sae_chain_only(run, changed, change):
    jobs = planned_jobs(run, changed({"sae": change}))
    assert "train_sae" in jobs
    assert jobs - ALWAYS_AFTER <= SAE_CHAIN, jobs


def test_sae_train_splits_reruns_the_sae_chain_only(run, changed):
    jobs = planned_jobs(run, changed({"sae": {"train_splits": ["train"]}}))
    assert "train_sae" in jobs
    assert jobs - ALWAYS_AFTER <= SAE_CHAIN, jobs


def test_augment_views_reruns_extraction_and_after_not_training(run, changed):
    jobs = planned_jobs(run, changed({"activations": {"augment_views": 3}}))
    assert {"extract_activations", "train_sae", "match_concepts"} <= jobs
    assert not jobs & {
        "prepare_data",
        "train_opaque",
        "build_vocabulary",
        "train_clip",
        "embed_images",
        "embed_texts",
    }


def test_training_on_views_that_are_not_extracted_is_rejected(run, changed):
    cfg = changed({"activations": {"augment_views": 0}})
    proc = run_snakemake(run, "-n", configfile=cfg, check=False)
    assert proc.returncode != 0 and "augment_views" in proc.stderr + proc.stdout


def test_sae_evaluation_keys_rerun_their_rule_only(run, changed):
    jobs = planned_jobs(run, changed({"sae": {"probe_c": 0.5}}))
    assert jobs - ALWAYS_AFTER == {"evaluate_sae"}, jobs
    jobs = planned_jobs(run, changed({"sae": {"probe_c": 1.0, "baselines": ["pca"]}}))
    assert jobs - ALWAYS_AFTER == {"sae_baselines"}, jobs


@pytest.mark.parametrize(
    "change",
    [{"drop_locations": False}, {"location_words": ["nest"]}],
    ids=["drop_locations", "location_words"],
)
def test_location_keys_rerun_the_vocabulary_and_what_reads_it(run, changed, change):
    jobs = planned_jobs(run, changed({"vocab": change}))
    assert {"build_vocabulary", "embed_texts", "match_concepts", "name_concepts"} <= jobs, jobs
    assert not jobs & {"prepare_data", "train_opaque", "train_clip", "train_sae"}, jobs


def test_sae_variant_reruns_the_sae_chain_only(run, changed):
    jobs = planned_jobs(run, changed({"sae": {"variant": "batchtopk"}}))
    assert "train_sae" in jobs and "sae_baselines" in jobs
    assert jobs - ALWAYS_AFTER <= SAE_CHAIN, jobs


@pytest.mark.parametrize(
    "change", [{"alpha": 80}, {"standardize": True}], ids=["alpha", "standardize"]
)
def test_annotate_matching_keys_rerun_matching_and_after_only(run, changed, change):
    jobs = planned_jobs(run, changed({"annotate": change}))
    assert jobs - ALWAYS_AFTER == {
        "match_concepts",
        "verify_names:annotate",
        "evaluate_annotation",
    }, jobs


def test_naming_method_reruns_naming_and_after_only(run, changed):
    jobs = planned_jobs(run, changed({"naming": {"method": "clip"}}))
    assert "name_concepts" in jobs
    assert jobs - ALWAYS_AFTER <= NAMING_AND_AFTER, jobs


def test_fdr_levels_rerun_their_own_test_and_after_only(run, changed):
    jobs = planned_jobs(run, changed({"annotate": {"fdr": None}}))
    assert jobs - ALWAYS_AFTER == {
        "match_concepts",
        "evaluate_annotation",
        "verify_names:annotate",
    }, jobs
    jobs = planned_jobs(run, changed({"annotate": {"fdr": 0.05}, "naming": {"fdr": 0.2}}))
    assert jobs - ALWAYS_AFTER == NAMING_AND_AFTER, jobs


def test_cbm_merge_by_reruns_the_selection_and_after_only(run, changed):
    jobs = planned_jobs(run, changed({"cbm": {"merge_by": "heldout_accuracy"}}))
    assert jobs - ALWAYS_AFTER == {"select_concepts", "build_cbm", "evaluate_cbm"}, jobs


def test_exemplar_settings_of_latents_and_of_neurons_are_separate(run, changed):
    jobs = planned_jobs(run, changed({"naming": {"exemplar_percentile": 70}}))
    assert jobs - ALWAYS_AFTER == {"select_exemplars:sae"} | NAMING_AND_AFTER, jobs
    jobs = planned_jobs(
        run, changed({"naming": {"exemplar_percentile": 50}, "annotate": {"percentile": 90}})
    )
    assert jobs - ALWAYS_AFTER == ANNOTATION, jobs


def test_a_new_model_seed_runs_that_models_chain_only(run, changed):
    cfg = changed({"models": ["resnet18-s0", "resnet18-s1"]})
    out = run_snakemake(run, "-n", configfile=cfg).stdout
    wildcard_models = set(re.findall(r"model=([a-z0-9_]+-s[0-9]+)", out))
    assert wildcard_models == {"resnet18-s1"}, wildcard_models
    jobs = planned_jobs(run, cfg)
    assert "train_opaque" in jobs
    assert not jobs & {
        "prepare_data",
        "build_vocabulary",
        "train_clip",
        "embed_images",
        "embed_texts",
    }


def job_reasons(dry_run_output: str) -> dict[str, str]:
    """Rule name (as in :func:`job_names`) -> the reason lines of its jobs in a dry run."""
    reasons: dict[str, str] = {}
    for block in re.findall(r"^(?:local)?rule \w+:\n(?:    .*\n)*", dry_run_output, flags=re.M):
        (name,) = job_names(block)
        reasons[name] = reasons.get(name, "") + "".join(re.findall(r"reason: .*\n", block))
    return reasons


def rule_scripts(repo: Path) -> dict[str, Path]:
    """Rule name -> the script it runs, from the rule files of ``repo``."""
    out = {}
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        pattern = r"rule (\w+):\n(?:.*\n)*?\s+\"\.\./scripts/(\w+\.py)\""
        for rule, script in re.findall(pattern, smk.read_text()):
            out[rule] = repo / "workflow" / "scripts" / script
    return out


def test_editing_a_package_module_changes_the_code_of_exactly_its_importers(run, tmp_path):
    """A copy of the workflow whose naming table module gained a line: the code fingerprint
    changes for exactly the rules whose script's import closure holds that module, and the
    dry run reruns those (or what follows from their outputs), nothing upstream."""
    from neurodissect.dag.code import code_fingerprint, import_closure

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(REPO / "Snakefile", repo / "Snakefile")
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(
            REPO / folder,
            repo / folder,
            copy_function=shutil.copy2,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    assert planned_jobs(run, run / "config.yaml", snakefile=repo / "Snakefile") == set()
    package = repo / "workflow" / "neurodissect"
    scripts = rule_scripts(repo)
    before = {rule: code_fingerprint(script, package) for rule, script in scripts.items()}
    edited = package / "naming" / "table.py"
    edited.write_text(edited.read_text() + "\n# an edit\n")
    after = {rule: code_fingerprint(script, package) for rule, script in scripts.items()}
    importers = {
        rule for rule, script in scripts.items() if edited in import_closure(script, package)
    }
    assert {rule for rule in scripts if before[rule] != after[rule]} == importers
    assert {"name_concepts", "train_cavs", "train_sae", "verify_names"} <= importers
    reasons = job_reasons(
        run_snakemake(
            run, "-n", "--snakefile", str(repo / "Snakefile"), configfile=run / "config.yaml"
        ).stdout
    )
    # Snakemake names the first reason only: jobs after a rerun show "input updated"
    by_params = {job.split(":")[0] for job, why in reasons.items() if "Params have changed" in why}
    assert by_params and by_params <= importers, by_params
    after_importers = importers | {job.split(":")[0] for job in SAE_CHAIN} | {"evaluate_annotation"}
    assert {job.split(":")[0] for job in reasons} - ALWAYS_AFTER <= after_importers, reasons
    assert not set(reasons) & {
        "train_opaque",
        "extract_activations",
        "prepare_data",
        "select_exemplars:annotate",
        "match_concepts",
    }


def test_an_atlas_setting_reruns_the_atlas_only(run, changed):
    jobs = planned_jobs(run, changed({"atlas": {"thumb_px": 48}}))
    assert jobs - {"compare", "audit", "all"} == {"atlas"}, jobs


def test_rejected_config_touches_nothing(tiny_run, tmp_path, changed):
    run = clone_run(tiny_run, tmp_path / "run")  # a real run, not a dry one: on a copy
    before = {p: p.stat().st_mtime_ns for p in (run / "results").rglob("*") if p.is_file()}
    cfg = changed({"sae": {"l1_coefficent": 1.0}})  # typo
    proc = run_snakemake(run, configfile=cfg, check=False)
    assert proc.returncode != 0
    assert "sae" in proc.stderr and "l1_coefficent" in proc.stderr
    after = {p: p.stat().st_mtime_ns for p in (run / "results").rglob("*") if p.is_file()}
    assert after == before
