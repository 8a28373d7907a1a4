# The target ("opaque") classifier of each (dataset, model): trained here, or
# loaded from opaque.weights with opaque.train: false. The per-epoch resume
# checkpoint (opaque/.resume/) is deliberately not an output: Snakemake would
# delete it before rerunning a killed job. Input functions: opaque_inputs.


include: "inputs/opaque.smk"


rule train_opaque:
    input:
        unpack(opaque_inputs),
    output:
        model="results/{dataset}/{model}/opaque/model.pt",
        metrics="results/{dataset}/{model}/opaque/metrics.json",
        history="results/{dataset}/{model}/opaque/history.csv",
        curve=report(
            "results/{dataset}/{model}/figures/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Opaque model",
            subcategory="{dataset} {model}",
        ),
    log:
        "results/{dataset}/logs/{model}/train_opaque.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/train_opaque.tsv"
    params:
        code=script_code("train_opaque"),
        cfg=settings("opaque", "opaque.train:OpaqueTrainParams"),
        runtime=section("runtime"),
        arch=model_arch,
        seed=model_seed,
        resume=lambda wc: f"results/{wc.dataset}/{wc.model}/opaque/.resume",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/train_opaque.py"
