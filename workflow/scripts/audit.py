"""audit: adapter; the logic is neurodissect.provenance.audit / .rocrate."""

from neurodissect.errors import InputError
from neurodissect.io import write_json
from neurodissect.provenance.audit import audit
from neurodissect.provenance.rocrate import write_rocrate
from neurodissect.runtime import RunContext

with RunContext.from_snakemake(snakemake) as ctx:
    report = audit(ctx.params.results_dir)
    if not report.ok:
        raise InputError(
            "provenance audit failed:\n" + "\n".join(f.line() for f in report.findings)
        )
    write_json(report.to_dict(), ctx.output.report)
    write_rocrate(ctx.params.results_dir)
