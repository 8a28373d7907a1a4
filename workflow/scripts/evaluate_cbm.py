"""evaluate_cbm: adapter; the logic is neurodissect.evaluate.cbm.evaluate_cbm, the
figures neurodissect.viz.cbm.cbm_figures."""

import pandas as pd

from neurodissect.cbm.model import load_model
from neurodissect.data.manifest import read_manifest
from neurodissect.evaluate.cbm import CBMEvalParams, evaluate_cbm
from neurodissect.runtime import RunContext
from neurodissect.verify.explanations import ProbeSettings, explanation_probe
from neurodissect.viz.cbm import cbm_figures

with RunContext.from_snakemake(snakemake) as ctx:
    inp, out, p = ctx.input, ctx.output, ctx.params
    probe_settings = ProbeSettings.from_config(
        p.kind, p.synth, p.arch, p.verify, p.model_input, {"device": p.device}
    )
    probe = explanation_probe(inp.opaque, inp.manifest, inp.gt_synonyms, probe_settings)
    result = evaluate_cbm(
        inp.model,
        inp.scores,
        inp.acts,
        inp.manifest,
        inp.opaque,
        inp.opaque_metrics,
        ctx.params.arch,
        out.metrics,
        out.explanations,
        CBMEvalParams.from_config(p.cfg),
        gt_table=inp.gt_table,
        gt_synonyms=inp.gt_synonyms,
        probe=probe,
    )
    model = load_model(inp.model)
    cbm_figures(
        result,
        pd.read_parquet(out.explanations),
        read_manifest(inp.manifest),
        model.concepts,
        model.classes,
        {
            "class_concepts": out.class_concepts,
            "explanations": out.image_explanations,
            "heatstrip": out.heatstrip,
        },
        ctx.params.n_images,
        ctx.params.dpi,
    )
    ctx.record(**result.metrics)
