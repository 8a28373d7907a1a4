"""compare: adapter; the logic is neurodissect.evaluate.compare / viz.compare."""

from neurodissect.evaluate.compare import collect_metrics, write_comparison
from neurodissect.runtime import RunContext
from neurodissect.viz.compare import plot_comparison

with RunContext.from_snakemake(snakemake) as ctx:
    files = list(ctx.input.metrics)
    summary = write_comparison(
        "results", ctx.output.summary, ctx.output.markdown, ctx.output.long, files=files
    )
    plot_comparison(summary, collect_metrics("results", files), ctx.output.figure, ctx.params.dpi)
