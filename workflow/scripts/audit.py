"""audit: adapter; the logic is neurodissect.provenance.audit / .rocrate."""

from neurodissect.errors import InputError
from neurodissect.io import write_json
from neurodissect.provenance.audit import audit
from neurodissect.provenance.remote import local_results
from neurodissect.provenance.rocrate import write_rocrate
from neurodissect.runtime import RunContext

# results_dir: the local results folder, or s3://... when the run lives in a bucket
with RunContext.from_snakemake(snakemake) as ctx, local_results(ctx.params.results_dir) as results:
    report = audit(results)
    if not report.ok:
        raise InputError(
            "provenance audit failed:\n" + "\n".join(f.line() for f in report.findings)
        )
    write_json(report.to_dict(), ctx.output.report)
    write_rocrate(results, ctx.output.rocrate)
