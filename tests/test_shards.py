"""activations.shards: S parts of one store, sealed, equal the unsharded store byte for byte."""

from __future__ import annotations

import os
from dataclasses import is_dataclass
from pathlib import Path

import numpy as np
import pytest

from neurodissect.activations.shards import row_alignment, seal_shards, shard_attrs, shard_range
from neurodissect.activations.store import ActivationStore, StoreWriter
from neurodissect.clip.embed import ImageEmbedParams, embed_images
from neurodissect.errors import InputError

UNITS, GRID, CHUNK = 8, (3, 3), 16
SPLITS = {"train": 83, "val": 17, "test": 40}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {
        s: (
            rng.random((n, UNITS), dtype=np.float32),
            rng.random((n, UNITS, *GRID)).astype(np.float16),
        )
        for s, n in SPLITS.items()
    }


def _write(path: Path, data, shard: tuple[int, int] | None = None) -> None:
    attrs = {"kind": "activations", "layer": "l"}
    ranges = {}
    if shard is not None:
        for split, n in SPLITS.items():
            align = row_alignment(n, CHUNK, UNITS, GRID)
            ranges[split] = shard_range(n, align, shard[1], shard[0])
        attrs |= shard_attrs(shard[0], shard[1], ranges, SPLITS)
    with StoreWriter(path, n_units=UNITS, attrs=attrs, chunk_rows=CHUNK, spatial_shape=GRID) as w:
        for split, (acts, maps) in data.items():
            start, stop = ranges.get(split, (0, len(acts)))
            w.begin_split(split, [f"{split}{i}" for i in range(len(acts))], rows=(start, stop))
            for a in range(start, stop, 7):  # odd block sizes: the buffer re-chunks
                b = min(a + 7, stop)
                w.append(split, acts[a:b], maps[a:b])


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a store (not the .snakemake_timestamp Snakemake adds to directories)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".snakemake")
    }


def test_shard_ranges_are_chunk_aligned_and_tile():
    align = row_alignment(83, CHUNK, UNITS, GRID)
    assert align % CHUNK == 0
    ranges = [shard_range(83, align, 3, i) for i in range(3)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 83
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(start % align == 0 for start, _ in ranges)
    # fewer blocks than shards: some shards are empty, the ranges still tile
    assert [shard_range(10, 16, 4, i) for i in range(4)] == [(0, 0)] * 3 + [(0, 10)]


@pytest.mark.parametrize("shards", [2, 3, 5])
def test_sealed_store_is_byte_equal_to_unsharded(tmp_path, shards):
    data = _data()
    _write(tmp_path / "one.zarr", data)
    parts = [tmp_path / f"part{i}.zarr" for i in range(shards)]
    for i, part in enumerate(parts):
        _write(part, data, (i, shards))
    summary = seal_shards(parts[::-1], tmp_path / "sealed.zarr")  # any order of parts
    assert summary["shards"] == shards
    assert _files(tmp_path / "sealed.zarr") == _files(tmp_path / "one.zarr")
    store = ActivationStore(tmp_path / "sealed.zarr")
    np.testing.assert_array_equal(store.read("train"), data["train"][0])


def test_missing_shard_is_one_clear_error(tmp_path):
    data = _data()
    parts = [tmp_path / f"part{i}.zarr" for i in range(3)]
    for i, part in enumerate(parts):
        _write(part, data, (i, 3))
    with pytest.raises(InputError, match="do not tile"):
        seal_shards(parts[:2], tmp_path / "sealed.zarr")
    assert not (tmp_path / "sealed.zarr").exists()


def test_sharded_extraction_seals_to_the_unsharded_stores(synth_data, tmp_path):
    import torch

    from neurodissect.activations.extract import ExtractParams, extract_activations
    from neurodissect.io import save_state_dict
    from neurodissect.opaque import build_model

    manifest = synth_data("synthderm", n=48, size=32) / "manifest.parquet"
    torch.manual_seed(0)
    save_state_dict(build_model("resnet18", 7).state_dict(), tmp_path / "model.pt")
    layers = ["layer4", "fc", "penultimate"]
    base = {"image_size": 32, "batch_size": 3, "chunk_rows": 2, "spatial_maps": ["layer4"]}

    def run(out: Path, shards: int = 1, shard: int | None = None) -> dict:
        return extract_activations(
            manifest,
            tmp_path / "model.pt",
            {n: out / f"{n}.zarr" for n in layers},
            arch="resnet18",
            model_name="resnet18-s0",
            params=ExtractParams(**base, shards=shards),
            shard=shard,
        )

    run(tmp_path / "one")
    for i in range(3):
        run(tmp_path / f"part{i}", shards=3, shard=i)
    for name in layers:
        parts = [tmp_path / f"part{i}" / f"{name}.zarr" for i in range(3)]
        assert len({ActivationStore(p).attrs["shard"]["index"] for p in parts}) == 3
        seal_shards(parts, tmp_path / "sealed" / f"{name}.zarr")
        sealed, one = tmp_path / "sealed" / f"{name}.zarr", tmp_path / "one" / f"{name}.zarr"
        assert _files(sealed) == _files(one), name


def _in_fresh_process(cwd: Path, func, *args, threads: int = 2, **kwargs) -> None:
    """``func(*args, **kwargs)`` in a new Python process in ``cwd`` (arguments as repr) with
    torch on ``threads`` threads, as a rule job with ``threads: 2`` runs (runtime.set_threads):
    the thread count shifts float32 results in the last bits, and earlier tests may have
    changed this process's threads and OMP_NUM_THREADS."""
    import subprocess
    import sys

    from conftest import REPO

    call = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    # a settings object's repr names its class: import it beside the function
    names = [func, *(type(a) for a in [*args, *kwargs.values()] if is_dataclass(a))]
    imports = "; ".join(f"from {n.__module__} import {n.__name__}" for n in names)
    code = f"import torch; torch.set_num_threads({threads}); {imports}; {func.__name__}({call})"
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True)


