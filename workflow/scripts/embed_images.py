"""embed_images: adapter; the logic is neurodissect.clip.embed.embed_images."""

from neurodissect.clip.embed import embed_images
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = embed_images(
        ctx.input.model,
        ctx.input.manifest,
        ctx.output.store,
        batch_size=ctx.params.batch_size,
        device=ctx.params.runtime["device"],
        num_workers=ctx.params.runtime["num_workers"],
        shards=getattr(ctx.params, "shards", 1),  # embed_images_shard only
        shard=getattr(ctx.params, "shard", None),
    )
    ctx.record(**summary)
