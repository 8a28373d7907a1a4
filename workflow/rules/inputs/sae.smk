# Input functions and parameter helpers of the sae rules (sae.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def sae_features(wildcards):
    """The activation store the SAE reads (sae.layer of this run)."""
    return (
        f"results/{wildcards.dataset}/{wildcards.model}/activations/{config['sae']['layer']}.zarr"
    )


def sae_train_config():
    """sae.* that shape training: the loop's and the variants' settings (every sae key but
    the layer, which is the input path, and those only evaluation or baselines read)."""
    train = settings("sae", "sae.train:SAETrainParams")
    evaluation = {**settings("sae", "sae.evaluate:SAEEvalParams"),
                  **settings("sae", "sae.baselines:BaselineParams")}  # fmt: skip
    return {k: v for k, v in config["sae"].items()
            if k != "layer" and (k in train or k not in evaluation)}  # fmt: skip


def sae_evaluation_inputs(wildcards):
    """evaluate_sae inputs (the planted-concept truth is empty for real datasets)."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    inputs = {
        "model": f"{run}/sae/sae.pt",
        "acts": sae_features(wildcards),
        "latents": f"{run}/sae/latents.zarr",
        "concepts": f"{run}/sae/concepts.parquet",
        "manifest": f"{data}/manifest.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }
    inputs.update(verification_input(wildcards, "sae"))
    return inputs
