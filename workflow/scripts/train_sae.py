"""train_sae: adapter; the logic is neurodissect.sae.train.train_sae."""

from neurodissect.runtime import RunContext
from neurodissect.sae.train import SAESettings, train_sae

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    summary = train_sae(
        ctx.input.acts,
        ctx.output.model,
        ctx.output.history,
        ctx.output.curve,
        SAESettings.from_config(ctx.params.cfg),
        device=ctx.params.device,
        resume_dir=ctx.params.resume,
        dpi=ctx.params.dpi,
    )
    ctx.record(**summary)
