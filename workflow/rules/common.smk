# Shared by all rule files — config validation, code fingerprints and
# input functions — so the rule files read like a table.
import os
import sys
from pathlib import Path

# The repository root, from this file's own place (workflow/rules/common.smk), not
# workflow.basedir: used as a Snakemake `module`, the main Snakefile lives elsewhere.
REPO_DIR = str(Path(workflow.current_basedir).parents[1])

# Parse-time helpers come from the package (config only: no torch import here).
# Jobs import it from the same folder, also inside conda envs and on cluster nodes.
_PKG_ROOT = os.path.join(REPO_DIR, "workflow")
sys.path.insert(0, _PKG_ROOT)
if _PKG_ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_PKG_ROOT, os.environ.get("PYTHONPATH")) if p
    )


# ...and pass it on to cluster jobs
envvars:
    "PYTHONPATH",

from neurodissect.config import validate as _validate_config  # noqa: E402
from neurodissect.config import parse_model  # noqa: E402
from neurodissect.dag import code as dag_code  # noqa: E402
from neurodissect.dag import targets as dag_targets  # noqa: E402
from neurodissect.errors import ConfigError  # noqa: E402

try:
    config.update(
        _validate_config(config, os.path.join(REPO_DIR, "config/schema.yaml"))
    )
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# the SAE can only train on augmented views that extraction writes
if "train_aug" in config["sae"]["train_splits"] and not config["activations"]["augment_views"]:
    raise WorkflowError(
        "sae.train_splits lists train_aug but activations.augment_views is 0: "
        "set augment_views > 0 or drop train_aug from sae.train_splits"
    )
# sharded extraction writes the images' splits only (views are not split into shards yet)
if config["activations"]["shards"] > 1 and config["activations"]["augment_views"]:
    raise WorkflowError(
        "activations.shards > 1 with activations.augment_views > 0 is not supported: "
        "extract the augmented views in one job (shards: 1) or set augment_views: 0"
    )

# Resources the rules and profiles may name; anything else is a typo that
# Snakemake would silently ignore (e.g. `gpus=1` never reaching the scheduler).
KNOWN_RESOURCES = {
    "mem", "mem_mb", "mem_mib", "disk", "disk_mb", "disk_mib", "runtime", "tmpdir",
    "gpu", "gpu_model", "gpu_manufacturer", "threads", "_cores", "_nodes", "nodes",
    "tasks", "cpus_per_task", "constraint", "qos", "slurm_partition", "slurm_account",
    "slurm_extra", "slurm_requeue", "mpi", "tasks_per_node", "mem_mb_per_cpu",
}  # fmt: skip


def _check_resource_names():
    rs = workflow.resource_settings
    named = {"resources": rs.resources, "default-resources": rs.default_resources or {}}
    named.update({f"set-resources {r}": m for r, m in rs.overwrite_resources.items()})
    bad = [
        f"{where}: {key}" for where, mapping in named.items() for key in mapping
        if key not in KNOWN_RESOURCES
    ]  # fmt: skip
    if bad:
        raise WorkflowError(
            f"unknown resource name(s) in the profile / command line: {bad}; "
            f"known: {sorted(KNOWN_RESOURCES)}"
        )


_check_resource_names()


def check_rule_resources():
    """Called once all rule files are included; only known resource names are allowed."""
    bad = [
        f"{r.name}: {key}" for r in workflow.rules for key in r.resources
        if key not in KNOWN_RESOURCES
    ]  # fmt: skip
    if bad:
        raise WorkflowError(f"unknown resource name(s) declared by rules: {bad}")

# A dataset named by vocab.reports_from only lends its reports to the others' vocabulary
# (MIMIC-CXR for NIH14): it is prepared, not dissected, unless its targets are requested.
REPORTS_FROM = config["vocab"]["reports_from"]
if REPORTS_FROM is not None and REPORTS_FROM not in config["datasets"]:
    raise WorkflowError(
        f"vocab.reports_from={REPORTS_FROM!r} is not a configured dataset "
        f"(datasets: {sorted(config['datasets'])}); add it under datasets:"
    )
