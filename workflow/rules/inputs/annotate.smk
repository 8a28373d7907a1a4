# Input functions and parameter helpers of the annotate rules (annotate.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


BOX_FORMATS = ("synthcxr", "nih14", "chestx-det")


def exemplar_config(wildcards):
    """select_exemplars settings: annotate.* for a layer's units, naming.exemplar_* for
    SAE latents (sparse, heavy-tailed activations need a lower adaptive threshold)."""
    spec = "annotate.exemplars:ExemplarParams"
    if wildcards.units != "sae":
        return settings("annotate", spec)
    # naming spells a field exemplar_<field> where it also has <field> for its own use
    n = config["naming"]
    names = dag_settings.field_names(spec, Path(_PKG_ROOT) / "neurodissect")
    return {f: n[f"exemplar_{f}"] if f"exemplar_{f}" in n else n[f] for f in names}


def units_store(wildcards):
    """The unit-activation store of `units`: a layer's activations or the SAE latents."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    if wildcards.units == "sae":
        return f"{run}/sae/latents.zarr"
    return f"{run}/activations/{wildcards.units.split('/', 1)[1]}.zarr"


def annotation_evaluation_inputs(wildcards):
    """evaluate_annotation inputs: the layer's annotation, truth tables, and for box
    datasets what localization needs (the CAM layer's maps and the head for class units)."""
    data = f"results/{wildcards.dataset}/data"
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    inputs = {
        "concepts": f"{run}/annotate/{wildcards.layer}/neuron_concepts.parquet",
        "exemplars": f"{run}/annotate/{wildcards.layer}/exemplars.parquet",
        "store": f"{run}/activations/{wildcards.layer}.zarr",
        "manifest": f"{data}/manifest.parquet",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
        "boxes": f"{data}/boxes.parquet",
        "text_emb": f"results/{wildcards.dataset}/clip/text_emb.zarr",
        "clip_model": f"results/{wildcards.dataset}/clip/model",
    }
    inputs.update(verification_input(wildcards, f"annotate/{wildcards.layer}"))
    cam_layer = config["annotate"]["cam_layer"]
    if dataset_cfg(wildcards)["format"] in BOX_FORMATS and cam_layer in EXTRACT_LAYERS:
        inputs["cam_store"] = f"{run}/activations/{cam_layer}.zarr"
        inputs["opaque"] = f"{run}/opaque/model.pt"
    return inputs
