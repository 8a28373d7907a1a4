"""build_vocabulary: adapter; the logic is neurodissect.vocab.build_vocabulary."""

from neurodissect.runtime import RunContext
from neurodissect.vocab import VocabParams, build_vocabulary

with RunContext.from_snakemake(snakemake) as ctx:
    summary = build_vocabulary(
        ctx.input.manifest,
        ctx.output.concepts,
        ctx.output.doc_phrases,
        params=VocabParams.from_config(ctx.params.cfg),
        reports_manifest=ctx.input.get("reports_manifest"),
    )
    ctx.record(**summary)
