# The atlas: a static offline site to browse every unit, latent, class and explanation of
# a run (open results/{dataset}/{model}/atlas/index.html). Reads only finished artifacts.


include: "inputs/atlas.smk"


rule atlas:
    input:
        unpack(atlas_inputs),
    output:
        index=report(
            "results/{dataset}/{model}/atlas/index.html",
            caption="../report/atlas.rst",
            category="Atlas",
            subcategory="{dataset} {model}",
        ),
        site=directory("results/{dataset}/{model}/atlas/site"),
    log:
        "results/{dataset}/logs/{model}/atlas.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/atlas.tsv"
    params:
        code=script_code("atlas"),
        cfg=settings("atlas", "atlas.settings:AtlasParams"),
        layers=LAYERS,
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    script:
        "../scripts/atlas.py"
