# Sparse autoencoder on the opaque model's features: train on the train split,
# encode every image, evaluate on a held-out split (after naming, which
# named_correct_fraction needs). Input functions: sae_* in inputs/sae.smk.


include: "inputs/sae.smk"


rule train_sae:
    input:
        acts=sae_features,
    output:
        model="results/{dataset}/{model}/sae/sae.pt",
        history="results/{dataset}/{model}/sae/history.csv",
        curve=report(
            "results/{dataset}/{model}/figures/sae_training.png",
            caption="../report/sae_training.rst",
            category="SAE",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/train_sae.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/train_sae.tsv"
    params:
        code=script_code("train_sae"),
        cfg=sae_train_config(),
        device=config["runtime"]["device"],
        resume=lambda wc: f"results/{wc.dataset}/{wc.model}/sae/.resume",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/train_sae.py"


rule encode_latents:
    input:
        model=rules.train_sae.output.model,
        acts=sae_features,
    output:
        latents=directory("results/{dataset}/{model}/sae/latents.zarr"),
    log:
        "results/{dataset}/logs/{model}/encode_latents.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/encode_latents.tsv"
    params:
        code=script_code("encode_latents"),
        device=config["runtime"]["device"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/encode_latents.py"


rule evaluate_sae:
    input:
        unpack(sae_evaluation_inputs),
    output:
        metrics="results/{dataset}/{model}/sae/metrics.json",
        groundtruth="results/{dataset}/{model}/sae/groundtruth.parquet",
    log:
        "results/{dataset}/logs/{model}/evaluate_sae.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/evaluate_sae.tsv"
    params:
        code=script_code("evaluate_sae"),
        cfg=settings("sae", "sae.evaluate:SAEEvalParams"),
        arch=model_arch,
        device=config["runtime"]["device"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/evaluate_sae.py"


rule sae_baselines:
    input:
        acts=sae_features,
        model=rules.train_sae.output.model,
        latents=rules.encode_latents.output.latents,
        gt_table="results/{dataset}/data/concepts_gt.parquet",
    output:
        table="results/{dataset}/{model}/sae/baselines.parquet",
        figure=report(
            "results/{dataset}/{model}/figures/sae_baselines.png",
            caption="../report/sae_baselines.rst",
            category="SAE",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/sae_baselines.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/sae_baselines.tsv"
    params:
        code=script_code("sae_baselines"),
        cfg=settings("sae", "sae.baselines:BaselineParams"),
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/sae_baselines.py"
