# Per-run summary figure: every stage's headline metrics on one page.


rule summary_figure:
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
        "results/{dataset}/logs/{model}/summary_figure.log",
    params:
        code=script_code("summary_figure"),
        layers=LAYERS,
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/summary_figure.py"
