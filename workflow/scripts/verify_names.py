"""verify_names: adapter; the logic is neurodissect.verify.run.verify_names."""

from neurodissect.runtime import RunContext
from neurodissect.verify import VerifyParams, verify_names

with RunContext.from_snakemake(snakemake) as ctx:
    inp, p = ctx.input, ctx.params
    summary = verify_names(
        inp.names,
        inp.opaque,
        inp.manifest,
        inp.gt_synonyms,
        ctx.output.table,
        ctx.output.metrics,
        ctx.output.figure,
        kind=p.kind,
        synth=p.synth,
        arch=p.arch,
        layer=p.layer,
        params=VerifyParams.from_config(p.cfg, p.model_input, p.model_input, {"device": p.device}),
        sae_pt=inp.get("sae"),
        dpi=p.dpi,
    )
    ctx.record(**summary)
