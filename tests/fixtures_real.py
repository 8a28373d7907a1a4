"""Tiny stand-ins for the real datasets, written in their exact published layouts.

Each writer creates a raw folder the matching adapter reads as it would read
the real download (file names, headers, JSON keys, .npz keys and image modes as
published; only the image sizes and counts are tiny). Images carry a weak class
signal (a class-coloured / class-placed blob) so a classifier can learn a little.
Every writer returns a dict of what it wrote, for the tests' known answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
NIH_CLASSES = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
# the 2017 release (NIH box): trailing comma on every line
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
NIH_BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
DET_CLASSES = [
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "Diffuse Nodule",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Fracture",
    "Mass",
    "Nodule",
    "Pleural Thickening",
    "Pneumothorax",
]
CHEXPERT_COLUMNS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]


def _blob(size: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - centre[0] * h) ** 2 + (xx - centre[1] * w) ** 2) <= (radius * min(h, w)) ** 2


def _derm_image(rng, cls: int, w: int, h: int) -> Image.Image:
    """Skin background with a lesion whose colour encodes the class."""
    hue = np.array(
        [
            [200, 120, 90],
            [150, 60, 40],
            [110, 70, 40],
            [170, 110, 80],
            [40, 25, 20],
            [120, 80, 50],
            [170, 40, 70],
        ],
        float,
    )[cls]
    img = np.zeros((h, w, 3)) + np.array([225, 185, 160]) + rng.normal(0, 8, (h, w, 3))
    img[_blob((h, w), (0.5, 0.5), 0.3 + 0.03 * rng.random())] = hue
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _cxr_array(rng, findings: list[int], size: int) -> np.ndarray:
    """Gray radiograph-like float image in [0, 1]; each finding a blob at its own place."""
    img = 0.3 + rng.normal(0, 0.03, (size, size))
    for k in findings:
        cy, cx = 0.2 + 0.6 * ((k * 5) % 7) / 6, 0.2 + 0.6 * ((k * 3) % 5) / 4
        img[_blob((size, size), (cy, cx), 0.12)] = 0.9
    return np.clip(img, 0, 1)


def _save_cxr(arr: np.ndarray, path: Path, mode: str) -> None:
    """Save as 8-bit gray ('L'), 16-bit gray ('I;16') or RGBA, as NIH14's PNGs vary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray((arr * 65535).astype(np.uint16)).save(path)
    elif mode == "RGBA":
        g = (arr * 255).astype(np.uint8)
        Image.fromarray(np.stack([g, g, g, np.full_like(g, 255)], -1), "RGBA").save(path)
    else:
        Image.fromarray((arr * 255).astype(np.uint8), "L").save(path)


