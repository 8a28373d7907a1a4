# What every rule file shares (config validation, code fingerprints, config access, the
# helpers several stages use, the final targets). A stage's own input functions
# live in workflow/rules/inputs/<stage>.smk, which its rule file includes.
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
from neurodissect.dag import settings as dag_settings  # noqa: E402
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
    """A config section (or only `keys` of it) that no settings class reads as a whole
    (runtime, figures, the few keys below); stage settings come from settings()."""
    sec = config[name]
    return {k: sec[k] for k in keys} if keys else dict(sec)


def settings(name, spec):
    """The keys of config section `name` that the settings class `spec` ("module:Class"
    in the package) has fields for: the params of the rule that builds it."""
    if spec not in dag_settings.SECTIONS.get(name, ()):
        raise WorkflowError(
            f"{spec} is not listed for config section {name!r} in neurodissect.dag.settings"
        )
    return dag_settings.settings_params(config[name], spec, Path(_PKG_ROOT) / "neurodissect")


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def model_arch(wildcards):
    return parse_model(wildcards.model)[0]


def model_seed(wildcards):
    return parse_model(wildcards.model)[1]


# -- shared by several stages ------------------------------------------------------------
# (each stage's own input functions: workflow/rules/inputs/<stage>.smk)
SYNTH_FORMATS = ("synthderm", "synthcxr")
# `units` = annotate/{layer} (a layer's neurons) or sae (the SAE's latents): the same
# select_exemplars / match_concepts / verify_names jobs serve both.
ANNOTATE_UNITS = r"annotate/[A-Za-z0-9_.]+|sae"


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
