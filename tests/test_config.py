"""Config validation: defaults filled, every error names the key path and what is
allowed — through neurodissect.config.validate and through a real `snakemake -n`."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, deep_update, run_snakemake, write_config
from neurodissect.config import load_yaml, validate
from neurodissect.errors import ConfigError

SCHEMA = REPO / "config" / "schema.yaml"

BAD = [
    ({"opaque": {"epoch": 3}}, ["config key 'opaque': unknown key(s) ['epoch']", "'epochs'"]),
    ({"opaqe": {"epochs": 3}}, ["config key '<top level>': unknown key(s) ['opaqe']", "'opaque'"]),
    (
        {"opaque": {"epochs": "ten"}},
        ["config key 'opaque.epochs': expected integer, got str 'ten'"],
    ),
    (
        {"annotate": {"scorer": "best"}},
        ["config key 'annotate.scorer': 'best' is not one of ['mammi', 'soft_wpmi']"],
    ),
    ({"datasets": {"tiny": {"synth": {"n": 0}}}}, ["config key 'datasets.tiny.synth.n'"]),
    (
        {"datasets": {"tiny": {"synth": {"images": 10}}}},
        ["config key 'datasets.tiny.synth': unknown key(s) ['images']", "'n'"],
    ),
    ({"datasets": {"tiny": {"format": "dicom"}}}, ["config key 'datasets.tiny.format': 'dicom'"]),
    (
        {"data": {"on_bad_image": "ignore"}},
        ["config key 'data.on_bad_image': 'ignore' is not one of ['error', 'skip']"],
    ),
    ({"data": {"val_fraction": 1.5}}, ["config key 'data.val_fraction'"]),
]


@pytest.mark.parametrize("changes, expected", BAD, ids=lambda v: str(v)[:40])
def test_validate_names_the_key_path_and_what_is_allowed(changes, expected):
    with pytest.raises(ConfigError) as err:
        validate(deep_update(TINY_CONFIG, changes), SCHEMA)
    for text in expected:
        assert text in str(err.value)


def test_every_problem_is_listed_at_once():
    bad = deep_update(TINY_CONFIG, {"opaque": {"epochs": "ten"}, "annotate": {"scorer": "x"}})
    with pytest.raises(ConfigError) as err:
        validate(bad, SCHEMA)
    assert "opaque.epochs" in str(err.value) and "annotate.scorer" in str(err.value)


def test_defaults_are_filled_and_the_default_config_is_the_synthderm_demo():
    cfg = validate(load_yaml(REPO / "config" / "config.yaml"), SCHEMA)
    ((name, ds),) = cfg["datasets"].items()
    assert name == "synthderm" and ds["format"] == "synthderm" and "root" not in ds
    assert ds["synth"]["n"] == 2000 and ds["synth"]["size"] == 64
    assert cfg["data"] == {
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "split_seed": 0,
        "on_bad_image": "error",
        "overview_per_class": 4,
    }


def test_synthcxr_example_is_valid_and_synthetic():
    cfg = validate(load_yaml(REPO / "config" / "examples" / "synthcxr.yaml"), SCHEMA)
    ((name, ds),) = cfg["datasets"].items()
    assert ds["format"] == "synthcxr" and "root" not in ds


def test_validity_example_is_the_demo_with_three_model_seeds():
    demo = load_yaml(REPO / "config" / "config.yaml")
    overlay = load_yaml(REPO / "config" / "examples" / "validity.yaml")
    # snakemake merges --configfile config/config.yaml config/examples/validity.yaml like this
    merged = validate(deep_update(demo, overlay), SCHEMA)
    assert merged["models"] == ["resnet18-s0", "resnet18-s1", "resnet18-s2"]
    assert {k: v for k, v in merged.items() if k != "models"} == {
        k: v for k, v in validate(demo, SCHEMA).items() if k != "models"
    }


def test_schema_synth_defaults_match_the_generator():
    from neurodissect.data.synth import DEFAULTS

    props = yaml.safe_load(SCHEMA.read_text())["$defs"]["synth"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == DEFAULTS


@pytest.mark.parametrize(
    "changes, expected", [BAD[0], BAD[2], BAD[3]], ids=["unknown-key", "wrong-type", "bad-enum"]
)
def test_snakemake_stops_at_load_with_the_key_path(tmp_path, changes, expected):
    cfg = write_config(tmp_path / "config.yaml", changes)
    proc = run_snakemake(tmp_path, "-n", configfile=cfg, check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for text in expected:
        assert text in out, out[-3000:]
    assert "Building DAG" not in out  # stopped while loading the Snakefile


# -- values given as text (Snakemake --config) ------------------------------------------
@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"sae": {"l1_coefficient": "7e-4"}}, ("sae", "l1_coefficient"), 7e-4),  # YAML: text
        ({"sae": {"l1_coefficient": "0.0007"}}, ("sae", "l1_coefficient"), 7e-4),
        ({"sae": {"epochs": "3"}}, ("sae", "epochs"), 3),
        ({"cav": {"include_uninterpretable": "false"}}, ("cav", "include_uninterpretable"), False),
        ({"layers": "[layer4, fc]"}, ("layers",), ["layer4", "fc"]),
        ({"clip": {"path": "null"}}, ("clip", "path"), None),  # BaseLoader: null is text
        ({"opaque": {"probe_cs": ["0.1", "1"]}}, ("opaque", "probe_cs"), [0.1, 1.0]),
        # a string-typed key keeps its text even when it looks like a number
        ({"vocab": {"spacy_model": "1e-3"}}, ("vocab", "spacy_model"), "1e-3"),
    ],
)
def test_text_values_are_coerced_to_the_schema_type(changes, key, expected):
    value = validate(deep_update(TINY_CONFIG, changes), SCHEMA)
    for k in key:
        value = value[k]
    assert value == expected and type(value) is type(expected)


def test_a_text_value_that_cannot_be_coerced_names_the_key():
    with pytest.raises(ConfigError, match=r"'sae.l1_coefficient': expected number, got str 'abc'"):
        validate(deep_update(TINY_CONFIG, {"sae": {"l1_coefficient": "abc"}}), SCHEMA)
    with pytest.raises(ConfigError, match=r"'sae.epochs': expected integer"):
        validate(deep_update(TINY_CONFIG, {"sae": {"epochs": "2.5"}}), SCHEMA)


def test_snakemake_config_on_the_command_line_reruns_exactly_the_sae_chain(tiny_run, tmp_path):
    from conftest import job_names
    from test_invalidation import ALWAYS_AFTER, ANNOTATION, SAE_CHAIN

    run = tiny_run  # dry runs only: shared read-only
    out = run_snakemake(
        run, "-n", "--config", "sae={l1_coefficient: 7e-4}", configfile=run / "config.yaml"
    ).stdout
    jobs = job_names(out)
    assert "train_sae" in jobs and jobs - ALWAYS_AFTER <= SAE_CHAIN, jobs
    assert not jobs & {"train_opaque", "extract_activations", "prepare_data", *ANNOTATION}
    bad = run_snakemake(
        run,
        "-n",
        "--config",
        "sae={l1_coefficient: lots}",
        configfile=run / "config.yaml",
        check=False,
    )
    assert bad.returncode != 0 and "sae.l1_coefficient" in bad.stdout + bad.stderr


def test_config_readme_describes_every_section():
    readme = (REPO / "config" / "README.md").read_text()
    schema = load_yaml(SCHEMA)
    missing = [k for k in schema["properties"] if f"### `{k}`" not in readme]
    assert not missing, f"config/README.md lacks a section for {missing}"


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (REPO / "config" / "examples").glob("*.yaml"))
)
def test_every_example_config_is_valid(example):
    from conftest import deep_update

    cfg = load_yaml(REPO / "config" / "examples" / example)
    if "datasets" not in cfg:  # an overlay given after the demo config (validity.yaml)
        cfg = deep_update(load_yaml(REPO / "config" / "config.yaml"), cfg)
    cfg = validate(cfg, SCHEMA)
    source = cfg["vocab"]["reports_from"]
    assert source is None or source in cfg["datasets"]
    if cfg["clip"]["source"] == "transformers":
        assert cfg["clip"]["model_name"] or cfg["clip"]["path"]
