"""atlas: adapter; the logic is neurodissect.atlas.build.build_atlas."""

from pathlib import Path

from neurodissect.atlas.build import AtlasInputs, build_atlas
from neurodissect.atlas.collect import SAE_GROUP, GroupInputs
from neurodissect.atlas.settings import AtlasParams
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    inp = dict(ctx.input.items())

    def get(key):
        return Path(inp[key]) if key in inp else None

    layers = [
        GroupInputs(
            layer,
            get(f"layer{i}_exemplars"),
            get(f"layer{i}_concepts"),
            store=get(f"layer{i}_store"),
            units=get(f"layer{i}_units"),
            verification=get(f"layer{i}_verification"),
        )
        for i, layer in enumerate(ctx.params.layers)
    ]
    sae = GroupInputs(
        SAE_GROUP,
        get("sae_exemplars"),
        get("sae_concepts"),
        groundtruth=get("sae_groundtruth"),
        skipped=get("sae_skipped"),
        verification=get("sae_verification"),
    )
    metrics = {
        "opaque": get("opaque_metrics"),
        "sae": get("sae_metrics"),
        "cbm": get("cbm_metrics"),
    }
    metrics.update(
        {f"annotate/{layer}": get(f"layer{i}_metrics") for i, layer in enumerate(ctx.params.layers)}
    )
    inputs = AtlasInputs(
        manifest=get("manifest"),
        groups=[*layers, sae],
        boxes=get("boxes"),
        explanations=get("cbm_explanations"),
        cbm_model=get("cbm_model"),
        metrics=metrics,
        artifacts=[Path(p) for p in inp.values()],
    )
    wc = ctx.wildcards
    counts = build_atlas(
        inputs,
        ctx.output.index,
        ctx.output.site,
        AtlasParams.from_config(ctx.params.cfg),
        title=f"{wc['dataset']} / {wc['model']}",
    )
    ctx.record(**counts)
