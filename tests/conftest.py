"""Shared fixtures: tiny synthetic datasets and real snakemake runs in temp dirs.

Nothing is mocked. Expensive things (generating data, a full tiny DAG run)
are session-scoped; a test that modifies a run works on its own copy
(:func:`clone_run`).
"""

from __future__ import annotations

import copy
import os
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
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(SNAKEFILE),
        "--directory", str(workdir),
    ]  # fmt: skip
    if profile is None:
        cmd += ["--workflow-profile", str(DEFAULT_PROFILE), "--cores", "2"]
    else:
        cmd += ["--workflow-profile", "none", "--profile", str(profile)]
    if configfile is not None:
        cmd.append(f"--configfile={configfile}")  # '=' so positional targets aren't eaten
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed (rc={proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def clone_run(src: Path, dst: Path) -> Path:
    """Copy a finished run (outputs, mtimes and .snakemake metadata) to mutate it safely."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    return dst


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory):
    """kind → folder of a small raw synthetic dataset (generated once per session)."""
    from neurodissect.data.synth import generate

    cache: dict[str, Path] = {}

    def make(kind: str = "synthderm", n: int = 160, size: int = 32, seed: int = 0) -> Path:
        key = f"{kind}-{n}-{size}-{seed}"
        if key not in cache:
            out = tmp_path_factory.mktemp("raw") / key
            generate(kind, out, n=n, size=size, seed=seed)
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of the whole DAG on TINY_CONFIG. Read-only: clone it to modify."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    cfg = write_config(workdir / "config.yaml")
    run_snakemake(workdir, configfile=cfg)
    return workdir
