"""embed_images: adapter; the logic is neurodissect.clip.embed.embed_images."""

from neurodissect.clip.embed import ImageEmbedParams, embed_images
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    shards = getattr(ctx.params, "shards", 1)  # embed_images_shard only
    summary = embed_images(
        ctx.input.model,
        ctx.input.manifest,
        ctx.output.store,
        ImageEmbedParams.from_config(ctx.params.cfg, shards, ctx.params.runtime),
        shard=getattr(ctx.params, "shard", None),
    )
    ctx.record(**summary)
