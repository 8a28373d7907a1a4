"""train_cavs: adapter; the logic is neurodissect.cav.train_cavs."""

from neurodissect.cav import CAVParams, train_cavs
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    inp = ctx.input
    summary = train_cavs(
        inp.acts,
        inp.latents,
        inp.concepts,
        inp.manifest,
        ctx.output.cavs,
        ctx.output.accuracy,
        CAVParams.from_config(ctx.params.cfg),
    )
    ctx.record(**summary)
