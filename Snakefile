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

    configfile: os.path.join(workflow.basedir, "config/config.yaml")


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    model=r"[a-z0-9_]+-s[0-9]+",
    layer=r"[A-Za-z0-9_.]+",


# stage rule files (each appends its final artifacts to ALL_TARGETS)


# cross-run comparison and the provenance audit: keep these two last, their
# inputs are every target the stage files above registered
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"


check_rule_resources()


rule all:
    default_target: True
    input:
        ALL_TARGETS,
