"""The workflow layer's parse-time logic (neurodissect.dag): final targets."""

from __future__ import annotations

from neurodissect.dag.targets import (
    AUDIT,
    COMPARISON,
    RunGrid,
    audited_targets,
    final_targets,
    metrics_files,
    stage_targets,
)

GRID = RunGrid(
    datasets=("a", "b"),
    models=("resnet18-s0", "resnet18-s1"),
    layers=("layer4", "fc"),
    extract_layers=("layer4", "fc", "penultimate"),
    train_clip=True,
    verified=("b",),
)


def test_every_run_gets_its_stage_targets_in_snakemake_expand_order():
    targets = stage_targets(GRID)
    assert len(targets) == len(set(targets))
    # per dataset: manifest, overview, vocabulary, clip curve, clip metrics, 2 embeddings
    # per run: 2 opaque, 3 stores, 3 sae, 2 annotations, names, 4 cbm, summary, atlas
    # verified runs (b x 2 models): 3 verification figures each
    assert len(targets) == 2 * 7 + 4 * 17 + 2 * 3
    # like expand(): one pattern over all datasets before the next pattern
    assert targets[:4] == [
        "results/a/data/manifest.parquet",
        "results/b/data/manifest.parquet",
        "results/a/data/overview.png",
        "results/b/data/overview.png",
    ]
    opaque = [t for t in targets if t.endswith("opaque/metrics.json")]
    assert opaque == [f"results/{d}/resnet18-s{s}/opaque/metrics.json" for d in "ab" for s in "01"]
    verify = [t for t in targets if "/verify/" in t]
    assert verify == [
        f"results/b/resnet18-s{s}/figures/verify/{u}.png"
        for s in "01"
        for u in ("annotate/layer4", "annotate/fc", "sae")
    ]
    assert "results/a/resnet18-s1/activations/penultimate.zarr" in targets


def test_clip_curve_only_when_the_clip_is_trained():
    loaded = RunGrid(**{**GRID.__dict__, "train_clip": False})
    curves = {"results/a/clip/training.png", "results/b/clip/training.png"}
    assert curves <= set(stage_targets(GRID))
    assert set(stage_targets(GRID)) - set(stage_targets(loaded)) == curves


def test_compare_reads_every_metrics_file_and_the_audit_covers_everything_else():
    stage = stage_targets(GRID)
    metrics = metrics_files(stage)
    # clip per dataset; opaque, sae, 2 layers, cbm per run
    assert len(metrics) == 2 + 4 * 5
    assert audited_targets(GRID) == [*stage, *COMPARISON.values()]
    assert final_targets(GRID) == [*stage, *COMPARISON.values(), *AUDIT.values()]


def test_no_dataset_no_comparison():
    empty = RunGrid(datasets=(), models=("resnet18-s0",), layers=("fc",),
                    extract_layers=("fc",), train_clip=True)  # fmt: skip
    assert final_targets(empty) == list(AUDIT.values())


# -- code fingerprints -----------------------------------------------------------------
def _package(root, files: dict[str, str]):
    pkg = root / "neurodissect"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_import_closure_follows_every_package_import_and_nothing_else(tmp_path):
    from neurodissect.dag.code import import_closure

    pkg = _package(tmp_path, {
        "__init__.py": "",
        "io.py": "import json\n",
        "a/__init__.py": "from .core import f\n",
        "a/core.py": "from ..io import x\n\ndef g():\n    from ..b import lazy  # runs when g does\n",
        "a/unused.py": "",
        "b/__init__.py": "",
        "b/lazy.py": "import numpy\nfrom neurodissect import c\n",
        "c.py": "",
        "reg/__init__.py": "",
        "reg/base.py": "import importlib\nimportlib.import_module(f'{__package__}.x')\n",
        "reg/plugin.py": "from .base import y\n",
        "reg/sub/deep.py": "",
        "other.py": "",
    })  # fmt: skip
    script = tmp_path / "script.py"
    script.write_text("from neurodissect.a import f\n")
    names = {p.relative_to(pkg).as_posix() for p in import_closure(script, pkg)}
    assert names == {"__init__.py", "io.py", "a/__init__.py", "a/core.py", "b/__init__.py",
                     "b/lazy.py", "c.py"}  # fmt: skip
    # a run-time import by name: every module of the registry's package
    script.write_text("from neurodissect.reg.base import y\n")
    names = {p.relative_to(pkg).as_posix() for p in import_closure(script, pkg)}
    assert names == {"__init__.py", "reg/__init__.py", "reg/base.py", "reg/plugin.py"}


def test_fingerprint_changes_with_a_module_of_the_closure_only(tmp_path):
    from neurodissect.dag.code import code_fingerprint

    pkg = _package(tmp_path, {"__init__.py": "", "used.py": "", "unused.py": ""})
    script = tmp_path / "script.py"
    script.write_text("from neurodissect import used\n")
    before = code_fingerprint(script, pkg)
    (pkg / "unused.py").write_text("x = 1\n")
    assert code_fingerprint(script, pkg) == before
    (pkg / "used.py").write_text("x = 1\n")
    assert code_fingerprint(script, pkg) != before


def test_every_script_reaches_the_modules_its_stage_runs():
    """Known dependencies the hand lists missed: evaluate_annotation embeds texts with the
    CLIP (clip.encode / clip.model); every SAE rule reaches every registered variant."""
    from neurodissect.dag.code import PACKAGE_DIR, import_closure

    scripts = PACKAGE_DIR.parent / "scripts"

    def closure(name):
        return {p.relative_to(PACKAGE_DIR).as_posix() for p in import_closure(scripts / name)}

    assert {"clip/encode.py", "clip/model.py"} <= closure("evaluate_annotation.py")
    variants = {"sae/relu_l1.py", "sae/topk.py", "sae/batchtopk.py", "sae/matryoshka.py"}
    assert variants <= closure("train_sae.py") & closure("encode_latents.py")
    assert not any(
        name.startswith(("sae/", "clip/", "models/")) for name in closure("match_concepts.py")
    )
