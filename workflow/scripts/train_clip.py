"""train_clip: adapter; the logic is neurodissect.clip.train.train_clip."""

from neurodissect.clip.train import ClipParams, train_clip
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    summary = train_clip(
        ctx.input.manifest,
        ctx.output.model,
        ctx.output.metrics,
        ctx.output.history,
        ctx.output.curve,
        params=ClipParams.from_config(ctx.params.cfg, ctx.params.runtime),
        resume_dir=ctx.params.resume,
        threads=ctx.threads,
        dpi=ctx.params.dpi,
        title=ctx.wildcards["dataset"],
        corpus_path=ctx.input.get("corpus"),
    )
    ctx.record(**summary)
