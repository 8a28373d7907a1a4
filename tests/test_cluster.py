"""The slurm profile on a real single-node SLURM cluster (../shared/slurm).

Marked `slurm`: `make test-slurm` runs it. Skipped, with the reason, where
the cluster scripts, root or apt-get are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_snakemake, write_config

SLURM_DIR = REPO.parent / "shared" / "slurm"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
GPU_RULES = {
    "train_opaque",
    "extract_activations",
    "train_clip",
    "load_clip",
    "embed_images",
    "embed_texts",
    "train_sae",
    "encode_latents",
    "evaluate_sae",
    "build_cbm",
}


@pytest.fixture(scope="module")
def slurm_cluster():
    if not (SLURM_DIR / "start-slurm.sh").exists():
        pytest.skip(f"no cluster scripts at {SLURM_DIR}")
    if os.geteuid() != 0 or not (shutil.which("apt-get") or shutil.which("slurmctld")):
        pytest.skip("the local SLURM cluster needs root and apt-get")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install '.[slurm]')")
    subprocess.run([str(SLURM_DIR / "start-slurm.sh")], check=True, capture_output=True)
    yield "debug"
    subprocess.run([str(SLURM_DIR / "stop-slurm.sh")], check=True, capture_output=True)


def _jobs() -> list[dict[str, str]]:
    """Every job the cluster still remembers: id, state, comment (rule + wildcards), TRES.

    Read from ``squeue --json``: fixed-width ``--Format`` columns shift silently when a
    field name is unknown to the installed squeue (e.g. TresPerJob)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--json"], capture_output=True, text=True, check=True
    ).stdout
    jobs = []
    for job in json.loads(out)["jobs"]:
        state = job.get("job_state")
        state = state[0] if isinstance(state, list) else state  # a list in newer Slurm
        jobs.append(
            {
                "id": str(job["job_id"]),
                "state": state,
                "comment": job.get("comment") or "",
                "tres": job.get("tres_per_job") or "",
            }
        )
    return jobs


@pytest.mark.slurm
def test_tiny_dag_runs_through_the_slurm_profile(slurm_cluster, tmp_path: Path):
    before = {j["id"] for j in _jobs()}
    cfg = write_config(tmp_path / "config.yaml")
    run_snakemake(tmp_path, "--jobs", "4", configfile=cfg, profile=SLURM_PROFILE, timeout=3000)
    assert (tmp_path / "results" / "audit.json").exists()
    assert (tmp_path / "results" / "tiny" / "resnet18-s0" / "cbm" / "metrics.json").exists()
    jobs = [j for j in _jobs() if j["id"] not in before]
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs
    ran = {j["comment"].split("_wildcards")[0].removeprefix("rule_"): j for j in jobs}
    gpu_rules = GPU_RULES & set(ran)
    assert gpu_rules, f"no GPU rule ran on the cluster: {sorted(ran)}"
    for rule in gpu_rules:
        assert "gpu:1" in ran[rule]["tres"], f"{rule} did not ask for a GPU: {ran[rule]}"
    for rule in set(ran) - GPU_RULES:
        assert "gpu" not in ran[rule]["tres"], f"{rule} asked for a GPU: {ran[rule]}"
    # a second run has nothing to submit
    dry = run_snakemake(tmp_path, "-n", configfile=cfg, profile=SLURM_PROFILE)
    assert "Nothing to be done" in dry.stdout + dry.stderr
