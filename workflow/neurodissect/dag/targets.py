"""The final targets of a workflow run: every artifact `rule all` requests.

One function lists them from the run grid (datasets x models x layers) and the few
config switches that decide which rules exist, so the result does not depend on the
order the rule files are included in. Paths are plain relative strings (never
`rules.X.output`), so they also work with a default storage provider.
"""

from __future__ import annotations

from dataclasses import dataclass

# The cross-run outputs: rule compare's and rule audit's (their rules name these too).
COMPARISON = {
    "summary": "results/comparison.parquet",
    "markdown": "results/comparison.md",
    "long": "results/comparison_long.parquet",
    "figure": "results/figures/comparison.png",
}
AUDIT = {"report": "results/audit.json", "rocrate": "results/ro-crate-metadata.json"}


@dataclass(frozen=True)
class RunGrid:
    """What the final targets depend on.

    datasets: the dissected datasets; models: `arch-sN` names; layers: the dissected
    layers; extract_layers: every layer extract_activations writes (layers + the SAE's);
    train_clip: clip.source is train (its training curve is a target); verified: the
    datasets verify_names renders probes for (generated synthetic ones).
    """

    datasets: tuple[str, ...]
    models: tuple[str, ...]
    layers: tuple[str, ...]
    extract_layers: tuple[str, ...]
    train_clip: bool
    verified: tuple[str, ...] = ()


def _expand(patterns: list[str], **values: tuple[str, ...]) -> list[str]:
    """Like Snakemake's expand: each pattern in turn, over every combination of values."""
    out = []
    for pattern in patterns:
        combos: list[dict[str, str]] = [{}]
        for key, options in values.items():
            combos = [{**c, key: v} for c in combos for v in options]
        out += [pattern.format(**c) for c in combos]
    return out


def stage_targets(grid: RunGrid) -> list[str]:
    """Every stage's final artifacts, stage by stage in DAG order (as the rule files
    list them), each over all datasets (and models, layers)."""
    run = "results/{dataset}/{model}"
    d = {"dataset": grid.datasets}
    dm = {**d, "model": grid.models}
    out = _expand(
        ["results/{dataset}/data/manifest.parquet", "results/{dataset}/data/overview.png"], **d
    )
    out += _expand(["results/{dataset}/vocab/concepts.parquet"], **d)
    if grid.train_clip:
        out += _expand(["results/{dataset}/clip/training.png"], **d)
    clip = ["metrics.json", "image_emb.zarr", "text_emb.zarr"]
    out += _expand([f"results/{{dataset}}/clip/{name}" for name in clip], **d)
    out += _expand([f"{run}/opaque/metrics.json", f"{run}/figures/learning_curve.png"], **dm)
    stores = [f"{run}/activations/{layer}.zarr" for layer in grid.extract_layers]
    out += _expand(stores, **dm)
    sae = [
        f"{run}/sae/metrics.json",
        f"{run}/figures/sae_training.png",
        f"{run}/sae/baselines.parquet",
    ]
    out += _expand(sae, **dm)
    out += _expand([f"{run}/annotate/{{layer}}/metrics.json"], **dm, layer=grid.layers)
    out += _expand([f"{run}/sae/concepts.parquet"], **dm)
    cbm = ["cbm_class_concepts", "cbm_explanations", "cbm_concept_scores"]
    out += _expand([f"{run}/cbm/metrics.json", *(f"{run}/figures/{f}.png" for f in cbm)], **dm)
    out += _expand([f"{run}/figures/summary.png"], **dm)
    units = [*(f"annotate/{layer}" for layer in grid.layers), "sae"]
    verified = tuple(x for x in grid.datasets if x in grid.verified)
    out += [
        f"results/{x}/{m}/figures/verify/{u}.png"
        for x in verified
        for m in grid.models
        for u in units
    ]
    return [*out, *_expand([f"{run}/atlas/index.html"], **dm)]


def figure_targets(targets: list[str]) -> list[str]:
    """The figures among `targets`: rule figures' inputs."""
    return [t for t in targets if t.endswith(".png")]


def metrics_files(targets: list[str]) -> list[str]:
    """The metrics.json files among `targets`: rule compare's inputs."""
    return [t for t in targets if t.endswith("metrics.json")]


def audited_targets(grid: RunGrid) -> list[str]:
    """rule audit's inputs: every stage target, plus the comparison once there is one."""
    targets = stage_targets(grid)
    if metrics_files(targets):
        targets += COMPARISON.values()
    return targets


def final_targets(grid: RunGrid) -> list[str]:
    """rule all's inputs: the audited targets and the audit itself."""
    return [*audited_targets(grid), *AUDIT.values()]
