# Results in object storage (`--default-storage-provider s3 --default-storage-prefix
# s3://BUCKET/RUN`, see the README's cluster section). Without a storage provider nothing
# here changes the workflow. With one, Snakemake hands each job local copies of its
# declared files only, so two things every job relies on in a local run are declared:
# - every output's provenance sidecar (`<output>.prov.json`) is an output too, so that it
#   is uploaded beside the artifact (neurodissect.runtime skips sidecars when stamping);
# - rules that open a dataset's images get the generated image folder as an input.
from neurodissect.provenance import SIDECAR_SUFFIX  # noqa: E402
from neurodissect.storage import LOCAL_ROOT_ENV  # noqa: E402


def storage_on():
    return workflow.storage_settings.default_storage_provider is not None


def storage_prefix():
    """The --default-storage-prefix without a trailing slash (e.g. s3://bucket/run)."""
    return (workflow.storage_settings.default_storage_prefix or "").rstrip("/")


def _storage_local_root():
    """The folder where Snakemake keeps local copies of the storage prefix's objects."""
    provider = workflow.storage_registry.default_storage_provider
    probe = provider.object(f"{storage_prefix()}/results").local_path()
    return str(Path(probe).parent)


def _export_storage_env():
    """Jobs translate between logical paths (results/...) and the local copies
    (neurodissect.storage); the audit job reads the bucket with boto3 at the endpoint
    and with the credentials the s3 plugin was given (boto3's own variables). Set for
    this process and its jobs; the local-root variable is cleared without storage."""
    if not storage_on():
        os.environ.pop(LOCAL_ROOT_ENV, None)
        return
    os.environ[LOCAL_ROOT_ENV] = _storage_local_root()
    settings = workflow.storage_registry.default_storage_provider.settings
    for attr, var in (("endpoint_url", "AWS_ENDPOINT_URL_S3"),
                      ("access_key", "AWS_ACCESS_KEY_ID"),
                      ("secret_key", "AWS_SECRET_ACCESS_KEY")):  # fmt: skip
        value = getattr(settings, attr, None)
        if value:
            os.environ[var] = value


_export_storage_env()


def user_file(path):
    """A file the config names (a dataset's metadata, weights, a concept list): read in
    place, never mapped into the bucket (Snakemake would otherwise look for it there)."""
    return local(path) if storage_on() else path


def logical_path(item):
    """A rule file's path pattern behind a storage-mapped output."""
    query = item.flags["storage_object"].query
    return query.removeprefix(storage_prefix() + "/")


def storage_results_dir(wildcards, output):
    """Where the audit reads the results: the bucket's results/ with storage, else the
    local folder of the audit report."""
    if storage_on():
        return f"{storage_prefix()}/results"
    return os.path.dirname(output.report)


# Rules that produce the image folders (they get none as input).
IMAGE_PRODUCERS = ("synthesize_data", "prepare_data", "clip_corpus")


def reads_images(r):
    """Whether a rule's script can open a manifest's images: its package import closure
    holds neurodissect.data.images (derived, so a new image-reading rule is covered)."""
    if r.script is None or r.name in IMAGE_PRODUCERS:
        return False
    script = os.path.join(REPO_DIR, "workflow", "scripts", os.path.basename(r.script))
    closure = dag_code.import_closure(script, Path(_PKG_ROOT) / "neurodissect")
    return any(f.as_posix().endswith("neurodissect/data/images.py") for f in closure)


def stored_images(wildcards):
    """The generated image folders a job reads: the dataset's (synthetic without a
    root) and, for train_clip, the CLIP corpus'. Real datasets' roots are the user's
    own folders outside results/ and are read in place."""
    folders = []
    if generated_synth(wildcards.dataset) is not None:
        folders.append(f"results/{wildcards.dataset}/raw")
    return folders


def stored_corpus_images(wildcards):
    return [f"results/{wildcards.dataset}/clip/corpus/raw"] if clip_corpus_on() else []


def declare_storage_files():
    """Called once all rules exist: with a storage provider, declare what jobs write
    and read beside their named files (see the top of this file)."""
    if not storage_on():
        return
    for r in workflow.rules:
        outputs = [f for f in r.output if f.is_storage]
        if outputs:
            r.set_output(*(logical_path(f) + SIDECAR_SUFFIX for f in outputs))
        # unnamed: scripts pass their named inputs on as keyword arguments
        if reads_images(r):
            r.set_input(stored_images)
        if r.name == "train_clip":
            r.set_input(stored_corpus_images)
