# Concept activation vectors for the named SAE latents, then the diverse, class-relevant
# subset that becomes the CBM's dictionary. Input functions: cav_* / selection_* in
# inputs/cav.smk.


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
