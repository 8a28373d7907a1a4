"""load_clip: adapter; the logic is neurodissect.clip.load.obtain_clip."""

from neurodissect.clip.load import LoadSettings, obtain_clip
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = obtain_clip(
        ctx.input.manifest,
        ctx.output.model,
        ctx.output.metrics,
        LoadSettings.from_config(ctx.params.cfg, ctx.params.runtime),
    )
    ctx.record(**summary)
