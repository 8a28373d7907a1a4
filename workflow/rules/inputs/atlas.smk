# Input functions and parameter helpers of the atlas rules (atlas.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def atlas_inputs(wildcards):
    """atlas inputs: every table, metrics file and activation store the site shows; layer
    i's files under keys layer<i>_* (params.layers names them); verify_names' tables
    only where that rule exists (synthetic data)."""
    data = f"results/{wildcards.dataset}/data"
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    inputs = {
        "manifest": f"{data}/manifest.parquet",
        "boxes": f"{data}/boxes.parquet",
        "opaque_metrics": f"{run}/opaque/metrics.json",
        "sae_exemplars": f"{run}/sae/exemplars.parquet",
        "sae_concepts": f"{run}/sae/concepts.parquet",
        "sae_skipped": f"{run}/sae/skipped_latents.parquet",
        "sae_groundtruth": f"{run}/sae/groundtruth.parquet",
        "sae_metrics": f"{run}/sae/metrics.json",
        "cbm_model": f"{run}/cbm/model.npz",
        "cbm_metrics": f"{run}/cbm/metrics.json",
        "cbm_explanations": f"{run}/cbm/explanations.parquet",
    }
    verify = "verify_names" in {r.name for r in workflow.rules} and (
        dataset_cfg(wildcards)["format"] in SYNTH_FORMATS
    )
    for i, layer in enumerate(LAYERS):
        units = f"{run}/annotate/{layer}"
        inputs[f"layer{i}_exemplars"] = f"{units}/exemplars.parquet"
        inputs[f"layer{i}_concepts"] = f"{units}/neuron_concepts.parquet"
        inputs[f"layer{i}_units"] = f"{units}/units.parquet"
        inputs[f"layer{i}_metrics"] = f"{units}/metrics.json"
        inputs[f"layer{i}_store"] = f"{run}/activations/{layer}.zarr"
        if verify:
            inputs[f"layer{i}_verification"] = f"{units}/verification.parquet"
    if verify:
        inputs["sae_verification"] = f"{run}/sae/verification.parquet"
    return inputs
