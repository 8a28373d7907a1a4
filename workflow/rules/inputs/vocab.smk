# Input functions and parameter helpers of the vocab rules (vocab.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def vocab_inputs(wildcards):
    """build_vocabulary inputs: the manifest, plus vocab.concept_list so editing it reruns."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if config["vocab"]["concept_list"]:
        inputs["concept_list"] = user_file(config["vocab"]["concept_list"])
    if REPORTS_FROM is not None and REPORTS_FROM != wildcards.dataset:
        inputs["reports_manifest"] = f"results/{REPORTS_FROM}/data/manifest.parquet"
    return inputs


def vocab_config(wildcards):
    """vocab.*; the report source itself mines its own reports (reports_from: null)."""
    cfg = settings("vocab", "vocab:VocabParams")
    if cfg["reports_from"] == wildcards.dataset:
        cfg = {**cfg, "reports_from": None}
    return cfg
