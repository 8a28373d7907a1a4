# Provenance audit of everything the DAG built (included last: its input is
# every other final target), and the RO-Crate export of that provenance.


rule audit:
    input:
        list(ALL_TARGETS),
    output:
        report="results/audit.json",
        rocrate="results/ro-crate-metadata.json",
    log:
        "results/logs/audit.log",
    params:
        code=code_version("provenance", "data.manifest"),
        results_dir=storage_results_dir,
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../scripts/audit.py"


ALL_TARGETS += rules.audit.output
