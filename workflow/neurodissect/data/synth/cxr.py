"""synthcxr: chest-radiograph-like grayscale images with planted findings and devices.

Anatomy (body, lungs with vascular markings and ribs, mediastinum, heart,
diaphragm, clavicles) is drawn on every image with small random variation.
Findings are sampled per image with realistic co-occurrence (effusion is more
common with cardiomegaly), devices with correlations that are shortcuts in real
data (chest tubes with pneumothorax, sternotomy wires and pacemakers with
cardiomegaly). Labels are the findings, each entry redrawn from its prevalence
with probability ``noise``. Every planted structure gets a bounding box in
pixel coordinates of the stored image, measured from its drawn mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cxr_draw import render
from .layout import (
    CARD,
    GT_CONCEPTS_CSV,
    GT_CONCEPTS_JSON,
    GT_LABELS_CSV,
    IMAGES_DIR,
    REPORTS_CSV,
    STREAM_CASE,
    STREAM_GROUPS,
    STREAM_RENDER,
    STREAM_REPORT,
    SynthParams,
    concept_table,
    markdown_table,
    run_items,
    save_png,
    stream,
    write_csv,
    write_ground_truth,
)
from .reports import PlantedConcept, compose_report, pick

CLASSES = ["Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Consolidation"]
CLASS_SYNONYMS = {
    "Cardiomegaly": ["Cardiomegaly", "cardiomegaly", "enlarged heart"],
    "Effusion": ["Effusion", "pleural effusion", "effusion"],
    "Pneumothorax": ["Pneumothorax", "pneumothorax"],
    "Nodule": ["Nodule", "pulmonary nodule", "nodule"],
    "Mass": ["Mass", "lung mass", "mass"],
    "Consolidation": ["Consolidation", "consolidation", "airspace consolidation"],
}
FINDING_OF = {  # planted finding concept → class
    "cardiomegaly": "Cardiomegaly",
    "pleural_effusion": "Effusion",
    "pneumothorax": "Pneumothorax",
    "nodule": "Nodule",
    "mass": "Mass",
    "consolidation": "Consolidation",
}
PREVALENCE = {
    "cardiomegaly": 0.22,
    "pleural_effusion": 0.18,
    "pneumothorax": 0.14,
    "nodule": 0.14,
    "mass": 0.10,
    "consolidation": 0.18,
}
EFFUSION_WITH_CARDIOMEGALY = 0.40
# device: (finding it is spuriously tied to, P | finding, P | no finding); None = independent
DEVICES = {
    "pacemaker": ("cardiomegaly", 0.35, 0.05),
    "central_line": (None, 0.18, 0.18),
    "chest_tube": ("pneumothorax", 0.60, 0.04),
    "ecg_electrodes": (None, 0.30, 0.30),
    "sternotomy_wires": ("cardiomegaly", 0.40, 0.05),
}


def _c(name, kind, description, synonyms, present, absent=(), **extra) -> PlantedConcept:
    return PlantedConcept(
        name, kind, description, tuple(synonyms), tuple(present), tuple(absent), extra
    )


CONCEPTS: list[PlantedConcept] = [
    _c(
        "cardiomegaly",
        "finding",
        "an enlarged heart (cardiothoracic ratio about 0.6)",
        ["cardiomegaly", "enlarged cardiac silhouette", "cardiac enlargement", "enlarged heart"],
        [
            "There is cardiomegaly.",
            "There is an enlarged cardiac silhouette.",
            "Moderate cardiomegaly is noted.",
            "There is cardiac enlargement.",
        ],
        ["The heart size is normal.", "No cardiomegaly."],
        **{"class": "Cardiomegaly"},
    ),
    _c(
        "pleural_effusion",
        "finding",
        "fluid filling a lung base with a meniscus, blunting the costophrenic angle",
        # the meniscus is the sign drawn and reported ("an effusion with a meniscus")
        ["pleural effusion", "effusion", "pleural fluid", "meniscus"],
        [
            "There is a {side} pleural effusion.",
            "A small {side} pleural effusion is present.",
            "There is a {side} effusion with a meniscus.",
            "There is {side} pleural fluid.",
        ],
        ["No pleural effusion.", "There is no effusion."],
        **{"class": "Effusion"},
    ),
    _c(
        "pneumothorax",
        "finding",
        "a dark lung periphery without markings, bounded by a thin pleural line",
        ["pneumothorax", "visible pleural line", "pleural line", "collapsed lung"],
        [
            "There is a {side} pneumothorax.",
            "A {side} apical pneumothorax is seen.",
            "There is a visible pleural line with a {side} pneumothorax.",
            "There is a large {side} pneumothorax.",
        ],
        ["No pneumothorax.", "There is no pneumothorax."],
        **{"class": "Pneumothorax"},
    ),
    _c(
        "nodule",
        "finding",
        "a small round opacity in a lung",
        ["nodule", "pulmonary nodule", "lung nodule", "nodular opacity"],
        [
            "There is a pulmonary nodule in the {side} {zone} zone.",
            "A small nodule projects over the {side} lung.",
            "There is a {side} lung nodule.",
            "There is a rounded nodular opacity in the {side} lung.",
        ],
        ["No pulmonary nodules.", "There is no nodule."],
        **{"class": "Nodule"},
    ),
    _c(
        "mass",
        "finding",
        "a large lobulated opacity in a lung",
        ["mass", "lung mass", "pulmonary mass", "mass lesion", "lobulated opacity"],
        [
            "There is a large mass in the {side} lung.",
            "There is a {side} lung mass.",
            "A pulmonary mass is seen in the {side} {zone} zone.",
            # reports describe what is seen, as for the other findings' signs
            "A lobulated opacity in the {side} {zone} zone is consistent with a mass.",
        ],
        ["No mass.", "There is no mass."],
        **{"class": "Mass"},
    ),
    _c(
        "consolidation",
        "finding",
        "a patchy cloud-like opacity in a lung zone",
        ["consolidation", "airspace opacity", "airspace consolidation", "patchy opacity"],
        [
            "There is {side} {zone} zone consolidation.",
            "There is patchy airspace opacity in the {side} {zone} zone.",
            "There is focal consolidation in the {side} lung.",
            "Patchy consolidation is seen in the {side} lung.",
        ],
        ["No focal consolidation.", "There is no consolidation."],
        **{"class": "Consolidation"},
    ),
    _c(
        "pacemaker",
        "artifact",
        "a bright generator box below the left clavicle with leads to the heart",
        ["pacemaker", "cardiac pacemaker", "pacemaker leads", "pacing device"],
        [
            "There is a left chest wall pacemaker.",
            "A cardiac pacemaker is in place.",
            "There is a pacemaker with leads in the right ventricle.",
        ],
        spurious_for=["Cardiomegaly"],
    ),
    _c(
        "central_line",
        "artifact",
        "a thin bright catheter from the neck into the superior vena cava",
        ["central venous catheter", "central line", "catheter", "venous catheter"],
        [
            "There is a right internal jugular central venous catheter.",
            "A central line terminates in the superior vena cava.",
            "The central venous catheter tip is in the cavoatrial junction.",
        ],
    ),
    _c(
        "chest_tube",
        "artifact",
        "a thick bright tube entering from the lateral chest wall",
        ["chest tube", "chest drain", "thoracostomy tube", "pleural drain"],
        [
            "There is a {side} chest tube.",
            "A {side} chest tube is in place.",
            "There is a {side} pleural drain.",
        ],
        spurious_for=["Pneumothorax"],
    ),
    _c(
        "ecg_electrodes",
        "artifact",
        "small bright rings with wires on the chest",
        ["ecg electrodes", "ecg leads", "monitoring electrodes", "electrodes"],
        [
            "There are external ECG electrodes.",
            "ECG electrodes are seen on the chest wall.",
            "Monitoring electrodes are present on the chest.",
        ],
    ),
    _c(
        "sternotomy_wires",
        "artifact",
        "small bright wire loops stacked on the midline",
        ["sternotomy wires", "median sternotomy wires", "sternal wires", "sternotomy"],
        [
            "There are median sternotomy wires.",
            "There are intact sternotomy wires.",
            "There are sternal wires from prior surgery.",
        ],
        spurious_for=["Cardiomegaly"],
    ),
]
CONCEPT_NAMES = [c.name for c in CONCEPTS]

OPENINGS = [
    "FINDINGS: PA view of the chest.",
    "FINDINGS: Frontal chest radiograph.",
    "FINDINGS: PA and lateral views of the chest.",
    "FINDINGS: Portable AP chest film.",
]
FILLERS = [
    "The lungs are otherwise clear.",
    "The mediastinal contours are normal.",
    "The osseous structures are intact.",
    "The trachea is midline.",
    "The hila are unremarkable.",
    "There is no pulmonary edema.",
    "No acute osseous abnormality.",
]
SIDES = ("right", "left")  # patient side; the patient's right is the image's left
ZONES = ("upper", "middle", "lower")


@dataclass
class CxrCase:
    concepts: np.ndarray  # (n_concepts,) bool
    labels: np.ndarray  # (n_classes,) bool, noisy
    sides: dict[str, int] = field(default_factory=dict)  # concept → 0 right / 1 left
    age: int = 50
    sex: str = "M"
    view: str = "PA"


def sample_case(rng: np.random.Generator, noise: float) -> CxrCase:
    col = {n: j for j, n in enumerate(CONCEPT_NAMES)}
    on = np.zeros(len(CONCEPTS), dtype=bool)
    for name, p in PREVALENCE.items():
        if name == "pleural_effusion" and on[col["cardiomegaly"]]:
            p = EFFUSION_WITH_CARDIOMEGALY
        on[col[name]] = rng.random() < p
    if on[col["nodule"]] and on[col["mass"]]:  # one focal lesion per image keeps boxes clear
        on[col["nodule"]] = False
    for name, (tied, p_on, p_off) in DEVICES.items():
        on[col[name]] = rng.random() < (p_on if tied and on[col[tied]] else p_off)
    truth = np.array([on[col[c]] for c in FINDING_OF])
    redraw = rng.random(len(CLASSES)) < noise
    prevalence = np.array([PREVALENCE[c] for c in FINDING_OF])
    labels = np.where(redraw, rng.random(len(CLASSES)) < prevalence, truth)
    sides = {
        n: int(rng.integers(2))
        for n in ("pleural_effusion", "pneumothorax", "nodule", "mass", "consolidation")
    }
    sides["chest_tube"] = sides["pneumothorax"]  # the drain treats the pneumothorax
    return CxrCase(
        concepts=on,
        labels=labels,
        sides=sides,
        age=int(np.clip(rng.normal(52, 18), 1, 95)),
        sex="M" if rng.random() < 0.55 else "F",
        view="AP" if rng.random() < 0.3 else "PA",
    )


def write_report(rng: np.random.Generator, case: CxrCase, zones: dict[str, int]) -> str:
    details = {n: {"side": SIDES[s], "zone": ZONES[zones.get(n, 1)]} for n, s in case.sides.items()}
    positives = [CLASSES[i] for i in np.flatnonzero(case.labels)]
    if positives:
        names = [pick(rng, CLASS_SYNONYMS[c][1:], canonical_weight=0.7) for c in positives]
        impression = "IMPRESSION: " + " ".join(n[0].upper() + n[1:] + "." for n in names)
    else:
        impression = "IMPRESSION: " + pick(
            rng,
            [
                "No acute cardiopulmonary process.",
                "No acute cardiopulmonary abnormality.",
                "Normal chest radiograph.",
            ],
            canonical_weight=None,
        )
    return compose_report(
        rng,
        opening=OPENINGS[int(rng.integers(len(OPENINGS)))],
        concepts=CONCEPTS,
        present=case.concepts,
        mention_probability=0.95,
        n_negations=(1, 3),
        fillers=FILLERS,
        n_fillers=(1, 3),
        impression=impression,
        details=details,
    )


# -- the raw dataset (NIH ChestX-ray14-like layout) -----------------------------------------
KIND_CODE = 2
DATA_ENTRY_CSV = "Data_Entry.csv"
DATA_ENTRY_HEADER = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "Image Path",
]
BBOX_CSV = "BBox_List.csv"
BBOX_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "Concept"]
NO_FINDING = "No Finding"
CAUSES = {cls: [concept] for concept, cls in FINDING_OF.items()}


def patients_of_images(seed: int, n: int) -> list[tuple[int, int]]:
    """(patient, follow-up) of each image: a third of the patients have follow-ups."""
    rng = stream(seed, KIND_CODE, STREAM_GROUPS)
    out: list[tuple[int, int]] = []
    patient = 0
    while len(out) < n:
        patient += 1
        visits = 1 if rng.random() < 0.67 else int(rng.integers(2, 4))
        out += [(patient, k) for k in range(visits)]
    return out[:n]


def finding_labels(flags) -> str:
    names = [c for c, on in zip(CLASSES, flags, strict=True) if on]
    return "|".join(names) if names else NO_FINDING


@dataclass
class CxrItem:
    entry: list
    report: list
    boxes: list
    concepts: np.ndarray
    truth: np.ndarray
    labels: np.ndarray


def make_item(root: Path, p: SynthParams, i: int, visit: tuple[int, int]) -> CxrItem:
    """Image ``i`` (patient, follow-up ``visit``): PNG written, its table rows returned."""
    patient, follow_up = visit
    case = sample_case(stream(p.seed, KIND_CODE, STREAM_CASE, i), p.noise)
    present = dict(zip(CONCEPT_NAMES, case.concepts, strict=True))
    pixels, found, zones = render(
        stream(p.seed, KIND_CODE, STREAM_RENDER, i), present, case.sides, p.size, p.difficulty
    )
    image_id = f"{patient:08d}_{follow_up:03d}.png"
    rel = f"{IMAGES_DIR}/{image_id}"
    save_png(pixels, root / rel)
    report = write_report(stream(p.seed, KIND_CODE, STREAM_REPORT, i), case, zones)
    boxes = [
        [image_id, FINDING_OF.get(concept, concept), *(f"{v:.1f}" for v in box), concept]
        for concept in CONCEPT_NAMES  # fixed order: boxes follow the concept table
        for box in found.get(concept, [])
    ]
    return CxrItem(
        entry=[
            image_id,
            finding_labels(case.labels),
            follow_up,
            patient,
            case.age,
            case.sex,
            case.view,
            rel,
        ],
        report=[image_id, report],
        boxes=boxes,
        concepts=case.concepts,
        truth=np.array([case.concepts[CONCEPT_NAMES.index(c)] for c in FINDING_OF]),
        labels=case.labels,
    )


def generate_synthcxr(root: Path, p: SynthParams, workers: int = 1) -> None:
    visits = patients_of_images(p.seed, p.n)
    (root / IMAGES_DIR).mkdir(parents=True)
    items = run_items(make_item, root, p, visits, workers, desc="synthcxr")
    ids = [it.report[0] for it in items]
    boxes = [b for it in items for b in it.boxes]
    present = np.array([it.concepts for it in items], dtype=bool)
    truth = np.array([it.truth for it in items], dtype=bool)
    labels = np.array([it.labels for it in items], dtype=bool)
    write_csv(root / DATA_ENTRY_CSV, DATA_ENTRY_HEADER, (it.entry for it in items))
    write_csv(root / BBOX_CSV, BBOX_HEADER, boxes)
    write_csv(root / REPORTS_CSV, ["image_id", "report"], (it.report for it in items))
    write_csv(
        root / GT_LABELS_CSV,
        ["image_id", "findings_true"],
        ([i, finding_labels(t)] for i, t in zip(ids, truth, strict=True)),
    )
    prevalence = write_ground_truth(root, ids, present, CONCEPTS, CAUSES)
    card = dataset_card(present, truth, labels, prevalence, visits, len(boxes), str(p))
    (root / CARD).write_text(card)


def dataset_card(present, truth, labels, prevalence, visits, n_boxes: int, params: str) -> str:
    col = {c: j for j, c in enumerate(CONCEPT_NAMES)}
    rows = [
        [
            f"`{cls}`",
            ", ".join(CLASS_SYNONYMS[cls][1:]),
            f"`{concept}`",
            f"{PREVALENCE[concept]:.0%}",
            f"{labels[:, k].mean():.1%}",
        ]
        for k, (concept, cls) in enumerate(FINDING_OF.items())
    ]

    def rate(device: str, finding: str, on: bool) -> str:
        m = present[:, col[finding]] == on
        return f"{present[m, col[device]].mean():.0%}" if m.any() else "n/a"

    spurious = "\n".join(
        f"- `{d}` in {rate(d, f, True)} of images with `{f}` vs {rate(d, f, False)} without"
        for d, (f, _, _) in DEVICES.items()
        if f
    )
    no_finding = float((~labels.any(axis=1)).mean())
    noisy = float((labels != truth).mean())
    return f"""# synthcxr — synthetic chest radiograph dataset

