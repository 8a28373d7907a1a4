# Stage data: the synthetic raw datasets (only for synthetic formats without a
# `root`), the manifest every later stage reads, and the dataset overview figure.
# Input functions: raw_inputs, synth_options (inputs/data.smk).


include: "inputs/data.smk"


rule synthesize_data:
    output:
        raw=directory("results/{dataset}/raw"),
    log:
        "results/{dataset}/logs/synthesize_data.log",
    benchmark:
        "results/{dataset}/benchmarks/synthesize_data.tsv"
    params:
        code=script_code("synthesize_data"),
        kind=lambda wc: dataset_cfg(wc)["format"],
        synth=synth_options,
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/synthesize_data.py"


rule prepare_data:
    input:
        raw_inputs,
    output:
        manifest="results/{dataset}/data/manifest.parquet",
        boxes="results/{dataset}/data/boxes.parquet",
        concepts_gt="results/{dataset}/data/concepts_gt.parquet",
        concepts_json="results/{dataset}/data/concepts_gt.json",
        skipped="results/{dataset}/data/skipped.parquet",
    log:
        "results/{dataset}/logs/prepare_data.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_data.tsv"
    params:
        code=script_code("prepare_data"),
        fmt=lambda wc: dataset_cfg(wc)["format"],
        root=raw_root,
        options=lambda wc: dataset_cfg(wc).get("options") or {},
        cfg=settings("data", "data.prepare:PrepareParams"),
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/prepare_data.py"


rule dataset_overview:
    input:
        manifest=rules.prepare_data.output.manifest,
        boxes=rules.prepare_data.output.boxes,
        concepts_gt=rules.prepare_data.output.concepts_gt,
    output:
        figure=report(
            "results/{dataset}/data/overview.png",
            caption="../report/dataset_overview.rst",
            category="Data",
            subcategory="{dataset}",
        ),
    log:
        "results/{dataset}/logs/dataset_overview.log",
    params:
        code=script_code("dataset_overview"),
        per_class=config["data"]["overview_per_class"],
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/dataset_overview.py"
