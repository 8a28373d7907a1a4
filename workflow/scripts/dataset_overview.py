"""dataset_overview: adapter; the logic is neurodissect.viz.data.plot_dataset_overview."""

from neurodissect.runtime import RunContext
from neurodissect.viz.data import plot_dataset_overview

with RunContext.from_snakemake(snakemake) as ctx:
    shown = plot_dataset_overview(
        ctx.input.manifest,
        ctx.input.boxes,
        ctx.input.concepts_gt,
        ctx.output.figure,
        per_class=ctx.params.per_class,
        dpi=ctx.params.dpi,
        title=ctx.wildcards["dataset"],
    )
    ctx.record(n_images_shown=shown)
