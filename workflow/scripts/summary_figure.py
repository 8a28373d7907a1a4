"""summary_figure: adapter; the logic is neurodissect.viz.summary."""

from neurodissect.runtime import RunContext
from neurodissect.viz.summary import plot_summary

with RunContext.from_snakemake(snakemake) as ctx:
    wc = ctx.wildcards
    plot_summary(
        f"{wc['dataset']} / {wc['model']}",
        ctx.input.opaque,
        dict(zip(ctx.params.layers, ctx.input.annotations, strict=True)),
        ctx.input.sae,
        ctx.input.cbm,
        ctx.output.summary,
        dpi=ctx.params.dpi,
    )
