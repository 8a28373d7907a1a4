"""sae_baselines: adapter; the logic is neurodissect.sae.baselines.sae_baselines."""

from neurodissect.runtime import RunContext
from neurodissect.sae.baselines import BaselineParams, sae_baselines

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    sae_baselines(
        ctx.input.acts,
        ctx.input.model,
        ctx.input.latents,
        ctx.output.table,
        BaselineParams.from_config(ctx.params.cfg),
        gt_table=ctx.input.gt_table,
        figure_out=ctx.output.figure,
        dpi=ctx.params.dpi,
    )
