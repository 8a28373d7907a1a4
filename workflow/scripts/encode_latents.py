"""encode_latents: adapter; the logic is neurodissect.sae.encode.encode_latents."""

from neurodissect.runtime import RunContext
from neurodissect.sae.encode import encode_latents

with RunContext.from_snakemake(snakemake) as ctx:
    summary = encode_latents(
        ctx.input.model, ctx.input.acts, ctx.output.latents, device=ctx.params.device
    )
    ctx.record(**summary)
