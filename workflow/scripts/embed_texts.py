"""embed_texts: adapter; the logic is neurodissect.clip.embed.embed_texts."""

from neurodissect.clip.embed import TextEmbedParams, embed_texts
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = embed_texts(
        ctx.input.model,
        ctx.input.concepts,
        ctx.output.store,
        TextEmbedParams.from_config(ctx.params.cfg, ctx.params.runtime),
    )
    ctx.record(**summary)
