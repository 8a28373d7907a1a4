# Shared by all rule files — config validation, code fingerprints and
# input functions — so the rule files read like a table.
import hashlib
import os
import sys
from pathlib import Path

# Parse-time helpers come from the package (config only: no torch import here).
# Jobs import it from the same folder, also inside conda envs and on cluster nodes.
_PKG_ROOT = os.path.join(workflow.basedir, "workflow")
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
from neurodissect.errors import ConfigError  # noqa: E402

PACKAGE = Path(workflow.basedir) / "workflow" / "neurodissect"

try:
    config.update(
        _validate_config(config, os.path.join(workflow.basedir, "config/schema.yaml"))
    )
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

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

DATASETS = sorted(config["datasets"])
MODELS = list(config["models"])
LAYERS = list(config["layers"])
# every layer extract_activations writes: the dissected ones plus the SAE's input
EXTRACT_LAYERS = list(dict.fromkeys([*LAYERS, config["sae"]["layer"]]))

# Each rule file appends the final artifacts it owns; `rule all` requests them.
ALL_TARGETS = []



# -- code fingerprints --------------------------------------------------------
# Snakemake's code trigger only sees the script file. Each rule gets
# params.code = a hash of the package modules it runs, so editing a module
# reruns exactly the rules that use it (the core modules are used by all).
CORE_MODULES = ("__init__", "io", "provenance.__init__", "runtime", "errors", "config")


def _module_files(name):
    p = PACKAGE / name.replace(".", "/")
    if p.is_dir():
        return sorted(f for f in p.rglob("*.py"))
    return [p.with_suffix(".py")]


def code_version(*modules):
    h = hashlib.sha256()
    for name in (*CORE_MODULES, *modules):
        for f in _module_files(name):
            h.update(f.relative_to(PACKAGE).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


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
    """Rule inputs for prepare_data: the generated folder for synthetic data, none for a real root."""
    ds = dataset_cfg(wildcards)
    return [] if ds.get("root") else [f"results/{wildcards.dataset}/raw"]
