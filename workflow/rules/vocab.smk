# The concept vocabulary: spaCy noun phrases of the train-split reports (negated
# mentions dropped) — its own or those of the dataset vocab.reports_from — or
# vocab.concept_list; plus the per-report phrases the
# report namer reads. Input functions: vocab_inputs (inputs/vocab.smk).


include: "inputs/vocab.smk"


rule build_vocabulary:
    input:
        unpack(vocab_inputs),
    output:
        concepts="results/{dataset}/vocab/concepts.parquet",
        doc_phrases="results/{dataset}/vocab/doc_phrases.parquet",
    log:
        "results/{dataset}/logs/build_vocabulary.log",
    benchmark:
        "results/{dataset}/benchmarks/build_vocabulary.tsv"
    params:
        code=script_code("build_vocabulary"),
        cfg=vocab_config,
    conda:
        "../../envs/nlp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/build_vocabulary.py"