def write_ham10000(
    root: Path,
    lesions_per_class: int = 4,
    size: tuple[int, int] = (32, 24),
    seed: int = 0,
    dataverse: bool = False,
) -> dict:
    """HAM10000_metadata.csv + HAM10000_images_part_{1,2}/ISIC_*.jpg; 1-2 images per lesion.

    ``dataverse`` writes the Harvard Dataverse variant (extra ``dataset`` column, no .csv).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = [HAM_HEADER + (",dataset" if dataverse else "")]
    images, lesions = {}, {}
    n = 0
    for cls, dx in enumerate(HAM_CLASSES):
        for k in range(lesions_per_class):
            lesion = f"HAM_{cls:02d}{k:05d}"
            for _ in range(1 + int(rng.random() < 0.5)):
                image_id = f"ISIC_{24306 + n:07d}"
                part = "HAM10000_images_part_1" if n % 2 == 0 else "HAM10000_images_part_2"
                (root / part).mkdir(exist_ok=True)
                _derm_image(rng, cls, *size).save(root / part / f"{image_id}.jpg", quality=95)
                sex = ["male", "female", "unknown"][n % 3]
                age = "" if n % 11 == 5 else f"{30 + n % 50}.0"
                line = f"{lesion},{image_id},{dx},histo,{age},{sex},back"
                lines.append(line + (",vidir_modern" if dataverse else ""))
                images[image_id] = f"{part}/{image_id}.jpg"
                lesions[image_id] = lesion
                n += 1
    name = "HAM10000_metadata" if dataverse else "HAM10000_metadata.csv"
    (root / name).write_text("\n".join(lines) + "\n")
    return {"images": images, "lesions": lesions, "metadata": root / name}


def write_nih14(
    root: Path, patients: int = 40, size: int = 32, seed: int = 0, kaggle_layout: bool = True
) -> dict:
    """Data_Entry_2017.csv, train_val_list.txt, test_list.txt, BBox_List_2017.csv and PNGs.

    Most PNGs are 8-bit gray; some are RGBA and some 16-bit, as in the release.
    Every 4th patient is in the official test list.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    entries, train_val, test, boxes = [NIH_HEADER], [], [], [NIH_BOX_HEADER]
    labels, modes, paths = {}, {}, {}
    for p in range(1, patients + 1):
        for follow_up in range(1 + int(rng.random() < 0.5)):
            name = f"{p:08d}_{follow_up:03d}.png"
            findings = sorted(set(rng.choice(14, size=int(rng.integers(0, 3)), replace=False)))
            text = "|".join(NIH_CLASSES[k] for k in findings) or "No Finding"
            i = len(labels)
            mode = "RGBA" if i % 9 == 4 else "I;16" if i % 9 == 7 else "L"
            folder = f"images_{1 + i % 2:03d}/images" if kaggle_layout else "images"
            _save_cxr(_cxr_array(rng, findings, size), root / folder / name, mode)
            entries.append(
                f"{name},{text},{follow_up},{p},{40 + p % 40},{'MF'[p % 2]},PA,"
                f"2500,2048,0.143,0.143,"
            )
            (test if p % 4 == 0 else train_val).append(name)
            labels[name], modes[name], paths[name] = (
                [NIH_CLASSES[k] for k in findings],
                mode,
                f"{folder}/{name}",
            )
            for k in findings[:1]:
                if NIH_CLASSES[k] in NIH_CLASSES[:8] and i % 3 == 0:  # boxes: 8 findings only
                    finding = "Infiltrate" if NIH_CLASSES[k] == "Infiltration" else NIH_CLASSES[k]
                    boxes.append(
                        f"{name},{finding},{size * 0.25:.6f},{size * 0.3:.6f},"
                        f"{size * 0.4:.6f},{size * 0.35:.6f},,,"
                    )
    (root / "Data_Entry_2017.csv").write_text("\n".join(entries) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "BBox_List_2017.csv").write_text("\n".join(boxes) + "\n")
    return {
        "labels": labels,
        "modes": modes,
        "paths": paths,
        "test": test,
        "train_val": train_val,
        "n_boxes": len(boxes) - 1,
    }


def write_chestx_det(
    root: Path, n_train: int = 24, n_test: int = 8, size: int = 32, seed: int = 0
) -> dict:
    """ChestX_Det_{train,test}.json + train/ and test/ PNGs (RGB, as some releases are)."""
    rng = np.random.default_rng(seed)
    out = {"labels": {}, "boxes": {}}
    for part, n, start in (("train", n_train, 36200), ("test", n_test, 37500)):
        entries = []
        for i in range(n):
            name = f"{start + i}.png"
            syms = [DET_CLASSES[k] for k in rng.choice(13, size=int(rng.integers(0, 3)))]
            if i % 5 == 1 and syms:
                syms.append(syms[0])  # the same finding twice (two boxes), as in the release
            box_list = []
            for j, _ in enumerate(syms):
                x1, y1 = 2 + 3 * j, 4 + 2 * j
                box_list.append([x1, y1, x1 + 10, y1 + 8])
            polygons = [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]] for b in box_list]
            entries.append(
                {"file_name": name, "syms": syms, "boxes": box_list, "polygons": polygons}
            )
            arr = _cxr_array(rng, [DET_CLASSES.index(s) for s in syms], size)
            g = (arr * 255).astype(np.uint8)
            (root / part).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([g, g, g], -1), "RGB").save(root / part / name)
            out["labels"][name] = sorted(set(syms), key=DET_CLASSES.index)
            out["boxes"][name] = box_list
        (root / f"ChestX_Det_{part}.json").write_text(json.dumps(entries))
    return out


