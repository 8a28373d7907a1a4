# Concept activation vectors for the named SAE latents (the CBM's candidate dictionary;
# cbm.smk selects from them). Input functions: cav_inputs in inputs/cav.smk.


include: "inputs/cav.smk"


rule train_cavs:
    input:
        unpack(cav_inputs),
    output:
        cavs=directory("results/{dataset}/{model}/cbm/cavs.zarr"),
        accuracy="results/{dataset}/{model}/cbm/cav_accuracy.parquet",
    log:
        "results/{dataset}/logs/{model}/train_cavs.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/train_cavs.tsv"
    params:
        code=script_code("train_cavs"),
        cfg=settings("cav", "cav:CAVParams"),
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/train_cavs.py"

