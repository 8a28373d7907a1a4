# Input functions and parameter helpers of the clip rules (clip.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


def clip_corpus_on():
    """clip.corpus.n > 0: train_clip reads the generated corpus, not the dataset's images."""
    return config["clip"]["source"] == "train" and config["clip"]["corpus"]["n"] > 0


def clip_corpus_synth(wildcards):
    """The dataset's generator options the corpus shares (its n and seed are the corpus')."""
    from neurodissect.clip.corpus import CorpusSettings, check_corpus_seed

    ds = dataset_cfg(wildcards)
    if ds["format"] not in SYNTH_FORMATS or ds.get("root"):
        raise WorkflowError(
            f"clip.corpus.n > 0 needs a synthetic dataset without a `root` (the corpus comes "
            f"from its generator); dataset '{wildcards.dataset}' is {ds['format']}: "
            "set clip.corpus.n: 0 or clip.source: open_clip / local"
        )
    try:
        check_corpus_seed(
            CorpusSettings.from_config(config["clip"]["corpus"]), ds["synth"]["seed"],
            wildcards.dataset,
        )  # fmt: skip
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None
    return {k: ds["synth"][k] for k in ("size", "noise", "difficulty")}


def clip_train_inputs(wildcards):
    """train_clip inputs: the dataset's manifest (evaluation), plus the corpus' if any."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if clip_corpus_on():
        inputs["corpus"] = f"results/{wildcards.dataset}/clip/corpus/data/manifest.parquet"
    return inputs


def clip_load_config():
    """clip.* of load_clip: the source and the evaluation batch size (LoadParams), plus the
    keys of the source's own settings class (neurodissect.dag.settings.CLIP_SOURCES)."""
    source = config["clip"]["source"]
    cfg = settings("clip", "clip.load:LoadParams")
    if source in dag_settings.CLIP_SOURCES:
        cfg.update(settings("clip", dag_settings.CLIP_SOURCES[source]))
    if str(config["clip"]["model_name"]).startswith("hf-hub:"):
        cfg.pop("pretrained", None)  # a hub repo has no tag
    return cfg


def clip_load_inputs(wildcards):
    """load_clip inputs: the manifest, plus the local-dir of clip.source: local."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if config["clip"]["source"] == "local":
        if not config["clip"]["path"]:
            raise WorkflowError("clip.source is 'local' but clip.path is not set")
        inputs["local_dir"] = user_file(config["clip"]["path"])
    elif config["clip"]["source"] == "transformers" and config["clip"]["path"]:
        inputs["local_dir"] = user_file(config["clip"]["path"])  # a save_pretrained folder
    return inputs
