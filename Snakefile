"""neurodissect: dissect a trained medical-image classifier into human-named
concepts and rebuild it as a concept bottleneck model.

Run `make demo` (or `snakemake`) for the synthetic default; pass
`--configfile my.yaml` for your own data (config/examples/ has one per
dataset). Rules live in workflow/rules/, logic in workflow/neurodissect/.
"""

from snakemake.utils import min_version

min_version("9.0")


# The embedded default unless a --configfile is given (a CLI config file
# replaces it entirely instead of being merged into the demo datasets).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.current_basedir, "config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/storage.smk"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    model=r"[a-z0-9_]+-s[0-9]+",
    layer=r"[A-Za-z0-9_.]+",


# stage rule files (their final artifacts: final_targets() in common.smk)
include: "workflow/rules/data.smk"
include: "workflow/rules/vocab.smk"
include: "workflow/rules/clip.smk"
include: "workflow/rules/opaque.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/naming.smk"
include: "workflow/rules/cav.smk"
include: "workflow/rules/cbm.smk"
include: "workflow/rules/viz.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/atlas.smk"


# cross-run comparison and the provenance audit (their inputs: final_targets())
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"


check_rule_resources()
declare_storage_files()


rule all:
    default_target: True
    input:
        final_targets(),


# the DESIGN's `figures`: every figure of the configured runs (`snakemake figures`)
rule figures:
    input:
        dag_targets.figure_targets(dag_targets.stage_targets(run_grid())),
