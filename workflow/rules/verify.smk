# Names verified by intervention (synthetic data): for every named unit of a dissected
# layer (annotate/{layer}) and every named SAE latent (sae), probe images rendered with
# and without the named planted concept; a name is confirmed when the unit responds more
# with it. The evaluate rules merge verification.json into their metrics.json.
# Input functions: verify_inputs, verify_synth (common.smk).


rule verify_names:
    input:
        unpack(verify_inputs),
    output:
        table="results/{dataset}/{model}/{units}/verification.parquet",
        metrics="results/{dataset}/{model}/{units}/verification.json",
        figure=report(
            "results/{dataset}/{model}/figures/verify/{units}.png",
            caption="../report/verify.rst",
            category="Verification",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/{units}/verify_names.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/{units}/verify_names.tsv"
    wildcard_constraints:
        units=ANNOTATE_UNITS,
    params:
        code=lambda wc: code_version(
            "viz.verify", *VERIFY_MODULES, *(["sae"] if wc.units == "sae" else [])
        ),
        cfg=section(
            "verify", "n_pairs", "batch_size", "significance", "first_index",
            "min_informative_pairs", "max_pairs",
        ),
        kind=lambda wc: dataset_cfg(wc)["format"],
        synth=verify_synth,
        layer=lambda wc: config["sae"]["layer"] if wc.units == "sae" else wc.units.split("/", 1)[1],
        arch=model_arch,
        model_input=model_input(),
        device=config["runtime"]["device"],
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/verify_names.py"


ALL_TARGETS += [
    f"results/{d}/{m}/figures/verify/{units}.png"
    for d in DATASETS
    if generated_synth(d) is not None
    for m in MODELS
    for units in [*(f"annotate/{layer}" for layer in LAYERS), "sae"]
]
