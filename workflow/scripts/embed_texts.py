"""embed_texts: adapter; the logic is neurodissect.clip.embed.embed_texts."""

from neurodissect.clip.embed import embed_texts
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = embed_texts(
        ctx.input.model,
        ctx.input.concepts,
        ctx.output.store,
        template=ctx.params.template,
        device=ctx.params.runtime["device"],
    )
    ctx.record(**summary)
