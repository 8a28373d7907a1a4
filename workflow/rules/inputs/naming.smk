# Input functions and parameter helpers of the naming rules (naming.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def naming_inputs(wildcards):
    """name_concepts inputs: latents + exemplars, then what naming.method reads."""
    data = f"results/{wildcards.dataset}"
    sae = f"{data}/{wildcards.model}/sae"
    inputs = {
        "exemplars": f"{sae}/exemplars.parquet",
        "latents": f"{sae}/latents.zarr",
        "manifest": f"{data}/data/manifest.parquet",  # reports; class names to exclude
    }
    if config["naming"]["method"] in ("reports", "llm"):
        inputs["doc_phrases"] = f"{data}/vocab/doc_phrases.parquet"
        inputs["vocabulary"] = f"{data}/vocab/concepts.parquet"
    else:  # clip
        inputs["vocabulary"] = f"{data}/vocab/concepts.parquet"
        inputs["image_emb"] = f"{data}/clip/image_emb.zarr"
        inputs["text_emb"] = f"{data}/clip/text_emb.zarr"
    return inputs


def naming_config():
    """naming.* for name_concepts; the llm block only when it is used, so editing it
    does not rerun the offline namers."""
    cfg = settings("naming", "naming.run:NamingParams")
    if cfg["method"] != "llm":
        cfg.pop("llm")
    return cfg
