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

