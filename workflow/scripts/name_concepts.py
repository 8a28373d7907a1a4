"""name_concepts: adapter; the logic is neurodissect.naming.run.name_concepts."""

from neurodissect.naming.run import NamingParams, name_concepts
from neurodissect.runtime import RunContext
from neurodissect.viz.naming import plot_named_concepts

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    params = NamingParams.from_config(ctx.params.cfg)
    named_inputs = dict(ctx.input.items())  # the method decides which are present
    optional = ("manifest", "doc_phrases", "vocabulary", "image_emb", "text_emb")
    summary = name_concepts(
        ctx.input.exemplars,
        ctx.input.latents,
        ctx.output.concepts,
        ctx.output.skipped,
        params,
        dataset=ctx.wildcards["dataset"],
        **{k: named_inputs[k] for k in optional if k in named_inputs},
    )
    plot_named_concepts(ctx.output.concepts, ctx.output.figure, params.significance, ctx.params.dpi)
    ctx.record(**summary)
