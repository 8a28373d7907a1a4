"""evaluate_annotation: adapter; the logic is neurodissect.evaluate.annotation.evaluate_annotation."""

from neurodissect.evaluate.annotation import (
    AnnotationEvalParams,
    AnnotationInputs,
    clip_encoder,
    evaluate_annotation,
)
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    inp = dict(ctx.input.items())
    summary = evaluate_annotation(
        AnnotationInputs(**inp),
        ctx.output.metrics,
        ctx.output.units,
        ctx.output.figures,
        AnnotationEvalParams.from_config(ctx.params.cfg),
        arch=ctx.params.arch,
        n_figure_units=ctx.params.figures["n_units"],
        dpi=ctx.params.figures["dpi"],
        clip_encoder=clip_encoder(inp["clip_model"]),
    )
    ctx.record(**summary)
