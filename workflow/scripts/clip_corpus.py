"""clip_corpus: adapter; the logic is neurodissect.clip.corpus.build_corpus."""

from pathlib import Path

from neurodissect.clip.corpus import CorpusSettings, build_corpus
from neurodissect.runtime import RunContext

corpus = CorpusSettings.from_config(snakemake.params.corpus)
with RunContext.from_snakemake(snakemake, seed=corpus.seed) as ctx:
    build_corpus(
        ctx.params.kind,
        ctx.output.raw,
        Path(ctx.output.manifest).parent,
        corpus.synth(ctx.params.synth),
        workers=ctx.threads,
    )
    ctx.record(n_images=corpus.n)