DATASETS = sorted(d for d in config["datasets"] if d != REPORTS_FROM)
if not DATASETS:
    raise WorkflowError(
        f"vocab.reports_from={REPORTS_FROM!r} is the only dataset: configure the dataset "
        "to dissect beside it"
    )
MODELS = list(config["models"])
LAYERS = list(config["layers"])
# every layer extract_activations writes: the dissected ones plus the SAE's input
EXTRACT_LAYERS = list(dict.fromkeys([*LAYERS, config["sae"]["layer"]]))


# -- code fingerprints --------------------------------------------------------
# Snakemake's code trigger only sees the script file. Each rule gets params.code = a
# hash of the package modules its script imports (neurodissect.dag.code walks the
# imports), so editing a module reruns exactly the rules that can run it.
def script_code(script):
    """params.code of a rule running workflow/scripts/<script>.py."""
    path = os.path.join(REPO_DIR, "workflow", "scripts", f"{script}.py")
    return dag_code.code_fingerprint(path, Path(_PKG_ROOT) / "neurodissect")


# -- config access --------------------------------------------------------------
def section(name, *keys):
    """A config section (or only `keys` of it): the params one rule depends on."""
    sec = config[name]
    return {k: sec[k] for k in keys} if keys else dict(sec)


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def model_arch(wildcards):
    return parse_model(wildcards.model)[0]


def model_seed(wildcards):
    return parse_model(wildcards.model)[1]


# -- input functions ------------------------------------------------------------
def raw_root(wildcards):
    """Folder holding the raw dataset: the configured root, or the synthetic one."""
    ds = dataset_cfg(wildcards)
    return ds.get("root") or f"results/{wildcards.dataset}/raw"


def raw_inputs(wildcards):
    """Rule inputs for prepare_data: the generated folder for synthetic data, the metadata
    files of a real root (see raw_metadata_files)."""
    ds = dataset_cfg(wildcards)
    if ds.get("root"):
        return [user_file(f) for f in raw_metadata_files(ds)]
    return [f"results/{wildcards.dataset}/raw"]


# -- naming -----------------------------------------------------------------------
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
    cfg = dict(config["naming"])
    if cfg["method"] != "llm":
        cfg.pop("llm")
    return cfg


# -- real datasets (adapters stage) -----------------------------------------------------
def raw_metadata_files(ds):
    """Metadata files of a real dataset under its root (Data_Entry_2017.csv + split lists +
    BBox_List_2017.csv, HAM10000_metadata.csv, annotation.json + label CSV, ...), so
    prepare_data reruns when one changes; images are hashed into the manifest instead."""
    from neurodissect.data.adapters.raw_files import metadata_files

    return metadata_files(ds["format"], ds["root"], ds.get("options") or {})


# -- sae ----------------------------------------------------------------------------
SAE_EVAL_KEYS = ("eval_split", "recovery_auroc", "probe_c", "baselines", "baseline_max_iter")
# sae.* the dictionary baselines read (seed: their random starts)
SAE_BASELINE_KEYS = ("eval_split", "recovery_auroc", "baselines", "baseline_max_iter", "seed")


def sae_features(wildcards):
    """The activation store the SAE reads (sae.layer of this run)."""
    return (
        f"results/{wildcards.dataset}/{wildcards.model}/activations/{config['sae']['layer']}.zarr"
    )


def sae_train_config():
    """sae.* that shape training: not the layer (it is the input path) nor evaluation keys."""
    return {k: v for k, v in config["sae"].items() if k not in ("layer", *SAE_EVAL_KEYS)}


