"""synthderm: dermoscopy-like RGB images with planted lesion attributes and artifacts.

A case is sampled generatively: true diagnosis from a mildly imbalanced prior,
then each concept independently with a probability that depends on the
diagnosis (each class has one or two characteristic concepts drawn with high
probability, rare elsewhere), then label noise (a ``noise`` fraction of labels
redrawn from the prior). Ruler marks are spuriously correlated with melanoma.
The image is a pure function of the concepts and a per-image random stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .derm_draw import render
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

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
CLASS_SYNONYMS = {
    "akiec": ["akiec", "actinic keratosis", "intraepithelial carcinoma"],
    "bcc": ["bcc", "basal cell carcinoma"],
    "bkl": ["bkl", "benign keratosis", "seborrheic keratosis", "solar lentigo"],
    "df": ["df", "dermatofibroma"],
    "mel": ["mel", "melanoma", "malignant melanoma"],
    "nv": ["nv", "melanocytic nevus", "nevus", "benign nevus"],
    "vasc": ["vasc", "vascular lesion", "angioma", "hemangioma"],
}
# mild imbalance (HAM10000 itself is 67 % nevi)
PRIOR = {"akiec": 0.11, "bcc": 0.13, "bkl": 0.15, "df": 0.09, "mel": 0.18, "nv": 0.24, "vasc": 0.10}
P_HIGH, P_LOW = 0.95, 0.03
# a present concept is mentioned in the report with this probability (lower when harder)
MENTION_BASE, MENTION_SLOPE = 0.98, 0.06


def _c(name, kind, description, synonyms, present, absent=(), **extra) -> PlantedConcept:
    return PlantedConcept(
        name, kind, description, tuple(synonyms), tuple(present), tuple(absent), extra
    )


CONCEPTS: list[PlantedConcept] = [
    _c(
        "pigment_network",
        "attribute",
        "a mesh of thin dark-brown lines over the lesion",
        ["pigment network", "reticular pattern", "network", "reticular network"],
        [
            "There is a pigment network.",
            "The lesion shows a regular pigment network.",
            "The lesion has a delicate pigment network.",
            "A reticular pigment network is seen.",
        ],
        ["No pigment network is seen.", "There is no pigment network."],
    ),
    _c(
        "dots_globules",
        "attribute",
        "small round dark-brown to black blobs inside the lesion",
        ["dots and globules", "globules", "dots", "brown globules", "dark dots"],
        [
            "There are brown dots and globules.",
            "The lesion shows multiple globules.",
            "There are dark dots and globules within the lesion.",
            "Several brown globules are seen.",
        ],
        ["No dots or globules.", "There are no globules."],
    ),
    _c(
        "streaks",
        "attribute",
        "dark radial lines crossing the lesion border outwards",
        ["streaks", "radial streaks", "peripheral streaks", "radial streaming"],
        [
            "There are streaks at the periphery.",
            "The lesion shows radial streaks.",
            "Peripheral streaks are present.",
            "There are streaks at the lesion edge.",
        ],
        ["No streaks are seen.", "There are no streaks."],
    ),
    _c(
        "blue_white_veil",
        "attribute",
        "a translucent blue-white patch over part of the lesion",
        ["blue-white veil", "bluish-white veil", "veil", "blue-white structureless area"],
        [
            "There is a blue-white veil.",
            "The lesion shows a blue-white veil over its centre.",
            "A bluish-white veil covers part of the lesion.",
            "There is a blue-white veil in the centre.",
        ],
        ["No blue-white veil.", "There is no blue-white veil."],
    ),
    _c(
        "irregular_border",
        "attribute",
        "a jagged, notched lesion outline",
        ["irregular border", "irregular margin", "jagged border", "notched border"],
        [
            "The lesion has an irregular border.",
            "There is an irregular border.",
            "The irregular border is notched.",
            "There are irregular margins.",
        ],
        ["The lesion has a regular border.", "The border is smooth and regular."],
    ),
    _c(
        "asymmetry",
        "attribute",
        "an off-round lesion (lopsided in shape and colour)",
        ["asymmetry", "asymmetric shape", "asymmetrical shape", "asymmetric outline"],
        [
            "There is marked asymmetry.",
            "The lesion shows asymmetry of shape.",
            "The lesion has an asymmetric shape.",
            "There is asymmetry in two axes.",
        ],
        ["The lesion is symmetric.", "There is no asymmetry."],
    ),
    _c(
        "vessels",
        "attribute",
        "thin red branching curves across the lesion",
        ["arborizing vessels", "vessels", "branching vessels", "telangiectasia"],
        [
            "There are arborizing vessels.",
            "The lesion shows branching vessels.",
            "Fine arborizing vessels cross the lesion.",
            "There are branching vessels on the surface.",
        ],
        ["No vessels are seen.", "There are no vessels."],
    ),
    _c(
        "blue_grey_nests",
        "attribute",
        "a few large blue-grey ovoid blobs",
        [
            "blue-grey ovoid nests",
            "blue-gray ovoid nests",
            "ovoid nests",
            "blue-grey nests",
            "nests",
        ],
        [
            "There are blue-grey ovoid nests.",
            "The lesion shows large blue-gray ovoid nests.",
            "Several blue-grey nests are present.",
        ],
        ["No blue-grey ovoid nests.", "There are no ovoid nests."],
    ),
    _c(
        "erythema",
        "attribute",
        "pink-red colouring of the lesion and a pink halo around it",
        ["erythema", "pink erythema", "pink background", "redness"],
        [
            "There is pink erythema.",
            "There is pink erythema around the lesion.",
            "There is erythema at the lesion edge.",
            "The lesion shows diffuse erythema.",
        ],
        ["No erythema.", "There is no erythema."],
    ),
    _c(
        "scale",
        "attribute",
        "irregular white-yellow flakes on the lesion surface",
        ["scale", "white scale", "surface scale", "keratin scale"],
        [
            "There is white scale on the surface.",
            "The lesion shows surface scale.",
            "There is keratin scale over the lesion.",
        ],
        ["No scale.", "There is no scale."],
    ),
    _c(
        "milia_cysts",
        "attribute",
        "small bright white round spots inside the lesion",
        ["milia-like cysts", "cysts", "milia", "white cysts"],
        [
            "There are milia-like cysts.",
            "The lesion shows several milia-like cysts.",
            "Small white cysts are seen.",
        ],
        ["No milia-like cysts.", "There are no milia-like cysts."],
    ),
    _c(
        "fissures",
        "attribute",
        "short tortuous dark grooves inside the lesion (brain-like)",
        ["fissures", "fissures and ridges", "ridges", "cerebriform pattern", "brain-like pattern"],
        [
            "There are fissures and ridges.",
            "The lesion shows fissures.",
            "The surface has fissures and a cerebriform pattern.",
            "There are deep fissures.",
        ],
        ["No fissures.", "There are no fissures."],
    ),
    _c(
        "white_patch",
        "attribute",
        "a central white scar-like area",
        ["central white patch", "white patch", "scar-like patch", "white scar-like area"],
        [
            "There is a central white patch.",
            "The lesion shows a white scar-like patch.",
            "A central white patch is seen.",
            "There is a white patch in the centre.",
        ],
        ["No central white patch.", "There is no white patch."],
    ),
    _c(
        "red_lacunae",
        "attribute",
        "well-demarcated round red-purple areas",
        ["red lacunae", "lacunae", "lacuna", "red lagoons", "lagoons"],
        [
            "There are red lacunae.",
            "The lesion shows red lacunae.",
            "There are red-purple lacunae.",
            "Well-demarcated red lacunae are present.",
        ],
        ["No red lacunae.", "There are no lacunae."],
    ),
    _c(
        "hair",
        "artifact",
        "dark thin curves crossing the whole image",
        ["hair", "hairs", "hair artifact"],
        [
            "There is hair over the lesion.",
            "Several hairs cross the image.",
            "There is hair partly covering the field.",
            "Hair artifact is present.",
        ],
        ["No hair artifact.", "There is no hair."],
    ),
    _c(
        "ruler_marks",
        "artifact",
        "black tick marks on a pale strip along one image edge",
        ["ruler marks", "ruler", "ruler markings", "measuring ruler"],
        [
            "There are ruler marks at the edge.",
            "A ruler is visible at the image edge.",
            "There are ruler markings along one edge.",
            "The image includes a measuring ruler.",
        ],
        spurious_for=["mel"],
    ),
    _c(
        "gel_bubbles",
        "artifact",
        "light circles with a bright rim (air in the immersion gel)",
        ["gel bubbles", "air bubbles", "bubbles", "immersion gel bubbles"],
        [
            "Several gel bubbles are seen.",
            "Air bubbles are seen in the immersion gel.",
            "Gel bubbles are seen over the lesion.",
            "There are several air bubbles in the gel.",
        ],
    ),
]
CONCEPT_NAMES = [c.name for c in CONCEPTS]

# P(concept | true class): the characteristic concepts (causes) of each class
CAUSES = {
    "akiec": ["erythema", "scale"],
    "bcc": ["vessels", "blue_grey_nests"],
    "bkl": ["milia_cysts", "fissures"],
    "df": ["white_patch", "pigment_network"],
    "mel": ["blue_white_veil", "streaks"],
    "nv": ["pigment_network", "dots_globules"],
    "vasc": ["red_lacunae"],
}
# weaker, shared tendencies (border and shape are classic but unspecific melanoma cues)
MODERATE = {
    ("mel", "irregular_border"): 0.70,
    ("bcc", "irregular_border"): 0.35,
    ("akiec", "irregular_border"): 0.30,
    ("mel", "asymmetry"): 0.70,
    ("bkl", "asymmetry"): 0.30,
    ("vasc", "erythema"): 0.50,
}
INDEPENDENT = {"hair": 0.30, "gel_bubbles": 0.25}  # artifacts unrelated to the diagnosis
SPURIOUS = {"ruler_marks": ("mel", 0.70, 0.10)}  # artifact: (class, P | class, P | other)

SITES = [
    "back",
    "chest",
    "abdomen",
    "upper arm",
    "forearm",
    "thigh",
    "lower leg",
    "face",
    "scalp",
    "neck",
    "shoulder",
    "foot",
]
OPENINGS = [
    "Dermoscopy of a pigmented lesion on the {site}.",
    "Dermoscopic image of a skin lesion on the {site}.",
    "Polarized dermoscopy of a lesion on the {site}.",
]
FILLERS = [
    "The surrounding skin is unremarkable.",
    "No ulceration is seen.",
    "Image quality is adequate.",
    "The patient reports no recent change.",
    "There is no bleeding.",
    "The lesion is slightly raised.",
    "Follow-up is advised.",
    "The lesion is well visualised.",
]
IMPRESSIONS = [
    "Impression: {}.",
    "Diagnosis: {}.",
    "Findings are consistent with {}.",
    "Dermoscopic diagnosis: {}.",
]


def concept_probabilities() -> np.ndarray:
    """(n_classes, n_concepts) P(concept present | true class)."""
    p = np.full((len(CLASSES), len(CONCEPTS)), P_LOW)
    col = {n: j for j, n in enumerate(CONCEPT_NAMES)}
    for i, k in enumerate(CLASSES):
        for name in CAUSES[k]:
            p[i, col[name]] = P_HIGH
        for name, prob in INDEPENDENT.items():
            p[i, col[name]] = prob
        for name, (cls, on, off) in SPURIOUS.items():
            p[i, col[name]] = on if k == cls else off
    for (k, name), prob in MODERATE.items():
        p[CLASSES.index(k), col[name]] = prob
    return p


PROBABILITIES = concept_probabilities()


@dataclass
class DermCase:
    true_class: int
    label: int
    concepts: np.ndarray  # (n_concepts,) bool
    site: str
    age: int
    sex: str


def sample_case(rng: np.random.Generator, noise: float) -> DermCase:
    prior = np.array([PRIOR[k] for k in CLASSES])
    true_class = int(rng.choice(len(CLASSES), p=prior))
    concepts = rng.random(len(CONCEPTS)) < PROBABILITIES[true_class]
    label = int(rng.choice(len(CLASSES), p=prior)) if rng.random() < noise else true_class
    return DermCase(
        true_class=true_class,
        label=label,
        concepts=concepts,
        site=SITES[int(rng.integers(len(SITES)))],
        age=int(np.clip(rng.normal(55, 17), 5, 90) // 5 * 5),
        sex="male" if rng.random() < 0.52 else "female",
    )


def write_report(rng: np.random.Generator, case: DermCase, difficulty: float) -> str:
    diagnosis = pick(rng, CLASS_SYNONYMS[CLASSES[case.label]][1:], canonical_weight=0.7)
    return compose_report(
        rng,
        opening=OPENINGS[int(rng.integers(len(OPENINGS)))].format(site=case.site),
        concepts=CONCEPTS,
        present=case.concepts,
        mention_probability=MENTION_BASE - MENTION_SLOPE * difficulty,
        n_negations=(1, 3),
        fillers=FILLERS,
        n_fillers=(1, 2),
        impression=IMPRESSIONS[int(rng.integers(len(IMPRESSIONS)))].format(diagnosis),
    )


# -- the raw dataset (HAM10000-like layout) -------------------------------------------------
KIND_CODE = 1
METADATA_CSV = "synthderm_metadata.csv"
METADATA_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "image"]
SECOND_IMAGE = 0.15  # fraction of lesions photographed twice (as in HAM10000)


def lesion_of_images(seed: int, n: int) -> list[int]:
    """Lesion index of each image: some lesions have two images (grouped in splits)."""
    rng = stream(seed, KIND_CODE, STREAM_GROUPS)
    out: list[int] = []
    while len(out) < n:
        out += [len(set(out))] * (2 if rng.random() < SECOND_IMAGE else 1)
    return out[:n]


@dataclass
class DermItem:
    meta: list
    report: list
    concepts: np.ndarray
    true_class: int
    label: int


def make_item(root: Path, p: SynthParams, i: int, lesion: int) -> DermItem:
    """Image ``i`` (of lesion ``lesion``): PNG written, its table rows returned."""
    case = sample_case(stream(p.seed, KIND_CODE, STREAM_CASE, lesion), p.noise)
    image_id = f"SD_{i:07d}"
    present = dict(zip(CONCEPT_NAMES, case.concepts, strict=True))
    pixels = render(stream(p.seed, KIND_CODE, STREAM_RENDER, i), present, p.size, p.difficulty)
    rel = f"{IMAGES_DIR}/{image_id}.png"
    save_png(pixels, root / rel)
    report = write_report(stream(p.seed, KIND_CODE, STREAM_REPORT, i), case, p.difficulty)
    return DermItem(
        meta=[
            f"SDL_{lesion:07d}",
            image_id,
            CLASSES[case.label],
            "synthetic",
            case.age,
            case.sex,
            case.site,
            rel,
        ],
        report=[image_id, report],
        concepts=case.concepts,
        true_class=case.true_class,
        label=case.label,
    )


def generate_synthderm(root: Path, p: SynthParams, workers: int = 1) -> None:
    lesions = lesion_of_images(p.seed, p.n)
    (root / IMAGES_DIR).mkdir(parents=True)
    items = run_items(make_item, root, p, lesions, workers, desc="synthderm")
    ids = [it.report[0] for it in items]
    present = np.array([it.concepts for it in items], dtype=bool)
    true_class = np.array([it.true_class for it in items], dtype=np.int64)
    labels = np.array([it.label for it in items], dtype=np.int64)
    write_csv(root / METADATA_CSV, METADATA_HEADER, (it.meta for it in items))
    write_csv(root / REPORTS_CSV, ["image_id", "report"], (it.report for it in items))
    write_csv(
        root / GT_LABELS_CSV,
        ["image_id", "dx_true"],
        ([i, CLASSES[k]] for i, k in zip(ids, true_class, strict=True)),
    )
    prevalence = write_ground_truth(root, ids, present, CONCEPTS, CAUSES)
    card = dataset_card(present, true_class, labels, prevalence, lesions, str(p))
    (root / CARD).write_text(card)


def dataset_card(present, true_class, labels, prevalence, lesions, params: str) -> str:
    col = {c: j for j, c in enumerate(CONCEPT_NAMES)}
    rows = []
    for k, cls in enumerate(CLASSES):
        causes = ", ".join(
            f"`{c}` ({present[true_class == k, col[c]].mean():.0%})"
            if (true_class == k).any()
            else f"`{c}`"
            for c in CAUSES[cls]
        )
        rows.append(
            [
                f"`{cls}`",
                ", ".join(CLASS_SYNONYMS[cls][1:]),
                f"{PRIOR[cls]:.0%}",
                int((labels == k).sum()),
                causes,
            ]
        )
    mel = true_class == CLASSES.index("mel")
    ruler = present[:, col["ruler_marks"]]
    rate = lambda m: f"{ruler[m].mean():.0%}" if m.any() else "n/a"  # noqa: E731
    noisy = float((labels != true_class).mean())
    return f"""# synthderm — synthetic dermoscopy dataset

