"""build_cbm: adapter; the logic is neurodissect.cbm.model.build_cbm."""

from neurodissect.cbm.model import CBMParams, build_cbm
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    inp = ctx.input
    summary = build_cbm(
        inp.acts,
        inp.cavs,
        inp.selected,
        inp.manifest,
        ctx.output.scores,
        ctx.output.model,
        CBMParams.from_config(ctx.params.cfg),
        device=ctx.params.device,
    )
    ctx.record(**summary)
