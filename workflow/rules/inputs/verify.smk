# Input functions and parameter helpers of the verify rules (verify.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def verify_inputs(wildcards):
    """verify_names inputs: the names of `units`, the models that respond, the synonyms."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    inputs = {
        "names": f"{run}/{wildcards.units}/neuron_concepts.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "manifest": f"{data}/manifest.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }
    if wildcards.units == "sae":
        inputs.update(names=f"{run}/sae/concepts.parquet", sae=f"{run}/sae/sae.pt")
    return inputs
