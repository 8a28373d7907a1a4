# Cross-run evaluation: one comparison table (+ figure) of every run's metrics.


rule compare:
    input:
        metrics=dag_targets.metrics_files(dag_targets.stage_targets(run_grid())),
    output:
        summary=dag_targets.COMPARISON["summary"],
        markdown=dag_targets.COMPARISON["markdown"],
        long=dag_targets.COMPARISON["long"],
        figure=report(
            dag_targets.COMPARISON["figure"],
            caption="../report/comparison.rst",
            category="Comparison",
        ),
    log:
        "results/logs/compare.log",
    params:
        code=script_code("compare"),
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/compare.py"

