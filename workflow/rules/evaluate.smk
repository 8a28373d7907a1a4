# Cross-run evaluation: one comparison table (+ figure) of every run's metrics.


rule compare:
    input:
        metrics=lambda wc: [t for t in ALL_TARGETS if t.endswith("metrics.json")],
    output:
        summary="results/comparison.parquet",
        markdown="results/comparison.md",
        long="results/comparison_long.parquet",
        figure=report(
            "results/figures/comparison.png",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
    log:
        "results/logs/compare.log",
    params:
        code=code_version("evaluate.compare", "viz.compare"),
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/compare.py"


# (only once some stage produces metrics)
if any(str(t).endswith("metrics.json") for t in ALL_TARGETS):
    ALL_TARGETS += rules.compare.output
