"""prepare_data: adapter; the logic is neurodissect.data.prepare.prepare_dataset."""

from pathlib import Path

from neurodissect.data.prepare import PrepareParams, prepare_dataset
from neurodissect.runtime import RunContext

params = PrepareParams.from_config(snakemake.params.cfg)
with RunContext.from_snakemake(snakemake, seed=params.split_seed) as ctx:
    result = prepare_dataset(
        ctx.params.fmt,
        ctx.params.root,
        Path(ctx.output.manifest).parent,
        params,
        options=dict(ctx.params.options),
        threads=ctx.threads,
    )
    ctx.record(n_images=result.n_images, n_skipped=result.n_skipped, **result.split_counts)
