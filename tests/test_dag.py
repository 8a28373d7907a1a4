"""The workflow layer's parse-time logic (neurodissect.dag): final targets."""

from __future__ import annotations

from neurodissect.dag.targets import (
    AUDIT,
    COMPARISON,
    RunGrid,
    audited_targets,
    final_targets,
    metrics_files,
    stage_targets,
)

GRID = RunGrid(
    datasets=("a", "b"),
    models=("resnet18-s0", "resnet18-s1"),
    layers=("layer4", "fc"),
    extract_layers=("layer4", "fc", "penultimate"),
    train_clip=True,
    verified=("b",),
)


def test_every_run_gets_its_stage_targets_in_snakemake_expand_order():
    targets = stage_targets(GRID)
    assert len(targets) == len(set(targets))
    # per dataset: manifest, overview, vocabulary, clip curve, clip metrics, 2 embeddings
    # per run: 2 opaque, 3 stores, 3 sae, 2 annotations, names, 4 cbm, summary, atlas
    # verified runs (b x 2 models): 3 verification figures each
    assert len(targets) == 2 * 7 + 4 * 17 + 2 * 3
    # like expand(): one pattern over all datasets before the next pattern
    assert targets[:4] == [
        "results/a/data/manifest.parquet",
        "results/b/data/manifest.parquet",
        "results/a/data/overview.png",
        "results/b/data/overview.png",
    ]
    opaque = [t for t in targets if t.endswith("opaque/metrics.json")]
    assert opaque == [f"results/{d}/resnet18-s{s}/opaque/metrics.json" for d in "ab" for s in "01"]
    verify = [t for t in targets if "/verify/" in t]
    assert verify == [
        f"results/b/resnet18-s{s}/figures/verify/{u}.png"
        for s in "01"
        for u in ("annotate/layer4", "annotate/fc", "sae")
    ]
    assert "results/a/resnet18-s1/activations/penultimate.zarr" in targets


def test_clip_curve_only_when_the_clip_is_trained():
    loaded = RunGrid(**{**GRID.__dict__, "train_clip": False})
    curves = {"results/a/clip/training.png", "results/b/clip/training.png"}
    assert curves <= set(stage_targets(GRID))
    assert set(stage_targets(GRID)) - set(stage_targets(loaded)) == curves


def test_compare_reads_every_metrics_file_and_the_audit_covers_everything_else():
    stage = stage_targets(GRID)
    metrics = metrics_files(stage)
    # clip per dataset; opaque, sae, 2 layers, cbm per run
    assert len(metrics) == 2 + 4 * 5
    assert audited_targets(GRID) == [*stage, *COMPARISON.values()]
    assert final_targets(GRID) == [*stage, *COMPARISON.values(), *AUDIT.values()]


def test_no_dataset_no_comparison():
    empty = RunGrid(datasets=(), models=("resnet18-s0",), layers=("fc",),
                    extract_layers=("fc",), train_clip=True)  # fmt: skip
    assert final_targets(empty) == list(AUDIT.values())
