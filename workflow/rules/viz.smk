# Per-run summary figure: every stage's headline metrics on one page.


rule figures:
    input:
        opaque="results/{dataset}/{model}/opaque/metrics.json",
        annotations=expand(
            "results/{{dataset}}/{{model}}/annotate/{layer}/metrics.json", layer=LAYERS
        ),
        sae="results/{dataset}/{model}/sae/metrics.json",
        cbm="results/{dataset}/{model}/cbm/metrics.json",
    output:
        summary=report(
            "results/{dataset}/{model}/figures/summary.png",
            caption="../report/summary.rst",
            category="Summary",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/figures.log",
    params:
        code=script_code("figures"),
        layers=LAYERS,
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figures.py"