def sae_evaluation_inputs(wildcards):
    """evaluate_sae inputs (the planted-concept truth is empty for real datasets)."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    inputs = {
        "model": f"{run}/sae/sae.pt",
        "acts": sae_features(wildcards),
        "latents": f"{run}/sae/latents.zarr",
        "concepts": f"{run}/sae/concepts.parquet",
        "manifest": f"{data}/manifest.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }
    inputs.update(verification_input(wildcards, "sae"))
    return inputs


# -- models / activations ---------------------------------------------------------------
def opaque_weights_file():
    """opaque.weights when it names a file (not none / torchvision), else None."""
    weights = config["opaque"]["weights"]
    return None if weights in ("none", "torchvision") else weights


def opaque_inputs(wildcards):
    """train_opaque inputs: the manifest, plus the weights file so replacing it retrains."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if opaque_weights_file():
        inputs["weights"] = user_file(opaque_weights_file())
    return inputs


# -- data (synthetic datasets, prepare_data) --------------------------------------------
SYNTH_FORMATS = ("synthderm", "synthcxr")
PREPARE_KEYS = ("val_fraction", "test_fraction", "split_seed", "on_bad_image")


def synth_options(wildcards):
    """Generator options of a synthetic dataset without a root (schema defaults filled in)."""
    ds = dataset_cfg(wildcards)
    if ds["format"] not in SYNTH_FORMATS or ds.get("root"):
        raise WorkflowError(
            f"dataset '{wildcards.dataset}': results/{wildcards.dataset}/raw is generated only "
            f"for the synthetic formats {SYNTH_FORMATS} without a `root`"
        )
    return dict(ds["synth"])


# -- annotate -------------------------------------------------------------------------
# `units` = annotate/{layer} (a layer's neurons) or sae (the SAE's latents): the same
# select_exemplars / match_concepts rules serve both.
ANNOTATE_UNITS = r"annotate/[A-Za-z0-9_.]+|sae"
BOX_FORMATS = ("synthcxr", "nih14", "chestx-det")


def exemplar_config(wildcards):
    """select_exemplars settings: annotate.* for a layer's units, naming.exemplar_* for
    SAE latents (sparse, heavy-tailed activations need a lower adaptive threshold)."""
    if wildcards.units != "sae":
        return section("annotate", "percentile", "max_exemplars", "probe_split", "memory_mb")
    n = config["naming"]
    return {"percentile": n["exemplar_percentile"], "max_exemplars": n["max_exemplars"],
            "probe_split": n["probe_split"], "memory_mb": n["memory_mb"]}  # fmt: skip


