"""seal_activations: adapter; the logic is neurodissect.activations.shards.seal_shards."""

from neurodissect.activations.shards import seal_shards
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    layers, shards = ctx.params.layers, ctx.params.shards
    parts = list(ctx.input.parts)  # layer-major: the S parts of layer 0, then of layer 1, ...
    summary = {}
    for k, (layer, store) in enumerate(zip(layers, ctx.output.stores, strict=True)):
        summary[layer] = seal_shards(parts[k * shards : (k + 1) * shards], store)
    ctx.record(shards=shards, shard_rows=summary[layers[0]]["shard_rows"])
