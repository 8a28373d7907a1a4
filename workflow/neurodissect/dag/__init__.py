"""The workflow layer's parse-time logic: the final targets of a run and each rule's
code fingerprint. Pure functions of the config and the package's files; the Snakefile
calls them, nothing here imports snakemake (and nothing heavy: it runs at parse time)."""
