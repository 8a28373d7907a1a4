# Provenance audit of everything the DAG built (its input: every other final target,
# see neurodissect.dag.targets), and the RO-Crate export of that provenance.


rule audit:
    input:
        dag_targets.audited_targets(run_grid()),
    output:
        report=dag_targets.AUDIT["report"],
        rocrate=dag_targets.AUDIT["rocrate"],
    log:
        "results/logs/audit.log",
    params:
        code=script_code("audit"),
        results_dir=storage_results_dir,
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../scripts/audit.py"
