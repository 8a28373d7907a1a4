"""Shared fixtures: tiny synthetic datasets and real snakemake runs in temp dirs.

Nothing is mocked. Expensive things (generating data, a full tiny DAG run)
are session-scoped; a test that modifies a run works on its own copy
(:func:`clone_run`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
DEFAULT_PROFILE = REPO / "workflow" / "profiles" / "default"

# No test may touch the network: a missing download must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

# The whole DAG on a dataset small enough for a CI run on 2 cores.
TINY_CONFIG: dict = {
    "datasets": {"tiny": {"format": "synthderm", "synth": {"n": 240, "size": 32, "seed": 0}}},
    "models": ["resnet18-s0"],
    "layers": ["layer4", "fc"],
    "opaque": {"image_size": 32, "epochs": 2, "batch_size": 32},
    "activations": {"batch_size": 64, "augment_views": 2},
    "clip": {"image_size": 32, "epochs": 2, "batch_size": 64, "embed_dim": 64},
    "vocab": {"min_df": 2},
    "annotate": {"n_permutations": 100, "n_bootstrap": 20, "max_exemplars": 20},
    "sae": {"expansion": 2, "epochs": 5, "batch_size": 64, "train_splits": ["train", "train_aug"]},
    "naming": {"n_permutations": 100, "n_bootstrap": 20},
    # 240 images: no name passes the naming confidence test, use the flagged ones
    "cav": {"include_uninterpretable": True},
    "cbm": {"n_concepts": 8, "n_nonzero": 4},
    "verify": {
        "n_pairs": 6,
        "batch_size": 12,
        "n_explanations": 8,
        "min_informative_pairs": 4,
        "max_pairs": 18,
    },
}


# Test files that start the suite: the first builds the shared tiny run, the second is the
# longest file that does not need it (the S3 DAG). Files that need the tiny run come last,
# so under xdist the other worker works through the rest while the tiny run is built.
FIRST_FILES = ("test_workflow.py", "test_storage.py")


def pytest_collection_modifyitems(config, items):
    """Order whole files (a file's tests stay together, so its module fixtures are built once)
    as FIRST_FILES says, then files without the tiny run, then files with it."""
    with_tiny_run = {item.path for item in items if "tiny_run" in getattr(item, "fixturenames", ())}

    def rank(item) -> int:
        if item.path.name in FIRST_FILES:
            return FIRST_FILES.index(item.path.name)
        return len(FIRST_FILES) + (item.path in with_tiny_run)

    items.sort(key=rank)  # stable: tests keep their order within a file


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_config(path: Path, changes: dict | None = None, base: dict | None = None) -> Path:
    cfg = deep_update(base if base is not None else TINY_CONFIG, changes or {})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def config_with(run: Path, changes: dict, path: Path) -> Path:
    """``run``'s config.yaml with ``changes``, written to ``path``; the run stays untouched
    (key order kept: a re-sorted synth section would count as another dataset)."""
    base = yaml.safe_load((run / "config.yaml").read_text())
    path.write_text(yaml.safe_dump(deep_update(base, changes), sort_keys=False))
    return path


def snakemake_command(
    workdir: Path, configfile: Path | None = None, profile: Path | None = None, cores: int = 2
) -> list[str]:
    """The command line of a real run of the workflow in ``workdir``: the workflow's default
    profile on ``cores`` cores, or ``profile`` (e.g. the slurm one) instead."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE)]
    cmd += ["--directory", str(workdir)]
    if profile is None:
        cmd += ["--workflow-profile", str(DEFAULT_PROFILE), "--cores", str(cores)]
    else:
        cmd += ["--workflow-profile", "none", "--profile", str(profile)]
    if configfile is not None:
        cmd.append(f"--configfile={configfile}")  # '=' so positional targets aren't eaten
    return cmd


def run_snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    check: bool = True,
    timeout: int = 1500,
    profile: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run the real workflow in ``workdir``; on failure show its output in the assertion.

    By default it runs locally with the workflow's default profile on 2 cores;
    ``profile`` selects another profile (e.g. the slurm one) instead.
    """
    cmd = snakemake_command(workdir, configfile, profile)
    if "-n" in args:
        # a dry run writes nothing, so it needs no lock: tests in both workers may dry-run
        # the shared tiny run at once (Snakemake locks a directory even for a dry run)
        cmd.append("--nolock")
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed (rc={proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def job_names(output: str) -> set[str]:
    """Rule names of the jobs in Snakemake's output (a dry run's plan or a run's log), the
    one parser of it for every test; select_exemplars and verify_names split by their unit
    kind (neurons of a layer or SAE latents)."""
    jobs = set()
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", output, flags=re.M):
        if rule in ("select_exemplars", "verify_names"):
            kind = (
                "sae" if re.search(r"/sae/(exemplars|verification)\.parquet", body) else "annotate"
            )
            rule = f"{rule}:{kind}"
        jobs.add(rule)
    return jobs


def planned_jobs(
    workdir: Path, config: Path, *targets: str, snakefile: Path | None = None
) -> set[str]:
    """Rule names (see :func:`job_names`) of the jobs a dry run of ``targets`` (default:
    all) plans in ``workdir``; it writes nothing there, so ``workdir`` may be shared."""
    args = ["-n", *targets]
    if snakefile is not None:
        args += ["--snakefile", str(snakefile)]
    return job_names(run_snakemake(workdir, *args, configfile=config).stdout)


def assert_resumed_equals_uninterrupted(a: dict, b: dict, dir_a: Path, dir_b: Path) -> None:
    """A resumed training (weights ``b``, outputs in ``dir_b``) ended exactly where the
    uninterrupted one did: equal tensors and the same history.csv file (epoch times live
    in the sidecar, not the CSV)."""
    import pandas as pd
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    history_a = pd.read_csv(dir_a / "history.csv")
    pd.testing.assert_frame_equal(history_a, pd.read_csv(dir_b / "history.csv"))
    assert "seconds" not in history_a.columns


def clone_run(src: Path, dst: Path) -> Path:
    """Copy a finished run (outputs, mtimes and .snakemake metadata) to mutate it safely."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    return dst


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory):
    """kind → folder of a small raw synthetic dataset (generated once per session)."""
    from neurodissect.data.synth import SynthParams, generate

    cache: dict[str, Path] = {}

    def make(kind: str = "synthderm", n: int = 160, size: int = 32, seed: int = 0) -> Path:
        key = f"{kind}-{n}-{size}-{seed}"
        if key not in cache:
            out = tmp_path_factory.mktemp("raw") / key
            generate(kind, out, SynthParams(n=n, size=size, seed=seed))
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory, synth_raw):
    """kind → prepared data folder (manifest.parquet, boxes.parquet, concepts_gt.parquet)."""
    from neurodissect.data.prepare import prepare_dataset

    cache: dict[str, Path] = {}

    def make(kind: str = "synthderm", n: int = 160, size: int = 32, seed: int = 0) -> Path:
        key = f"{kind}-{n}-{size}-{seed}"
        if key not in cache:
            out = tmp_path_factory.mktemp("data") / key
            prepare_dataset(kind, synth_raw(kind, n, size, seed), out)
            cache[key] = out
        return cache[key]

    return make


def session_root(tmp_path_factory) -> Path:
    """A folder every process of this pytest session sees: the base temp folder, or
    under pytest-xdist (``make test`` runs two workers) the one above the workers' own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of the whole DAG on TINY_CONFIG, built once per session: the first
    worker that needs it builds it, the others wait on the lock. Read-only: clone it to
    modify."""
    from filelock import FileLock

    root = session_root(tmp_path_factory)
    workdir, built = root / "tiny_run", root / "tiny_run.built"
    with FileLock(str(root / "tiny_run.lock")):
        if not built.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a build that failed in another worker
            workdir.mkdir()
            run_snakemake(workdir, configfile=write_config(workdir / "config.yaml"))
            built.touch()
    return workdir
