# Input functions and parameter helpers of the cbm rules (cbm.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


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
