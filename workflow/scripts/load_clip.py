"""load_clip: adapter; the logic is neurodissect.clip.load.obtain_clip."""

from neurodissect.clip.load import obtain_clip
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    cfg = ctx.params.cfg
    summary = obtain_clip(
        ctx.input.manifest,
        ctx.output.model,
        ctx.output.metrics,
        source=cfg["source"],
        model_name=cfg.get("model_name", ""),
        pretrained=cfg.get("pretrained", ""),
        path=cfg.get("path"),
        batch_size=cfg["batch_size"],
        device=ctx.params.runtime["device"],
        num_workers=ctx.params.runtime["num_workers"],
    )
    ctx.record(**summary)
