"""Planted concepts and the free-text reports written from them.

Each concept carries the names that count as it (``synonyms``: the ground truth
a namer is scored against, canonical name first, lowercase noun phrases as spaCy
extracts them) and the sentences a report may use to state or deny it. Every
statement sentence contains one of the synonyms, so a report namer can recover
the concept from the reports of images that show it; the canonical phrase is
the most frequent, so one name dominates as in real reporting habits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("attribute", "artifact", "finding")


@dataclass(frozen=True)
class PlantedConcept:
    """One planted concept: what it is, what it is called, how reports say it."""

    name: str  # column name in concepts_gt (snake_case)
    kind: str  # attribute | artifact | finding
    description: str  # what is drawn, for the dataset card
    synonyms: tuple[str, ...]  # names that count as this concept, canonical first
    present: tuple[str, ...]  # report sentences stating it
    absent: tuple[str, ...]  # report sentences denying it
    extra: dict[str, Any] = field(default_factory=dict)  # causes, spurious_for, class, ...

    def info(self, prevalence: float) -> dict[str, Any]:
        """The concepts_gt.json entry."""
        return {
            "synonyms": list(self.synonyms),
            "kind": self.kind,
            "description": self.description,
            "prevalence": round(float(prevalence), 4),
            **self.extra,
        }


def pick(
    rng: np.random.Generator, options: Sequence[str], canonical_weight: float | None = 0.5
) -> str:
    """One of ``options``: the first (canonical phrasing) with ``canonical_weight``, else
    one of the others; ``None`` = all equally likely."""
    if canonical_weight is None:
        return options[int(rng.integers(len(options)))]
    if len(options) == 1 or rng.random() < canonical_weight:
        return options[0]
    return options[1 + int(rng.integers(len(options) - 1))]


def compose_report(
    rng: np.random.Generator,
    *,
    opening: str,
    concepts: Sequence[PlantedConcept],
    present: Sequence[bool],
    mention_probability: float,
    n_negations: tuple[int, int],
    fillers: Sequence[str],
    n_fillers: tuple[int, int],
    impression: str,
    details: dict[str, dict[str, str]] | None = None,
) -> str:
    """A report: opening, statements of present concepts, a few negations of absent
    ones and normal-finding fillers (shuffled together), then the impression line.

    ``details`` fills placeholders of a concept's sentences (e.g. ``{side}``).
    """
    body: list[str] = []
    for concept, on in zip(concepts, present, strict=True):
        if on and rng.random() < mention_probability:
            body.append(pick(rng, concept.present).format(**(details or {}).get(concept.name, {})))
    absent = [c for c, on in zip(concepts, present, strict=True) if not on and c.absent]
    k = min(len(absent), int(rng.integers(n_negations[0], n_negations[1] + 1)))
    for i in sorted(rng.choice(len(absent), size=k, replace=False)) if k else []:
        body.append(pick(rng, absent[i].absent, canonical_weight=None))
    k = int(rng.integers(n_fillers[0], n_fillers[1] + 1))
    body += [fillers[i] for i in sorted(rng.choice(len(fillers), size=k, replace=False))]
    order = rng.permutation(len(body))
    return " ".join([opening, *(body[i] for i in order), impression])
