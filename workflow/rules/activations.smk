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
        code=script_code("extract_activations"),
        cfg=settings("activations", "activations.extract:ExtractParams"),
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


# activations.shards: S > 1 splits extraction into S jobs (one GPU each), each writing a
# chunk- and batch-aligned row range of every layer's store as a part; seal_activations
# checks that the parts tile every split and links them into the stores above (byte-equal
# to S = 1). The ruleorder makes the sealed stores win over the one-job rule.
if config["activations"]["shards"] > 1:

    rule extract_activations_shard:
        input:
            manifest="results/{dataset}/data/manifest.parquet",
            model="results/{dataset}/{model}/opaque/model.pt",
        output:
            stores=[
                directory(f"results/{{dataset}}/{{model}}/activations/shards/{{shard}}/{layer}.zarr")
                for layer in EXTRACT_LAYERS
            ],
        log:
            "results/{dataset}/logs/{model}/extract_activations_shard{shard}.log",
        benchmark:
            "results/{dataset}/benchmarks/{model}/extract_activations_shard{shard}.tsv"
        wildcard_constraints:
            shard=r"\d+",
        params:
            code=script_code("extract_activations"),
            cfg=settings("activations", "activations.extract:ExtractParams"),
            image_size=config["opaque"]["image_size"],
            runtime=section("runtime"),
            layers=EXTRACT_LAYERS,
            arch=model_arch,
            shard=lambda w: int(w.shard),
        conda:
            "../../envs/torch.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=120,
        script:
            "../scripts/extract_activations.py"

    rule seal_activations:
        input:
            parts=lambda w: [
                f"results/{w.dataset}/{w.model}/activations/shards/{i}/{layer}.zarr"
                for layer in EXTRACT_LAYERS
                for i in range(config["activations"]["shards"])
            ],
        output:
            stores=[
                directory(f"results/{{dataset}}/{{model}}/activations/{layer}.zarr")
                for layer in EXTRACT_LAYERS
            ],
        log:
            "results/{dataset}/logs/{model}/seal_activations.log",
        benchmark:
            "results/{dataset}/benchmarks/{model}/seal_activations.tsv"
        params:
            code=script_code("seal_activations"),
            shards=config["activations"]["shards"],
            layers=EXTRACT_LAYERS,
        conda:
            "../../envs/core.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        script:
            "../scripts/seal_activations.py"

    ruleorder: seal_activations > extract_activations
