# Naming SAE latents: one table (concepts.parquet) for all namers, every name
# with its permutation p-value and bootstrap stability; latents that cannot be
# named are listed in skipped_latents.parquet. Inputs depend on naming.method
# (naming_inputs in inputs/naming.smk).


include: "inputs/naming.smk"


rule name_concepts:
    input:
        unpack(naming_inputs),
    output:
        concepts="results/{dataset}/{model}/sae/concepts.parquet",
        skipped="results/{dataset}/{model}/sae/skipped_latents.parquet",
        figure=report(
            "results/{dataset}/{model}/figures/named_concepts.png",
            caption="../report/named_concepts.rst",
            category="SAE",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/name_concepts.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/name_concepts.tsv"
    params:
        code=script_code("name_concepts"),
        cfg=naming_config(),
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: int(config["naming"]["memory_mb"]) + 1000,
        runtime=60,
    script:
        "../scripts/name_concepts.py"