def write_mimic_cxr(root: Path, subjects: int = 12, size: int = 32, seed: int = 0) -> dict:
    """R2Gen annotation.json + images/p1x/p<subject>/s<study>/<dicom>.jpg + a CheXpert CSV."""
    rng = np.random.default_rng(seed)
    ann = {"train": [], "val": [], "test": []}
    label_rows = ["subject_id,study_id," + ",".join(CHEXPERT_COLUMNS)]
    truth = {}
    phrases = {
        "Cardiomegaly": "The heart is enlarged.",
        "Edema": "Mild pulmonary edema.",
        "Pleural Effusion": "Small left pleural effusion.",
        "Pneumothorax": "Small apical pneumothorax.",
    }
    for s in range(subjects):
        subject = 10000032 + s
        split = ["train", "train", "train", "val", "test"][s % 5]
        for k in range(2):
            study = 50000000 + 10 * s + k
            dicom = f"{s:08x}-{k:08x}-0000aaaa-1111bbbb-2222cccc"
            rel = f"p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"
            cols = {c: "" for c in CHEXPERT_COLUMNS}
            positives = [c for c in phrases if rng.random() < 0.35]
            for c in positives:
                cols[c] = "1.0"
            if rng.random() < 0.3:
                cols["Atelectasis"] = "-1.0"  # uncertain
            if rng.random() < 0.3:
                cols["Pneumonia"] = "0.0"
            if not positives:
                cols["No Finding"] = "1.0"
            report = " ".join(phrases[c] for c in positives) or "No acute cardiopulmonary process."
            ann[split].append(
                {
                    "id": dicom,
                    "study_id": study,
                    "subject_id": subject,
                    "report": report,
                    "image_path": [rel],
                    "split": split,
                }
            )
            label_rows.append(f"{subject},{study}," + ",".join(cols[c] for c in CHEXPERT_COLUMNS))
            arr = _cxr_array(rng, [list(phrases).index(c) for c in positives], size)
            path = root / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((arr * 255).astype(np.uint8), "L").save(path, quality=95)
            truth[dicom] = {
                "positives": positives,
                "uncertain": cols["Atelectasis"] == "-1.0",
                "split": split,
                "subject": str(subject),
            }
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotation.json").write_text(json.dumps(ann))
    (root / "mimic-cxr-2.0.0-chexpert.csv").write_text("\n".join(label_rows) + "\n")
    return truth


def write_fairvlmed(
    root: Path,
    n: tuple[int, int, int] = (8, 3, 4),
    size: tuple[int, int] = (40, 32),
    seed: int = 0,
    summaries: bool = True,
) -> dict:
    """Training/Validation/Test/data_xxxxx.npz with the documented keys (+ summary CSV)."""
    rng = np.random.default_rng(seed)
    truth = {}
    idx = 1
    rows = ["filename,original_note,summarized_note"]
    for folder, count in zip(("Training", "Validation", "Test"), n, strict=True):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            glaucoma = int(rng.random() < 0.5)
            h, w = size
            fundus = np.clip(rng.normal(90, 10, (h, w)), 0, 255)
            fundus[_blob((h, w), (0.5, 0.6), 0.12 + 0.1 * glaucoma)] = 230  # cup size
            note = (
                "glaucoma suspect, cup to disc ratio 0.8, primary open angle glaucoma"
                if glaucoma
                else "healthy optic nerve, no glaucoma"
            )
            name = f"data_{idx:05d}.npz"
            np.savez(
                root / folder / name,
                slo_fundus=fundus.astype(np.uint8),
                md=np.float64(-1.5),
                tds=rng.normal(0, 1, 52),
                age=np.float64(60 + idx % 20),
                gender=np.int64(idx % 2),
                race=np.int64(idx % 3),
                ethnicity=np.int64(-1 if idx % 5 == 0 else 0),
                language=np.int64(0),
                maritalstatus=np.int64(idx % 4),
                glaucoma=np.int64(glaucoma),
                note=np.array(note),
                note_extra=np.array(f"{60 + idx % 20} y.o. {note}"),
            )
            rows.append(f'{name},"{note}","summary: {"glaucoma" if glaucoma else "no glaucoma"}"')
            truth[f"data_{idx:05d}"] = {"glaucoma": glaucoma, "folder": folder, "note": note}
            idx += 1
    if summaries:
        (root / "gpt-4_summarized_notes.csv").write_text("\n".join(rows) + "\n")
    return truth


def write_generic_csv(root: Path, n: int = 30, size: int = 16, seed: int = 0) -> dict:
    """images/*.png + labels.csv (file, diagnosis, findings, report, split, patient)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["file,diagnosis,findings,report,split,patient"]
    truth = {}
    for i in range(n):
        cls = ["benign", "malignant", "other"][i % 3]
        findings = "|".join(f for f in ("spot", "ring") if rng.random() < 0.5)
        g = np.full((size, size), 40 + 80 * (i % 3), np.uint8)
        Image.fromarray(g, "L").save(root / "images" / f"img{i:03d}.png")
        split = "test" if i % 6 == 0 else ""
        rows.append(f"images/img{i:03d}.png,{cls},{findings},a {cls} lesion,{split},pt{i // 2}")
        truth[f"images/img{i:03d}.png"] = {"label": cls, "findings": findings, "split": split}
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return truth
