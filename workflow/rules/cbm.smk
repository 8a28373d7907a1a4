# The concept bottleneck model: the diverse, class-relevant subset of the CAVs that becomes
# its dictionary, OMP concept scores over them + a logistic regression on the scores (both
# feature variants), then opaque vs CBM on the test split, explanations and figures.
# Input functions: selection_inputs / cbm_* in inputs/cbm.smk.


include: "inputs/cbm.smk"


rule select_concepts:
    input:
        unpack(selection_inputs),
    output:
        selected="results/{dataset}/{model}/cbm/selected.parquet",
    log:
        "results/{dataset}/logs/{model}/select_concepts.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/select_concepts.tsv"
    params:
        code=script_code("select_concepts"),
        cfg=settings("cbm", "cbm.selection:SelectParams"),
        arch=model_arch,
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/select_concepts.py"


rule build_cbm:
    input:
        unpack(cbm_inputs),
    output:
        scores=directory("results/{dataset}/{model}/cbm/scores.zarr"),
        model="results/{dataset}/{model}/cbm/model.npz",
    log:
        "results/{dataset}/logs/{model}/build_cbm.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/build_cbm.tsv"
    params:
        code=script_code("build_cbm"),
        cfg=settings("cbm", "cbm.model:CBMParams"),
        device=config["runtime"]["device"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/build_cbm.py"


rule evaluate_cbm:
    input:
        unpack(cbm_evaluation_inputs),
    output:
        metrics="results/{dataset}/{model}/cbm/metrics.json",
        explanations="results/{dataset}/{model}/cbm/explanations.parquet",
        class_concepts=report(
            "results/{dataset}/{model}/figures/cbm_class_concepts.png",
            caption="../report/cbm_class_concepts.rst",
            category="CBM",
            subcategory="{dataset} {model}",
        ),
        image_explanations=report(
            "results/{dataset}/{model}/figures/cbm_explanations.png",
            caption="../report/cbm_explanations.rst",
            category="CBM",
            subcategory="{dataset} {model}",
        ),
        heatstrip=report(
            "results/{dataset}/{model}/figures/cbm_concept_scores.png",
            caption="../report/cbm_concept_scores.rst",
            category="CBM",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/evaluate_cbm.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/evaluate_cbm.tsv"
    params:
        code=script_code("evaluate_cbm"),
        cfg=settings("cbm", "evaluate.cbm:CBMEvalParams"),
        arch=model_arch,
        kind=lambda wc: dataset_cfg(wc)["format"],
        synth=verify_synth,
        verify=settings("verify", "verify.run:ExplanationSettings"),
        model_input=model_input(),
        device=config["runtime"]["device"],
        n_images=config["figures"]["n_images"],
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/evaluate_cbm.py"