def units_store(wildcards):
    """The unit-activation store of `units`: a layer's activations or the SAE latents."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    if wildcards.units == "sae":
        return f"{run}/sae/latents.zarr"
    return f"{run}/activations/{wildcards.units.split('/', 1)[1]}.zarr"


def annotation_evaluation_inputs(wildcards):
    """evaluate_annotation inputs: the layer's annotation, truth tables, and for box
    datasets what localization needs (the CAM layer's maps and the head for class units)."""
    data = f"results/{wildcards.dataset}/data"
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    inputs = {
        "concepts": f"{run}/annotate/{wildcards.layer}/neuron_concepts.parquet",
        "exemplars": f"{run}/annotate/{wildcards.layer}/exemplars.parquet",
        "store": f"{run}/activations/{wildcards.layer}.zarr",
        "manifest": f"{data}/manifest.parquet",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
        "boxes": f"{data}/boxes.parquet",
        "text_emb": f"results/{wildcards.dataset}/clip/text_emb.zarr",
        "clip_model": f"results/{wildcards.dataset}/clip/model",
    }
    inputs.update(verification_input(wildcards, f"annotate/{wildcards.layer}"))
    cam_layer = config["annotate"]["cam_layer"]
    if dataset_cfg(wildcards)["format"] in BOX_FORMATS and cam_layer in EXTRACT_LAYERS:
        inputs["cam_store"] = f"{run}/activations/{cam_layer}.zarr"
        inputs["opaque"] = f"{run}/opaque/model.pt"
    return inputs


# -- vocab / clip -------------------------------------------------------------------------
CLIP_LOAD_KEYS = {
    "open_clip": ("model_name", "pretrained"),
    "local": ("path",),
    "transformers": ("model_name", "path"),
}


def vocab_inputs(wildcards):
    """build_vocabulary inputs: the manifest, plus vocab.concept_list so editing it reruns."""
    inputs = {"manifest": f"results/{wildcards.dataset}/data/manifest.parquet"}
    if config["vocab"]["concept_list"]:
        inputs["concept_list"] = user_file(config["vocab"]["concept_list"])
    if REPORTS_FROM is not None and REPORTS_FROM != wildcards.dataset:
        inputs["reports_manifest"] = f"results/{REPORTS_FROM}/data/manifest.parquet"
    return inputs


def vocab_config(wildcards):
    """vocab.*; the report source itself mines its own reports (reports_from: null)."""
    cfg = section("vocab")
    if cfg["reports_from"] == wildcards.dataset:
        cfg = {**cfg, "reports_from": None}
    return cfg


def clip_train_config():
    """clip.* that shape training (not the keys of the other sources)."""
    skip = ("source", "model_name", "pretrained", "path")
    return {k: v for k, v in config["clip"].items() if k not in skip}


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
    """clip.* of load_clip: the source and its own keys (plus the evaluation batch size)."""
    source = config["clip"]["source"]
    keys = CLIP_LOAD_KEYS.get(source, ())
    if str(config["clip"]["model_name"]).startswith("hf-hub:"):
        keys = tuple(k for k in keys if k != "pretrained")  # a hub repo has no tag
    return section("clip", "source", "batch_size", *keys)


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


# -- cav / cbm ------------------------------------------------------------------------------
# build_cbm's cbm.* keys (n_concepts / class_relevance feed select_concepts, explain_top_k
# evaluate_cbm), so e.g. changing cbm.n_nonzero reruns neither train_cavs nor the selection
CBM_BUILD_KEYS = (
    "n_nonzero", "features", "c_grid", "max_iter", "memory_mb", "gpu_memory_mb", "omp_min_pivot",
)


def cav_inputs(wildcards):
    """train_cavs inputs: the SAE's input features, its latents and names, the manifest."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    return {
        "acts": sae_features(wildcards),
        "latents": f"{run}/sae/latents.zarr",
        "concepts": f"{run}/sae/concepts.parquet",
        "manifest": f"results/{wildcards.dataset}/data/manifest.parquet",
    }


def selection_inputs(wildcards):
    """select_concepts inputs: the CAVs and their accuracy, plus the opaque model when
    cbm.class_relevance weighs concepts by its head and the manifest (class names) when
    cbm.exclude_class_names drops concepts named like a class."""
    cbm = f"results/{wildcards.dataset}/{wildcards.model}/cbm"
    inputs = {"cavs": f"{cbm}/cavs.zarr", "accuracy": f"{cbm}/cav_accuracy.parquet"}
    if config["cbm"]["class_relevance"]:
        inputs["opaque"] = f"results/{wildcards.dataset}/{wildcards.model}/opaque/model.pt"
    if config["cbm"]["exclude_class_names"]:
        inputs["manifest"] = f"results/{wildcards.dataset}/data/manifest.parquet"
    return inputs


def cbm_inputs(wildcards):
    """build_cbm inputs: features, CAVs, the selection, the manifest."""
    cbm = f"results/{wildcards.dataset}/{wildcards.model}/cbm"
    return {
        "acts": sae_features(wildcards),
        "cavs": f"{cbm}/cavs.zarr",
        "selected": f"{cbm}/selected.parquet",
        "manifest": f"results/{wildcards.dataset}/data/manifest.parquet",
    }


def cbm_evaluation_inputs(wildcards):
    """evaluate_cbm inputs (the planted-concept truth is empty for real datasets)."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    return {
        "model": f"{run}/cbm/model.npz",
        "scores": f"{run}/cbm/scores.zarr",
        "acts": sae_features(wildcards),
        "manifest": f"{data}/manifest.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "opaque_metrics": f"{run}/opaque/metrics.json",
        "gt_table": f"{data}/concepts_gt.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }


# -- atlas ----------------------------------------------------------------------------------
def atlas_inputs(wildcards):
    """atlas inputs: every table, metrics file and activation store the site shows; layer
    i's files under keys layer<i>_* (params.layers names them); verify_names' tables
    only where that rule exists (synthetic data)."""
    data = f"results/{wildcards.dataset}/data"
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    inputs = {
        "manifest": f"{data}/manifest.parquet",
        "boxes": f"{data}/boxes.parquet",
        "opaque_metrics": f"{run}/opaque/metrics.json",
        "sae_exemplars": f"{run}/sae/exemplars.parquet",
        "sae_concepts": f"{run}/sae/concepts.parquet",
        "sae_skipped": f"{run}/sae/skipped_latents.parquet",
        "sae_groundtruth": f"{run}/sae/groundtruth.parquet",
        "sae_metrics": f"{run}/sae/metrics.json",
        "cbm_model": f"{run}/cbm/model.npz",
        "cbm_metrics": f"{run}/cbm/metrics.json",
        "cbm_explanations": f"{run}/cbm/explanations.parquet",
    }
    verify = "verify_names" in {r.name for r in workflow.rules} and (
        dataset_cfg(wildcards)["format"] in SYNTH_FORMATS
    )
    for i, layer in enumerate(LAYERS):
        units = f"{run}/annotate/{layer}"
        inputs[f"layer{i}_exemplars"] = f"{units}/exemplars.parquet"
        inputs[f"layer{i}_concepts"] = f"{units}/neuron_concepts.parquet"
        inputs[f"layer{i}_units"] = f"{units}/units.parquet"
        inputs[f"layer{i}_metrics"] = f"{units}/metrics.json"
        inputs[f"layer{i}_store"] = f"{run}/activations/{layer}.zarr"
        if verify:
            inputs[f"layer{i}_verification"] = f"{units}/verification.parquet"
    if verify:
        inputs["sae_verification"] = f"{run}/sae/verification.parquet"
    return inputs


# -- verify (synthetic data: names checked by counterfactual rendering) ------------
def model_input():
    """How probe images become model inputs (as in extraction)."""
    return {"image_size": config["opaque"]["image_size"],
            "pooling": config["activations"]["pooling"],
            "vit_tokens": config["activations"]["vit_tokens"]}  # fmt: skip


def generated_synth(dataset):
    """Generator settings of a generated synthetic dataset (schema defaults filled in), else
    None: verify_names then has nothing to render and writes an empty table."""
    ds = config["datasets"][dataset]
    return dict(ds["synth"]) if ds["format"] in SYNTH_FORMATS and not ds.get("root") else None


def verify_synth(wildcards):
    return generated_synth(wildcards.dataset)


def verify_inputs(wildcards):
    """verify_names inputs: the names of `units`, the models that respond, the synonyms."""
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    data = f"results/{wildcards.dataset}/data"
    inputs = {
        "names": f"{run}/{wildcards.units}/neuron_concepts.parquet",
        "opaque": f"{run}/opaque/model.pt",
        "manifest": f"{data}/manifest.parquet",
        "gt_synonyms": f"{data}/concepts_gt.json",
    }
    if wildcards.units == "sae":
        inputs.update(names=f"{run}/sae/concepts.parquet", sae=f"{run}/sae/sae.pt")
    return inputs


def verification_input(wildcards, units):
    """{"verification": metrics of verify_names} for generated synthetic datasets, else {}."""
    if generated_synth(wildcards.dataset) is None:
        return {}
    run = f"results/{wildcards.dataset}/{wildcards.model}"
    return {"verification": f"{run}/{units}/verification.json"}


# -- final targets ----------------------------------------------------------------------
def run_grid():
    """What decides the final targets (neurodissect.dag.targets lists them)."""
    return dag_targets.RunGrid(
        datasets=tuple(DATASETS),
        models=tuple(MODELS),
        layers=tuple(LAYERS),
        extract_layers=tuple(EXTRACT_LAYERS),
        train_clip=config["clip"]["source"] == "train",
        verified=tuple(d for d in DATASETS if generated_synth(d) is not None),
    )


def final_targets():
    """What `all` requests: every stage's final artifacts, the comparison, the audit."""
    return dag_targets.final_targets(run_grid())
