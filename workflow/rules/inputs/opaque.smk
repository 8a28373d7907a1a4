# Input functions and parameter helpers of the opaque rules (opaque.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def opaque_weights_file():
    """opaque.weights when it names a file (not none / torchvision), else None."""
    weights = config["opaque"]["weights"]
    return None if weights in ("none", "torchvision") else weights


def opaque_inputs(wildcards):
    """train_opaque inputs: the manifest, plus the weights file so replacing it retrains."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if opaque_weights_file():
        inputs["weights"] = user_file(opaque_weights_file())
    return inputs
