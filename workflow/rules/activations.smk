# Activations of every layer in EXTRACT_LAYERS (config `layers` plus the SAE's
# input layer) from ONE forward pass per batch, one Zarr store per layer.


rule extract_activations:
    input:
        manifest="results/{dataset}/data/manifest.parquet",
        model="results/{dataset}/{model}/opaque/model.pt",
    output:
        stores=[
            directory(f"results/{{dataset}}/{{model}}/activations/{layer}.zarr")
            for layer in EXTRACT_LAYERS
        ],
    log:
        "results/{dataset}/logs/{model}/extract_activations.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/extract_activations.tsv"
    params:
        code=code_version("activations", "models", "data.manifest", "data.images"),
        cfg=section("activations"),
        image_size=config["opaque"]["image_size"],
        runtime=section("runtime"),
        layers=EXTRACT_LAYERS,
        arch=model_arch,
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/extract_activations.py"


ALL_TARGETS += expand(
    rules.extract_activations.output.stores, dataset=DATASETS, model=MODELS
)
