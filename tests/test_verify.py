"""verify_names: names checked by counterfactual probe pairs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import config_with, planned_jobs
from neurodissect.data.manifest import read_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.verify.explanations import ExplanationProbe, explanation_faithfulness
from neurodissect.verify.probe import Extension, ProbeSet, responses
from neurodissect.verify.run import (
    VerifyParams,
    planted_concept_of,
    read_names,
    read_synonyms,
    verification_metrics,
    verification_table,
    verify_names,
)
from neurodissect.verify.stats import paired_stats
from test_invalidation import ALWAYS_AFTER

PROBES = ProbeSet(
    kind="synthderm", seed=0, size=32, difficulty=0.3, noise=0.1, n_pairs=20, first_index=1_000_000
)
SYNONYMS = {
    "vessels": ["vessels", "arborizing vessels", "branching vessels"],
    "ruler_marks": ["ruler marks", "ruler"],
    "blue_grey_nests": ["blue-grey ovoid nests", "blue-gray ovoid nests", "nests"],
    "pigment_network": ["pigment network", "network"],
}


def wired_units(images: np.ndarray) -> np.ndarray:
    """A tiny model of three units: 0 responds to bright-red pixels (the colour synthderm
    draws vessels in), 1 is random (seeded noise, blind to the image), 2 is constant."""
    x = images.astype(np.float64) / 255.0
    redness = np.clip(x[..., 0] - np.maximum(x[..., 1], x[..., 2]) - 0.45, 0, None)
    red = redness.mean(axis=(1, 2))
    noise = np.random.default_rng(int(images.sum()) % 2**32).normal(size=len(images))
    return np.stack([red, noise, np.ones(len(images))], axis=1)


@pytest.fixture(scope="module")
def stats():
    out = {}
    for concept in ("vessels", "ruler_marks"):
        r1, r0 = responses(PROBES, concept, wired_units, batch_size=8)
        assert r1.shape == r0.shape == (PROBES.n_pairs, 3)
        out[concept] = paired_stats(r1, r0, significance=0.05)
    return out


def test_a_unit_wired_to_a_concept_is_confirmed_and_a_random_one_is_not(stats):
    vessels = stats["vessels"]
    assert vessels["confirmed"].tolist() == [True, False, False]
    assert vessels["auroc"][0] == 1.0 and vessels["effect"][0] > 0
    assert vessels["p_value"][0] < 1e-3 and vessels["p_value"][2] == 1.0
    # the red unit does not move when only the ruler is toggled
    assert stats["ruler_marks"]["effect"][0] == 0 and not stats["ruler_marks"]["confirmed"][0]


def sparse_units(images: np.ndarray) -> np.ndarray:
    """Unit 0: the vessel (red) unit gated by the corner pixel, which a pair shares, so it
    is silent with and without the concept on ~6 of 7 probes (an SAE latent's sparsity);
    unit 1: constant."""
    gate = images[:, 0, 0, 0] >= 185
    return np.stack([wired_units(images)[:, 0] * gate, np.ones(len(images))], axis=1)


def test_sparse_units_get_pairs_until_the_test_has_informative_ones():
    fixed = paired_stats(*responses(PROBES, "vessels", sparse_units, 8), 0.05)
    assert fixed["n_informative"][0] < 6 and not fixed["confirmed"][0]  # untestable at 20
    ext = Extension(np.array([0]), min_informative=12, max_pairs=400)
    r1, r0 = responses(PROBES, "vessels", sparse_units, 8, ext)
    grown = paired_stats(r1, r0, 0.05)
    assert 12 <= grown["n_informative"][0] <= 12 + 8 and grown["confirmed"][0]
    assert len(r1) < 400 and len(r1) % 8 == 20 % 8  # stopped by the count, batch by batch
    # the same pairs as the fixed run first: extending never re-draws the first n_pairs
    np.testing.assert_array_equal(r1[:20], responses(PROBES, "vessels", sparse_units, 8)[0])
    # a unit that never moves is rendered up to the cap, and stays unconfirmed
    r1, r0 = responses(PROBES, "vessels", sparse_units, 8, Extension(np.array([1]), 4, 36))
    assert len(r1) == 36 and not paired_stats(r1, r0, 0.05)["confirmed"][1]
    # min_informative 0: exactly n_pairs
    assert len(responses(PROBES, "vessels", sparse_units, 8, Extension(np.array([0])))[0]) == 20


def test_names_that_are_not_planted_concepts_are_unverifiable_not_failures(stats):
    names = pd.DataFrame(
        {
            "unit": [0, 1, 2, 0],
            "name": ["arborizing vessel", "vessels", "diffuse sunlight", "ruler"],
        }
    )
    table = verification_table(names, SYNONYMS, stats)
    assert table["verifiable"].tolist() == [True, True, False, True]
    assert table["confirmed"].tolist()[:2] == [True, False]
    assert pd.isna(table.loc[2, "confirmed"]) and table.loc[2, "concept"] == ""
    assert table.loc[0, "best_concept"] == "vessels"
    metrics = verification_metrics(table)
    assert metrics["n_verifiable"] == 3 and metrics["verified_fraction"] == pytest.approx(1 / 3)
    # unit 0 responds most to vessels: right under its first name, wrong under "ruler"
    assert metrics["best_concept_named_fraction"] == pytest.approx(1 / 2)


def test_names_map_to_planted_concepts_through_synonyms():
    assert planted_concept_of("blue-gray ovoid nest", SYNONYMS) == "blue_grey_nests"
    assert planted_concept_of("pigment network", SYNONYMS) == "pigment_network"
    assert planted_concept_of("network", SYNONYMS) == "pigment_network"
    assert planted_concept_of("melanoma", SYNONYMS) is None


def test_probe_batches_are_bounded_and_deterministic():
    sizes = [len(w) for w, _ in PROBES.batches("vessels", 8)]
    assert sizes == [8, 8, 4]
    a = next(PROBES.batches("vessels", 8))[0]
    b = next(PROBES.batches("vessels", 8))[0]
    np.testing.assert_array_equal(a, b)


def test_bad_names_table_is_one_clear_error(tmp_path):
    path = tmp_path / "names.parquet"
    pd.DataFrame({"unit": [0], "label": ["x"]}).to_parquet(path)
    with pytest.raises(InputError, match="expected columns"):
        read_names(path)


def test_real_datasets_are_a_no_op_with_empty_outputs(tmp_path, caplog):
    names = tmp_path / "neuron_concepts.parquet"
    pd.DataFrame({"unit": [0, 0, 1], "rank": [0, 1, 0], "concept": ["a", "b", "c"]}).to_parquet(
        names
    )
    outs = [tmp_path / "v.parquet", tmp_path / "v.json", tmp_path / "v.png"]
    with caplog.at_level("INFO"):
        verify_names(
            names,
            tmp_path / "none.pt",
            tmp_path / "none.parquet",
            tmp_path / "none.json",
            *outs,
            kind="nih14",
            synth=None,
            arch="resnet18",
            layer="fc",
            params=None,
        )
    assert "not a generated synthetic" in caplog.text
    assert pd.read_parquet(outs[0]).empty and json.loads(outs[1].read_text()) == {}
    assert outs[2].exists()


def test_synonyms_come_from_the_ground_truth_json(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"vessels": {"synonyms": ["telangiectasia"]}}))
    assert read_synonyms(path, ["vessels", "hair"]) == {
        "vessels": ["vessels", "telangiectasia"],
        "hair": ["hair"],
    }


# -- explanations verified by intervention ----------------------------------------------
# synthderm recipes (seed 0, noise 0.1) that show exactly vessels and one other concept
BOTH_CAUSES = {"SD_0000001": "blue_grey_nests", "SD_0000407": "blue_grey_nests"}  # of bcc
UNRELATED = {"SD_0000177": "hair", "SD_0000400": "ruler_marks"}


def red_logits(images: np.ndarray) -> np.ndarray:
    """Opaque logits of a model whose "bcc" logit is the vessel (red) unit; "nv" constant."""
    return wired_units(images)[:, [0, 2]]


def explained(cited: dict[str, str]) -> pd.DataFrame:
    """An explanations table: each image's CBM cites ``cited[image]`` first for bcc."""
    return pd.DataFrame(
        {
            "image_id": list(cited),
            "class": "bcc",
            "rank": 1,
            "concept": list(cited.values()),
            "contribution": 1.0,
        }
    )


def probe_of_wired_model() -> ExplanationProbe:
    from neurodissect.data.synth.counterfactual import concept_names

    synonyms = {c: [c.replace("_", " ")] for c in concept_names("synthderm")}
    return ExplanationProbe(
        kind="synthderm",
        synth={"seed": 0, "n": 600, "size": 32, "difficulty": 0.3, "noise": 0.1},
        opaque="unused.pt",
        arch="resnet18",
        classes=["bcc", "nv"],
        synonyms=synonyms,
        params=VerifyParams(),
        causes={"bcc": ["vessels", "blue_grey_nests"], "nv": []},
    )


def test_an_explanation_citing_what_the_model_uses_is_faithful_and_one_citing_another_is_not():
    probe = probe_of_wired_model()
    images = {**BOTH_CAUSES, **UNRELATED}
    # cites vessels: the random other concept is the image's second one, which the red
    # logit ignores, so every image is a win
    right = explanation_faithfulness(
        explained(dict.fromkeys(images, "vessels")), probe, logits=red_logits
    )
    assert right["n_faithfulness_images"] == 4
    assert right["explanation_faithfulness"] == 1.0
    assert right["explanation_both_causes_rate"] == 0.5  # nests and vessels both cause bcc
    assert right["explanation_faithfulness_ceiling"] == 1.0
    # cites the other concept: the random one is then vessels, what the model uses
    wrong = explanation_faithfulness(
        explained({i: c.replace("_", " ") for i, c in images.items()}), probe, logits=red_logits
    )
    assert wrong["explanation_faithfulness"] == 0.0 and wrong["n_faithfulness_images"] == 4
    # ... though citing vessels was possible: the ceiling says the data allowed it
    assert wrong["explanation_faithfulness_ceiling"] == 1.0
    # a CBM without a vessels concept could not have cited it: ceiling 0
    others = ["blue grey nests", "hair", "ruler marks"]
    capped = explanation_faithfulness(
        explained({i: c.replace("_", " ") for i, c in images.items()}),
        probe,
        concepts=others,
        logits=red_logits,
    )
    assert capped["explanation_faithfulness_ceiling"] == 0.0


def test_explanations_without_a_shown_planted_concept_are_not_scored():
    probe = probe_of_wired_model()
    table = explained({"SD_0000177": "streaks", "SD_0000400": "ruler marks"})  # streaks: not shown
    out = explanation_faithfulness(table, probe, logits=red_logits)
    assert out["n_faithfulness_images"] == 1 and out["explanation_faithfulness"] == 0.0
    assert out["explanation_both_causes_rate"] == 0.0


# -- the rule in the tiny run -----------------------------------------------------------
def test_verify_names_in_the_tiny_run(tiny_run):
    run = tiny_run / "results" / "tiny" / "resnet18-s0"
    for units in ("annotate/fc", "annotate/layer4", "sae"):
        table = pd.read_parquet(run / units / "verification.parquet")
        columns = "unit name concept n_pairs auroc effect p_value confirmed"
        assert set(columns.split()) <= set(table.columns)
        assert len(table) and table["unit"].is_unique
        verifiable = table[table["verifiable"]]
        assert verifiable["auroc"].between(0, 1).all()
        assert (table.loc[~table["verifiable"], "concept"] == "").all()
        metrics_file = "sae/metrics.json" if units == "sae" else f"{units}/metrics.json"
        metrics = json.loads((run / metrics_file).read_text())
        assert metrics["n_verifiable"] == len(verifiable)
        if len(verifiable):
            assert metrics["verified_fraction"] == pytest.approx(verifiable["confirmed"].mean())
        assert (run / "figures" / "verify" / f"{units}.png").exists()


@pytest.mark.parametrize(
    "change", [{"n_pairs": 5}, {"min_informative_pairs": 3}, {"max_pairs": 40}]
)
def test_verify_settings_rerun_verification_and_the_metrics_only(tiny_run, tmp_path, change):
    cfg = config_with(tiny_run, {"verify": change}, tmp_path / "config.yaml")
    jobs = planned_jobs(tiny_run, cfg)  # tiny run: n_pairs 6
    assert jobs - ALWAYS_AFTER == {
        "verify_names:annotate",
        "verify_names:sae",
        "evaluate_annotation",
        "evaluate_sae",
    }, jobs


def test_explanations_are_verified_by_intervention_in_the_tiny_run(tiny_run):
    metrics = json.loads((tiny_run / "results/tiny/resnet18-s0/cbm/metrics.json").read_text())
    assert metrics["n_faithfulness_images"] >= 0
    if metrics["n_faithfulness_images"]:
        assert 0.0 <= metrics["explanation_faithfulness"] <= 1.0
    rho = metrics["explanation_rank_correlation"]
    assert rho is None or -1.0 <= rho <= 1.0
    for key in ("explanation_faithfulness_ceiling", "explanation_both_causes_rate"):
        assert key in metrics and (metrics[key] is None or 0.0 <= metrics[key] <= 1.0)


def test_explanation_probe_reads_the_dataset_and_its_settings(synth_data):
    from dataclasses import replace

    from neurodissect.verify.explanations import ProbeSettings, explanation_probe

    data = synth_data("synthderm")
    model_input = {"image_size": 32, "pooling": "mean", "vit_tokens": "cls"}
    verify = {"n_explanations": 7, "seed": 3, "batch_size": 8}
    synth = {"seed": 0, "n": 160, "size": 32, "noise": 0.1, "difficulty": 0.5}
    settings = ProbeSettings.from_config(
        "synthderm", synth, "resnet18", verify, model_input, {"device": "cpu"}
    )
    files = ("model.pt", data / "manifest.parquet", data / "concepts_gt.json")
    probe = explanation_probe(*files, settings)
    assert (probe.n_images, probe.seed, probe.arch, probe.synth) == (7, 3, "resnet18", synth)
    params = probe.params
    assert (params.batch_size, params.image_size, params.device) == (8, 32, "cpu")
    assert probe.classes == read_manifest(data / "manifest.parquet").classes
    assert set(probe.causes) == set(probe.classes) and any(probe.causes.values())
    assert explanation_probe(*files, replace(settings, synth=None)) is None  # real data
    with pytest.raises(ConfigError, match=r"'verify'.*\['n_pairs'\]"):
        ProbeSettings.from_config("synthderm", synth, "resnet18", {"n_pairs": 3}, model_input)
