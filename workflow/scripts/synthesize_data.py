"""synthesize_data: adapter; the logic is neurodissect.data.synth.generate."""

from neurodissect.data.synth import generate
from neurodissect.runtime import RunContext

opts = snakemake.params.synth
with RunContext.from_snakemake(snakemake, seed=opts["seed"]) as ctx:
    generate(
        ctx.params.kind,
        ctx.output.raw,
        n=opts["n"],
        size=opts["size"],
        seed=opts["seed"],
        noise=opts["noise"],
        difficulty=opts["difficulty"],
        workers=ctx.threads,
    )
