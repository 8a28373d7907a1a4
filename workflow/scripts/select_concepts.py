"""select_concepts: adapter; the logic is neurodissect.cbm.selection.select_concepts."""

from neurodissect.cbm.selection import SelectParams, select_concepts
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    summary = select_concepts(
        ctx.input.cavs,
        ctx.input.accuracy,
        ctx.output.selected,
        SelectParams.from_config(ctx.params.cfg),
        opaque_path=dict(ctx.input.items()).get("opaque"),
        arch=ctx.params.arch,
        manifest_path=dict(ctx.input.items()).get("manifest"),
    )
    ctx.record(**summary)
