"""match_concepts: adapter; the logic is neurodissect.annotate.matching.match_concepts."""

from neurodissect.annotate.matching import MatchParams, match_concepts
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake, seed=snakemake.params.cfg["seed"]) as ctx:
    inp = ctx.input
    summary = match_concepts(
        inp.exemplars,
        inp.units_store,
        inp.image_emb,
        inp.text_emb,
        ctx.output.concepts,
        MatchParams.from_config(ctx.params.cfg),
        vocabulary=inp.vocabulary,
    )
    ctx.record(**summary)