Procedurally generated by `neurodissect synth synthderm` ({params}); the same
parameters always give byte-identical files. {len(labels)} RGB images of one
skin lesion each, from {len(set(lesions))} lesions (some photographed twice:
`lesion_id` groups them, and splits keep a lesion together).

## Classes (HAM10000's seven diagnoses)

Each image's true diagnosis is drawn from the prior below; then each planted concept
independently, with probability {P_HIGH:.0%} for the class's characteristic concepts
(its planted causes) and {P_LOW:.0%} otherwise (border irregularity and asymmetry are
weaker melanoma cues, hair and gel bubbles are unrelated to the diagnosis). Label
noise: a fraction `noise` of the labels is redrawn from the prior — in this sample
{noisy:.1%} of the labels (`dx`) differ from the true diagnosis
(`ground_truth/labels.csv`), so labels are learnable from the concepts but noisy.

{
        markdown_table(
            [
                "class",
                "names in reports",
                "prior",
                "images (label)",
                "planted causes (share of the class showing it)",
            ],
            rows,
        )
    }

## Planted concepts

{concept_table(CONCEPTS, prevalence)}

## Spurious correlation

Ruler marks (an acquisition artifact, not a property of the lesion) appear in
{rate(mel)} of true melanomas and {rate(~mel)} of the other lesions, as rulers are
more often photographed next to lesions excised as suspicious. A classifier can use
them as a shortcut; a faithful explanation of a melanoma prediction should name
the veil and streaks, not the ruler.

## Reports

One per image (`reports.csv`): an opening naming the body site, a sentence for
each present concept (mentioned with probability {MENTION_BASE} - {MENTION_SLOPE} x difficulty, in
varied phrasing drawn from the concept's synonyms), one to three explicit
negations of absent concepts ("There are no streaks.", "No erythema."), normal
filler sentences, and an impression line naming the (noisy) label's diagnosis
("Impression: melanoma.").

## Files

- `{METADATA_CSV}`: {", ".join(METADATA_HEADER)} (`image` is the path relative to this folder)
- `{IMAGES_DIR}/SD_*.png`: the images
- `{REPORTS_CSV}`: image_id, report
- `{GT_CONCEPTS_CSV}`: image_id and one 0/1 column per planted concept
- `{GT_CONCEPTS_JSON}`: per concept: synonyms, kind, description, prevalence,
  `causes` (classes it is a planted cause of) and `spurious_for` (classes it is
  spuriously correlated with)
- `{GT_LABELS_CSV}`: image_id, dx_true (the diagnosis before label noise)
"""
