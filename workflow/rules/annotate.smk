# Neuron annotation (MAMMI): exemplars per unit -> concepts per unit (with p-value and
# stability) -> metrics against known truth + figures. `units` is annotate/{layer} or sae
# (input function units_store in inputs/annotate.smk), so SAE latents get exemplars from
# the same rule (with naming.* settings); evaluate_annotation scores the dissected layers.


include: "inputs/annotate.smk"


rule select_exemplars:
    input:
        acts=units_store,
    output:
        exemplars="results/{dataset}/{model}/{units}/exemplars.parquet",
    log:
        "results/{dataset}/logs/{model}/{units}/select_exemplars.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/{units}/select_exemplars.tsv"
    wildcard_constraints:
        units=ANNOTATE_UNITS,
    params:
        code=script_code("select_exemplars"),
        cfg=exemplar_config,
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: int(exemplar_config(wc)["memory_mb"]) + 1000,
        runtime=30,
    script:
        "../scripts/select_exemplars.py"


rule match_concepts:
    input:
        exemplars=rules.select_exemplars.output.exemplars,
        units_store=units_store,
        image_emb="results/{dataset}/clip/image_emb.zarr",
        text_emb="results/{dataset}/clip/text_emb.zarr",
        vocabulary="results/{dataset}/vocab/concepts.parquet",
    output:
        concepts="results/{dataset}/{model}/{units}/neuron_concepts.parquet",
    log:
        "results/{dataset}/logs/{model}/{units}/match_concepts.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/{units}/match_concepts.tsv"
    wildcard_constraints:
        units=ANNOTATE_UNITS,
    params:
        code=script_code("match_concepts"),
        cfg=settings("annotate", "annotate.matching:MatchParams"),
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc: int(config["annotate"]["memory_mb"]) + 1000,
        runtime=60,
    script:
        "../scripts/match_concepts.py"


rule evaluate_annotation:
    input:
        unpack(annotation_evaluation_inputs),
    output:
        metrics="results/{dataset}/{model}/annotate/{layer}/metrics.json",
        units="results/{dataset}/{model}/annotate/{layer}/units.parquet",
        figures=report(
            directory("results/{dataset}/{model}/figures/annotate_{layer}"),
            patterns=["{name}.png"],
            caption="../report/annotation.rst",
            category="Neuron annotation",
            subcategory="{dataset} {model} {layer}",
        ),
    log:
        "results/{dataset}/logs/{model}/annotate/{layer}/evaluate_annotation.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/annotate/{layer}/evaluate_annotation.tsv"
    params:
        code=script_code("evaluate_annotation"),
        cfg=settings("annotate", "evaluate.annotation:AnnotationEvalParams"),
        figures=section("figures", "n_units", "dpi"),
        arch=model_arch,
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/evaluate_annotation.py"
