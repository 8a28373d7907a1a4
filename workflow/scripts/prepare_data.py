"""prepare_data: adapter; the logic is neurodissect.data.prepare.prepare_dataset."""

from pathlib import Path

from neurodissect.data.prepare import prepare_dataset
from neurodissect.runtime import RunContext

cfg = snakemake.params.cfg
with RunContext.from_snakemake(snakemake, seed=cfg["split_seed"]) as ctx:
    result = prepare_dataset(
        ctx.params.fmt,
        ctx.params.root,
        Path(ctx.output.manifest).parent,
        on_bad_image=cfg["on_bad_image"],
        val_fraction=cfg["val_fraction"],
        test_fraction=cfg["test_fraction"],
        split_seed=cfg["split_seed"],
        options=dict(ctx.params.options),
        threads=ctx.threads,
    )
    ctx.record(n_images=result.n_images, n_skipped=result.n_skipped, **result.split_counts)
