"""synthesize_data: adapter; the logic is neurodissect.data.synth.generate."""

from neurodissect.data.synth import SynthParams, generate
from neurodissect.runtime import RunContext

params = SynthParams.from_config(
    snakemake.params.synth, f"datasets.{snakemake.wildcards['dataset']}.synth"
)
with RunContext.from_snakemake(snakemake, seed=params.seed) as ctx:
    generate(ctx.params.kind, ctx.output.raw, params, workers=ctx.threads)