Procedurally generated by `neurodissect synth synthcxr` ({params}); the same
parameters always give byte-identical files. {len(labels)} grayscale frontal chest
radiograph-like images (body, lungs with vascular markings and ribs, mediastinum,
heart, diaphragm, clavicles) of {len({p for p, _ in visits})} patients (some with
follow-up images: `Patient ID` groups them, and splits keep a patient together).

## Classes (multi-label findings, NIH ChestX-ray14 names)

Each finding is planted with the prevalence below (effusion with probability
{EFFUSION_WITH_CARDIOMEGALY:.0%} when the heart is enlarged); the label of each finding
is its planted truth, redrawn from the prevalence with probability `noise` — in this
sample {noisy:.1%} of the label entries differ from the truth
(`ground_truth/labels.csv`). {no_finding:.0%} of the images are labelled "{NO_FINDING}".

{
        markdown_table(
            ["class", "names in reports", "planted concept", "prevalence", "labelled positive"],
            rows,
        )
    }

## Planted concepts

{concept_table(CONCEPTS, prevalence)}

## Spurious correlations

Devices are not findings, but in real data they travel with them (a chest drain is
placed to treat a pneumothorax; pacemakers and sternotomy wires come with heart
disease), so a classifier can use them as shortcuts:

{spurious}

