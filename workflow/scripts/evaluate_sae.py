"""evaluate_sae: adapter; the logic is neurodissect.sae.evaluate.evaluate_sae."""

from neurodissect.runtime import RunContext, pick_device
from neurodissect.sae.evaluate import SAEEvalParams, evaluate_sae

with RunContext.from_snakemake(snakemake) as ctx:
    inp = ctx.input
    evaluate_sae(
        inp.model,
        inp.acts,
        inp.latents,
        inp.manifest,
        inp.opaque,
        ctx.params.arch,
        ctx.output.metrics,
        ctx.output.groundtruth,
        SAEEvalParams.from_config(ctx.params.cfg),
        concepts_path=inp.concepts,
        gt_table=inp.gt_table,
        gt_synonyms=inp.gt_synonyms,
        verification=inp.get("verification"),
        device=ctx.params.device,
    )
    ctx.record(device=str(pick_device(ctx.params.device)))
