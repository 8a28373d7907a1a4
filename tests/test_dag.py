"""The workflow layer's parse-time logic (neurodissect.dag): final targets."""

from __future__ import annotations

from neurodissect.dag.targets import (
    AUDIT,
    COMPARISON,
    RunGrid,
    audited_targets,
    figure_targets,
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


def test_rule_figures_draws_every_figure_of_the_runs():
    figures = figure_targets(stage_targets(GRID))
    # per dataset: overview, clip curve; per run: learning curve, sae curve, 3 cbm, summary;
    # verified runs: 3 verification figures each
    assert len(figures) == 2 * 2 + 4 * 6 + 2 * 3
    assert "results/a/resnet18-s0/figures/summary.png" in figures
    assert all(f.endswith(".png") for f in figures)


def test_no_dataset_no_comparison():
    empty = RunGrid(
        datasets=(),
        models=("resnet18-s0",),
        layers=("fc",),
        extract_layers=("fc",),
        train_clip=True,
    )
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

    pkg = _package(
        tmp_path,
        {
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
        },
    )
    script = tmp_path / "script.py"
    script.write_text("from neurodissect.a import f\n")
    names = {p.relative_to(pkg).as_posix() for p in import_closure(script, pkg)}
    assert names == {
        "__init__.py",
        "io.py",
        "a/__init__.py",
        "a/core.py",
        "b/__init__.py",
        "b/lazy.py",
        "c.py",
    }
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
        name.startswith(("sae/", "clip/", "opaque/")) for name in closure("match_concepts.py")
    )
    # the data/synth package: its __init__ and the modules the generator and adapters import
    synth = {f"data/synth/{m}.py" for m in ("__init__", "derm", "cxr", "layout", "reports")}
    assert synth <= closure("synthesize_data.py")
    assert {"data/synth/__init__.py", "data/synth/layout.py"} <= closure("prepare_data.py")
    assert "data/synth/counterfactual.py" in closure("verify_names.py")


def test_import_cycle_is_found_through_lazy_imports_and_packages_are_not_cycles(tmp_path):
    from neurodissect.dag.code import import_cycle, import_graph

    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "from .model import f\n",  # a package and its module: no cycle
            "a/model.py": "from ..io import x\n\ndef f():\n    from . import hub\n",
            "a/hub.py": "from .model import f\n",
            "io.py": "import json\n",
        },
    )
    names = [p.relative_to(pkg).as_posix() for p in import_cycle(import_graph(pkg))]
    assert names == ["a/model.py", "a/hub.py", "a/model.py"]
    (pkg / "a/hub.py").write_text("from ..io import x\n")  # the shared piece moved out
    assert import_cycle(import_graph(pkg)) == []


def test_the_package_import_graph_is_acyclic():
    """A cycle (even through a function-level import) means two modules each need a piece of
    the other: move the shared piece to where it belongs instead."""
    from neurodissect.dag.code import PACKAGE_DIR, import_cycle, import_graph

    graph = import_graph()
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200  # it saw the package
    cycle = [p.relative_to(PACKAGE_DIR).as_posix() for p in import_cycle(graph)]
    assert not cycle, " -> ".join(cycle)


# -- settings: the dataclasses are the source ----------------------------------------
# Keys a config section holds that no settings class of that section reads, and who
# reads them instead (kept short: each is a key the workflow layer itself uses).
READ_ELSEWHERE = {
    ("clip", "corpus"): "clip_corpus (clip.corpus:CorpusSettings)",
    ("data", "overview_per_class"): "dataset_overview (a figure's size)",
    ("annotate", "cam_layer"): "annotation_evaluation_inputs (which store to read)",
    ("sae", "layer"): "sae_features (the input path)",
}
# schema default != dataclass default, on purpose (the workflow always passes the key)
DEFAULTS_DIFFER = {
    ("activations", "spatial_maps"),  # schema: [layer4]; a bare ExtractParams(): none
    ("sae", "l1_coefficient"),  # schema: 3e-3 for the demo's features; ReluL1Config: the paper's
}


def _class(spec):
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(f"neurodissect.{module}"), name)


def _schema_sections():
    import yaml

    from conftest import REPO
    from neurodissect.config import _resolve

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    return {
        name: {k: _resolve(v, schema) for k, v in _resolve(sub, schema)["properties"].items()}
        for name, sub in schema["properties"].items()
        if "properties" in _resolve(sub, schema)
    }


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return list(value) if isinstance(value, tuple) else value


def _field_defaults(cls) -> dict:
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _plain(f.default_factory())
    return out


def test_settings_fields_read_from_source_equal_the_real_dataclasses():
    import dataclasses

    from neurodissect.dag.settings import SECTIONS, field_names

    for specs in SECTIONS.values():
        for spec in specs:
            assert field_names(spec) == tuple(f.name for f in dataclasses.fields(_class(spec)))