## Reports

One per image (`reports.csv`), in the FINDINGS / IMPRESSION style of radiology
reports: a sentence for each present concept with its side and lung zone (mentioned
with probability 0.95, in varied phrasing drawn from the concept's synonyms), one to
three explicit negations ("No pneumothorax.", "The heart size is normal."), normal
filler sentences, and an impression line naming the (noisy) labels' findings or "No
acute cardiopulmonary process.".

## Files

- `{DATA_ENTRY_CSV}`: {", ".join(DATA_ENTRY_HEADER)} (`Finding Labels` joined by `|`,
  "{NO_FINDING}" when none; `Image Path` is relative to this folder)
- `{BBOX_CSV}`: {n_boxes} boxes as in BBox_List_2017.csv (image, finding, x, y, w, h in
  pixels of the stored image) plus the planted `Concept`; every planted finding and
  device has one (ECG leads: one per electrode)
- `{IMAGES_DIR}/<patient>_<follow-up>.png`: the images
- `{REPORTS_CSV}`: image_id, report
- `{GT_CONCEPTS_CSV}`: image_id and one 0/1 column per planted concept
- `{GT_CONCEPTS_JSON}`: per concept: synonyms, kind, description, prevalence, `class`
  (findings), `causes` and `spurious_for`
- `{GT_LABELS_CSV}`: image_id, findings_true (before label noise)
"""
