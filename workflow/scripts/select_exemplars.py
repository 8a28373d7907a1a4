"""select_exemplars: adapter; the logic is neurodissect.annotate.exemplars.select_exemplars."""

from neurodissect.annotate.exemplars import ExemplarParams, select_exemplars
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = select_exemplars(
        ctx.input.acts, ctx.output.exemplars, ExemplarParams.from_config(ctx.params.cfg)
    )
    ctx.record(**summary)