def test_schema_defaults_equal_the_settings_dataclass_defaults():
    from neurodissect.dag.settings import SECTIONS
    from neurodissect.sae.base import get_variant

    schema = _schema_sections()
    classes = {name: [_class(spec) for spec in specs] for name, specs in SECTIONS.items()}
    variants = schema["sae"]["variant"]["enum"]
    classes["sae"] += [get_variant(v).config_class for v in variants]
    checked = 0
    for name, cls_list in classes.items():
        for cls in cls_list:
            for key, default in _field_defaults(cls).items():
                if key not in schema[name] or (name, key) in DEFAULTS_DIFFER:
                    continue
                expected = schema[name][key].get("default")
                if isinstance(default, dict):  # nested settings (annotate.soft_wpmi)
                    props = schema[name][key]["properties"]  # (not every field is a key)
                    default = {k: v for k, v in default.items() if k in props}
                    expected = {k: props[k].get("default") for k in default}
                assert default == expected, (
                    f"{name}.{key}: {cls.__name__} {default!r} != {expected!r}"
                )
                checked += 1
    assert checked > 100


def test_every_key_of_a_settings_section_is_read_by_its_classes():
    """A key no settings class has would reach no rule's params: dropped without a word."""
    from neurodissect.dag.settings import SECTIONS
    from neurodissect.sae.base import get_variant

    schema = _schema_sections()
    for name, specs in SECTIONS.items():
        known = {f for spec in specs for f in _field_defaults(_class(spec))}
        if name == "sae":
            variants = schema["sae"]["variant"]["enum"]
            known |= {f for v in variants for f in _field_defaults(get_variant(v).config_class)}
        if name == "naming":  # the SAE latents' exemplar settings (rule select_exemplars)
            exemplar = _field_defaults(_class("annotate.exemplars:ExemplarParams"))
            known |= {f"exemplar_{f}" for f in exemplar} | set(exemplar)
        unread = set(schema[name]) - known - {k for (s, k) in READ_ELSEWHERE if s == name}
        assert not unread, f"config section {name}: keys no settings class reads: {unread}"


def test_a_key_the_settings_class_lacks_is_an_error_naming_it():
    import pytest

    from neurodissect.annotate.matching import MatchParams
    from neurodissect.cav import CAVParams
    from neurodissect.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'cav'.*\['top_fractoin'\]"):
        CAVParams.from_config({"top_fraction": 0.1, "top_fractoin": 0.2})
    with pytest.raises(ConfigError, match=r"annotate.soft_wpmi.*\['b'\]"):
        MatchParams.from_config({"soft_wpmi": {"a": 5.0, "b": 1.0}})
    params = MatchParams.from_config({"alpha": 80, "soft_wpmi": {"a": 5.0}})
    assert params.alpha == 80 and params.soft_wpmi.a == 5.0 and params.soft_wpmi.lam == 1.0


def test_clip_verify_sae_and_prepare_settings_are_strict():
    import pytest

    from neurodissect.clip.train import ClipParams
    from neurodissect.data.prepare import PrepareParams
    from neurodissect.errors import ConfigError
    from neurodissect.sae.train import SAESettings
    from neurodissect.verify.run import VerifyParams

    with pytest.raises(ConfigError, match=r"'clip'.*\['corpus'\]"):
        ClipParams.from_config({"epochs": 2, "corpus": {"n": 0}})
    model_input = {"image_size": 64, "pooling": "mean", "vit_tokens": "cls"}
    with pytest.raises(ConfigError, match=r"'verify'.*\['n_pairz'\]"):
        VerifyParams.from_config({"n_pairz": 3}, model_input, model_input)
    probe = {"n_explanations": 5, "seed": 1, "batch_size": 8}  # the probe's share of verify
    assert VerifyParams.from_config(probe, model_input, model_input).batch_size == 8
    with pytest.raises(ConfigError, match=r"'sae'.*\['epoch'\]"):
        SAESettings.from_config({"variant": "topk", "epoch": 3})
    s = SAESettings.from_config({"variant": "topk", "k": 7, "l1_coefficient": 1.0, "epochs": 3})
    assert s.train.epochs == 3 and s.variant.k == 7  # another variant's key is not unknown
    with pytest.raises(ConfigError, match=r"sae.pre_bias_init: 'median' is not one of"):
        SAESettings.from_config({"pre_bias_init": "median"})
    with pytest.raises(ConfigError, match=r"data.on_bad_image: 'ignore' is not one of"):
        PrepareParams.from_config({"on_bad_image": "ignore"})


def test_rule_params_are_the_section_keys_of_the_class_fields():
    from neurodissect.dag.settings import settings_params

    section = {"alpha": 80, "percentile": 90, "template": "a photo of {}", "cam_layer": "x"}
    assert settings_params(section, "annotate.matching:MatchParams") == {"alpha": 80}
    assert settings_params(section, "annotate.exemplars:ExemplarParams") == {"percentile": 90}
    assert settings_params(section, "evaluate.annotation:AnnotationEvalParams") == {
        "template": "a photo of {}"
    }
