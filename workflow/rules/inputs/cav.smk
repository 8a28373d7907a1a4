# Input functions and parameter helpers of the cav rules (cav.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def cav_inputs(wildcards):
    """train_cavs inputs: the SAE's input features, its latents and names, the manifest."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    return {
        "acts": sae_features(wildcards),
        "latents": f"{run}/sae/latents.zarr",
        "concepts": f"{run}/sae/concepts.parquet",
        "manifest": f"results/{wildcards.dataset}/data/manifest.parquet",
    }


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
