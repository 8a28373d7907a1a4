# The image-text model and its embeddings. clip.source picks ONE rule for
# results/{dataset}/clip/model/ (an open_clip local-dir): train_clip (a small CLIP
# trained on the train-split image-report pairs; its per-epoch resume checkpoint
# clip/.resume/ is deliberately not an output) or load_clip (a pretrained or local
# model). With clip.corpus.n > 0 (synthetic datasets), clip_corpus first generates the
# CLIP's own image-report corpus (same generator, another seed) under clip/corpus/ and
# train_clip trains on it only. Input functions: clip_* in inputs/clip.smk.


include: "inputs/clip.smk"


if config["clip"]["source"] == "train":

    rule clip_corpus:
        output:
            raw=directory("results/{dataset}/clip/corpus/raw"),
            manifest="results/{dataset}/clip/corpus/data/manifest.parquet",
        log:
            "results/{dataset}/logs/clip_corpus.log",
        benchmark:
            "results/{dataset}/benchmarks/clip_corpus.tsv"
        params:
            code=script_code("clip_corpus"),
            kind=lambda wc: dataset_cfg(wc)["format"],
            corpus=config["clip"]["corpus"],
            synth=clip_corpus_synth,
        conda:
            "../../envs/torch.yaml"  # the package's clip stage imports torch
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/clip_corpus.py"

    rule train_clip:
        input:
            unpack(clip_train_inputs),
        output:
            model=directory("results/{dataset}/clip/model"),
            metrics="results/{dataset}/clip/metrics.json",
            history="results/{dataset}/clip/history.csv",
            curve=report(
                "results/{dataset}/clip/training.png",
                caption="../report/clip_training.rst",
                category="CLIP",
                subcategory="{dataset}",
            ),
        log:
            "results/{dataset}/logs/train_clip.log",
        benchmark:
            "results/{dataset}/benchmarks/train_clip.tsv"
        params:
            code=script_code("train_clip"),
            cfg=settings("clip", "clip.train:ClipParams"),
            runtime=section("runtime"),
            resume=lambda wc: f"results/{wc.dataset}/clip/.resume",
            dpi=config["figures"]["dpi"],
        conda:
            "../../envs/torch.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=4000,
            runtime=120,
        script:
            "../scripts/train_clip.py"

else:

    rule load_clip:
        input:
            unpack(clip_load_inputs),
        output:
            model=directory("results/{dataset}/clip/model"),
            metrics="results/{dataset}/clip/metrics.json",
        log:
            "results/{dataset}/logs/load_clip.log",
        benchmark:
            "results/{dataset}/benchmarks/load_clip.tsv"
        params:
            code=script_code("load_clip"),
            cfg=clip_load_config(),
            runtime=section("runtime"),
        conda:
            "../../envs/torch.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        script:
            "../scripts/load_clip.py"


rule embed_images:
    input:
        model="results/{dataset}/clip/model",
        manifest="results/{dataset}/data/manifest.parquet",
    output:
        store=directory("results/{dataset}/clip/image_emb.zarr"),
    log:
        "results/{dataset}/logs/embed_images.log",
    benchmark:
        "results/{dataset}/benchmarks/embed_images.tsv"
    params:
        code=script_code("embed_images"),
        cfg=settings("clip", "clip.embed:ImageEmbedParams"),
        runtime=section("runtime"),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/embed_images.py"


rule embed_texts:
    input:
        model="results/{dataset}/clip/model",
        concepts="results/{dataset}/vocab/concepts.parquet",
    output:
        store=directory("results/{dataset}/clip/text_emb.zarr"),
    log:
        "results/{dataset}/logs/embed_texts.log",
    benchmark:
        "results/{dataset}/benchmarks/embed_texts.tsv"
    params:
        code=script_code("embed_texts"),
        cfg=settings("annotate", "clip.embed:TextEmbedParams"),
        runtime=section("runtime"),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/embed_texts.py"


# activations.shards: S > 1 also splits embed_images into S jobs (one GPU each) writing
# chunk- and batch-aligned row ranges; seal_image_embeddings checks and seals them into
# clip/image_emb.zarr (byte-equal to one job). See seal_activations.
if config["activations"]["shards"] > 1:

    rule embed_images_shard:
        input:
            model="results/{dataset}/clip/model",
            manifest="results/{dataset}/data/manifest.parquet",
        output:
            store=directory("results/{dataset}/clip/shards/{shard}/image_emb.zarr"),
        log:
            "results/{dataset}/logs/embed_images_shard{shard}.log",
        benchmark:
            "results/{dataset}/benchmarks/embed_images_shard{shard}.tsv"
        wildcard_constraints:
            shard=r"\d+",
        params:
            code=script_code("embed_images"),
            cfg=settings("clip", "clip.embed:ImageEmbedParams"),
            runtime=section("runtime"),
            shards=config["activations"]["shards"],
            shard=lambda w: int(w.shard),
        conda:
            "../../envs/torch.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=4000,
            runtime=60,
        script:
            "../scripts/embed_images.py"

    rule seal_image_embeddings:
        input:
            parts=lambda w: [
                f"results/{w.dataset}/clip/shards/{i}/image_emb.zarr"
                for i in range(config["activations"]["shards"])
            ],
        output:
            stores=[directory("results/{dataset}/clip/image_emb.zarr")],
        log:
            "results/{dataset}/logs/seal_image_embeddings.log",
        benchmark:
            "results/{dataset}/benchmarks/seal_image_embeddings.tsv"
        params:
            code=script_code("seal_activations"),
            shards=config["activations"]["shards"],
            layers=["clip_image"],
        conda:
            "../../envs/core.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        script:
            "../scripts/seal_activations.py"

    ruleorder: seal_image_embeddings > embed_images
