"""Comparing concept names with ground-truth synonyms, the same way everywhere
(annotation hit rate, SAE named_correct_fraction, CBM explanation hit rate).

A predicted name matches a truth when, after normalisation (lowercase,
hyphens and punctuation to spaces, a plural last word singularised), it
equals one of the truth's synonyms or contains one as a whole-word sequence
("dark pigment network" matches "pigment network"; "network" alone does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NON_WORD = re.compile(r"[^a-z0-9]+")
_KEEP_S = ("ss", "us", "is", "os", "as")


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(_KEEP_S):
        return word[:-1]
    return word


def normalize_concept(text: str) -> str:
    words = _NON_WORD.sub(" ", str(text).lower()).split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def matches(name: str, synonyms: Iterable[str]) -> bool:
    """True if ``name`` names the truth described by ``synonyms``."""
    padded = f" {normalize_concept(name)} "
    for syn in synonyms:
        s = normalize_concept(syn)
        if s and f" {s} " in padded:
            return True
    return False


def names_a_class(name: str, class_synonyms: dict[str, list[str]]) -> bool:
    """Whether ``name`` names a class: contains one of its synonyms or is contained in one
    ("malignant melanoma", "lentigo" for "solar lentigo") — a label, not a concept."""
    return any(
        matches(name, syns) or any(matches(syn, [name]) for syn in syns)
        for syns in class_synonyms.values()
    )
