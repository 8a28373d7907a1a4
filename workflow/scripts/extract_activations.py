"""extract_activations: adapter; the logic is neurodissect.activations.extract."""

from neurodissect.activations.extract import ExtractParams, extract_activations
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = extract_activations(
        ctx.input.manifest,
        ctx.input.model,
        dict(zip(ctx.params.layers, ctx.output.stores, strict=True)),
        arch=ctx.params.arch,
        model_name=ctx.wildcards["model"],
        params=ExtractParams.from_config(
            ctx.params.cfg, {"image_size": ctx.params.image_size}, ctx.params.runtime
        ),
        threads=ctx.threads,
        shard=getattr(ctx.params, "shard", None),  # extract_activations_shard only
    )
    ctx.record(**summary)
