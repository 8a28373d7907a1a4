# Input functions and parameter helpers of the data rules (data.smk includes this
# file; functions only, so `snakemake --lint` keeps rules and functions apart).


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


def raw_metadata_files(ds):
    """Metadata files of a real dataset under its root (Data_Entry_2017.csv + split lists +
    BBox_List_2017.csv, HAM10000_metadata.csv, annotation.json + label CSV, ...), so
    prepare_data reruns when one changes; images are hashed into the manifest instead."""
    from neurodissect.data.adapters.raw_files import metadata_files

    return metadata_files(ds["format"], ds["root"], ds.get("options") or {})


def synth_options(wildcards):
    """Generator options of a synthetic dataset without a root (schema defaults filled in)."""
    ds = dataset_cfg(wildcards)
    if ds["format"] not in SYNTH_FORMATS or ds.get("root"):
        raise WorkflowError(
            f"dataset '{wildcards.dataset}': results/{wildcards.dataset}/raw is generated only "
            f"for the synthetic formats {SYNTH_FORMATS} without a `root`"
        )
    return dict(ds["synth"])
