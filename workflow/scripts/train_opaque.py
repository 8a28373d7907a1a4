"""train_opaque: adapter; the logic is neurodissect.opaque.train.train_opaque."""

from neurodissect.opaque.train import OpaqueTrainParams, train_opaque
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake, seed=snakemake.params.seed) as ctx:
    summary = train_opaque(
        ctx.input.manifest,
        ctx.output.model,
        ctx.output.metrics,
        ctx.output.history,
        ctx.output.curve,
        arch=ctx.params.arch,
        seed=ctx.params.seed,
        params=OpaqueTrainParams.from_config(ctx.params.cfg, ctx.params.runtime),
        resume_dir=ctx.params.resume,
        threads=ctx.threads,
        dpi=ctx.params.dpi,
        title=f"{ctx.wildcards['dataset']} {ctx.wildcards['model']}",
    )
    ctx.record(**summary)