# sharded extraction writes the images' splits only: the tiny config's augmented views off
NO_VIEWS = {"activations": {"augment_views": 0}, "sae": {"train_splits": ["train"]}}


def test_shards_with_augmented_views_is_one_clear_error(tmp_path):
    from conftest import run_snakemake, write_config

    cfg = write_config(tmp_path / "config.yaml", {"activations": {"shards": 2}})  # views on
    proc = run_snakemake(tmp_path, "-n", configfile=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "activations.shards > 1 with activations.augment_views" in out


def test_tiny_dag_with_two_shards_seals_stores_equal_to_one_job(tiny_run, tmp_path, monkeypatch):
    """activations.shards: 2 on a copy of the tiny run: two shard jobs + seal_activations (the
    opaque model is reused); the sealed stores' arrays equal one unsharded extraction byte for
    byte; provenance lists shards."""
    import json

    from conftest import clone_run, config_with, job_names, run_snakemake
    from neurodissect.activations.extract import ExtractParams, extract_activations

    workdir = clone_run(tiny_run, tmp_path / "run")
    acts = {"shards": 2, "chunk_rows": 8, "batch_size": 4, **NO_VIEWS["activations"]}
    cfg = config_with(tiny_run, {**NO_VIEWS, "activations": acts}, tmp_path / "config.yaml")
    run = workdir / "results" / "tiny" / "resnet18-s0"
    layers = ("layer4", "fc", "penultimate")
    targets = [f"results/tiny/resnet18-s0/activations/{n}.zarr" for n in layers]
    proc = run_snakemake(workdir, *targets, configfile=cfg)
    ran = job_names(proc.stdout + proc.stderr)
    assert "seal_activations" in ran and "train_opaque" not in ran, ran
    sealed = {n: run / "activations" / f"{n}.zarr" for n in layers}
    prov = ActivationStore(sealed["penultimate"]).attrs["provenance"]
    assert prov["rule"] == "seal_activations" and '"shards": 2' in json.dumps(prov)
    # the same extraction in one job (the rule's settings: tiny image size, spatial maps)
    monkeypatch.chdir(workdir)  # the manifest's image root is relative to the run directory
    one = {n: tmp_path / "one" / f"{n}.zarr" for n in layers}
    attrs = ActivationStore(sealed["layer4"]).attrs
    extract_activations(
        workdir / "results" / "tiny" / "data" / "manifest.parquet",
        run / "opaque" / "model.pt",
        one,
        arch="resnet18",
        model_name="resnet18-s0",
        params=ExtractParams(
            image_size=attrs["preprocess"]["image_size"],
            chunk_rows=8,
            batch_size=4,
            spatial_maps=["layer4"],
            device="cpu",
        ),
    )
    for n in layers:
        a, b = _files(sealed[n]), _files(one[n])
        assert {k for k in a if not k.endswith("zarr.json")} == {
            k for k in b if not k.endswith("zarr.json")
        }
        assert all(a[k] == b[k] for k in b if not k.endswith("zarr.json")), n
    again = run_snakemake(workdir, *targets, configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_tiny_dag_with_two_shards_seals_image_embeddings_equal_to_one_job(tmp_path):
    """embed_images with activations.shards: 2: two shard jobs + seal_image_embeddings; the
    sealed store's arrays equal one unsharded embed_images call byte for byte."""
    from conftest import run_snakemake, write_config

    # (the image store keeps 1,024-row chunks: at the tiny size one shard holds each split)
    cfg = write_config(
        tmp_path / "config.yaml",
        {**NO_VIEWS, "activations": {"shards": 2, "augment_views": 0}, "clip": {"batch_size": 4}},
    )
    run_snakemake(tmp_path, "results/tiny/clip/image_emb.zarr", configfile=cfg)
    sealed = tmp_path / "results" / "tiny" / "clip" / "image_emb.zarr"
    assert ActivationStore(sealed).attrs["provenance"]["rule"] == "seal_image_embeddings"
    # the reference as a rule's job computes it (see _in_fresh_process)
    _in_fresh_process(
        tmp_path,
        embed_images,
        "results/tiny/clip/model",
        "results/tiny/data/manifest.parquet",
        "one.zarr",
        ImageEmbedParams(batch_size=4, device="cpu"),
    )
    a, b = _files(sealed), _files(tmp_path / "one.zarr")
    chunks = {k for k in b if not k.endswith("zarr.json")}
    assert chunks == {k for k in a if not k.endswith("zarr.json")}
    assert all(a[k] == b[k] for k in chunks)
