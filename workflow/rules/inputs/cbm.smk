# Input functions and parameter helpers of the cbm rules (cbm.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def selection_inputs(wildcards):
    """select_concepts inputs: the CAVs and their accuracy, plus the opaque model when
    cbm.class_relevance weighs concepts by its head and the manifest (class names) when
    cbm.exclude_class_names drops concepts named like a class."""
    cbm = f"results/{wildcards.dataset}/{wildcards.model}/cbm"
    inputs = {"cavs": f"{cbm}/cavs.zarr", "accuracy": f"{cbm}/cav_accuracy.parquet"}
    if config["cbm"]["class_relevance"]:
        inputs["opaque"] = f"results/{wildcards.dataset}/{wildcards.model}/opaque/model.pt"
    if config["cbm"]["exclude_class_names"]:
        inputs["manifest"] = f"results/{wildcards.dataset}/data/manifest.parquet"
    return inputs


def cbm_inputs(wildcards):
    """build_cbm inputs: features, CAVs, the selection, the manifest."""
    cbm = f"results/{wildcards.dataset}/{wildcards.model}/cbm"
    return {
        "acts": sae_features(wildcards),
        "cavs": f"{cbm}/cavs.zarr",
        "selected": f"{cbm}/selected.parquet",
        "manifest": f"results/{wildcards.dataset}/data/manifest.parquet",
    }


def cbm_evaluation_inputs(wildcards):
    """evaluate_cbm inputs (the planted-concept truth is empty for real datasets)."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    return {
        "model": f"{run}/cbm/model.npz",
        "scores": f"{run}/cbm/scores.zarr",
        "acts": sae_features(wildcards),
        "manifest": f"{data}/manifest.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "opaque_metrics": f"{run}/opaque/metrics.json",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }
