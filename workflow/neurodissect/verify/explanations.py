"""Explanations verified by intervention (synthetic data; in ``evaluate_cbm``).

For each explained test image (explanations.parquet: the CBM's top concepts for its
predicted class, ranked), the first cited concept that names a planted concept the
image shows is removed by re-rendering the image's recipe without it, and so is one
other planted concept the image shows, drawn at random (seeded). The opaque model's
logit for the explained class drops by Δ_cited and Δ_random:

- explanation_faithfulness = share of testable images with Δ_cited > Δ_random (a
  faithful explanation cites what the model uses, shortcut or not);
- explanation_rank_correlation = Spearman correlation, pooled over images, of the
  contribution of every cited concept (a planted one the image shows) with the logit
  drop its removal causes;
- n_faithfulness_images = images scored (a cited planted concept and another one shown).

Two diagnostics say where a shortfall comes from (every planted concept the image shows
is removed in turn, so both are measured on the same renders):

- explanation_faithfulness_ceiling = the faithfulness an explanation would reach that
  cited, of the concepts the CBM can name, the one whose removal lowers the logit most:
  per scored image the share of its other shown concepts whose drop is smaller (the
  expectation over the random draw). Near 1 while the faithfulness is low: the data
  allow a faithful citation, the CBM's concept scores point elsewhere (a latent named
  after one concept that responds more to a co-occurring one: verify_names'
  ``best_concept``);
- explanation_both_causes_rate = share of scored images whose cited and random concepts
  are both planted causes of the explained class (concepts_gt.json ``causes``): then
  which of the two the model leans on more is a property of the model and the data, not
  a wrong explanation.

Every image the explanation loses on is logged (class, cited concept and its
contribution, random concept, both drops) in the rule's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings_from
from ..io import PathLike
from .run import ExplanationSettings, VerifyParams, planted_concept_of

log = logging.getLogger(__name__)

Logits = Callable[[np.ndarray], np.ndarray]  # uint8 images (B, H, W[, C]) -> (B, n_classes)


@dataclass(frozen=True)
class ExplanationProbe:
    """What re-rendering the explained images needs: the generator and the opaque model."""

    kind: str
    synth: dict
    opaque: PathLike
    arch: str
    classes: list[str]
    synonyms: dict[str, list[str]]
    params: VerifyParams
    n_images: int = 100
    seed: int = 0
    causes: dict[str, list[str]] = field(default_factory=dict)  # class → its planted causes


def _removals(
    table: pd.DataFrame, probe: ExplanationProbe, rng, nameable: set[str] | None = None
) -> list[dict]:
    """Per testable image: its recipe, the class, the cited planted concepts (with their
    contributions), the random other concept to remove, and the shown concepts the CBM
    can name (``nameable``; None: all of them)."""
    from ..data.synth.counterfactual import recipe_present, recipes_of

    images = list(dict.fromkeys(table["image_id"].astype(str)))[: probe.n_images]
    recipes = recipes_of(probe.kind, images, int(probe.synth["seed"]), int(probe.synth["n"]))
    cases = []
    for image_id, (index, case_index) in zip(images, recipes, strict=True):
        rows = table[table["image_id"].astype(str) == image_id].sort_values("rank")
        present = recipe_present(
            probe.kind, int(probe.synth["seed"]), case_index, float(probe.synth["noise"])
        )
        cited: dict[str, float] = {}
        for name, contribution in zip(rows["concept"], rows["contribution"], strict=True):
            concept = planted_concept_of(str(name), probe.synonyms)
            if concept is not None and present.get(concept) and concept not in cited:
                cited[concept] = float(contribution)
        if not cited:
            continue
        first = next(iter(cited))
        shown = sorted(c for c, on in present.items() if on)
        others = [c for c in shown if c != first]
        cases.append(
            {
                "image_id": image_id,
                "index": index,
                "case_index": case_index,
                "cited": cited,
                "class": probe.classes.index(str(rows["class"].iloc[0])),
                "random": str(rng.choice(others)) if others else None,
                "shown": shown,
                "nameable": [c for c in shown if nameable is None or c in nameable],
            }
        )
    return cases


def removal_drops(cases: list[dict], probe: ExplanationProbe, logits: Logits) -> list[dict]:
    """Per case, concept → drop of the explained class's logit when the image is
    re-rendered without it (every planted concept it shows)."""
    from ..data.synth.counterfactual import render_pair

    s = probe.synth
    out = []
    for case in cases:
        removed = list(
            dict.fromkeys(
                [*case["cited"], *([case["random"]] if case["random"] else []), *case["shown"]]
            )
        )
        pairs = [
            render_pair(
                probe.kind,
                c,
                seed=int(s["seed"]),
                index=case["index"],
                size=int(s["size"]),
                difficulty=float(s["difficulty"]),
                noise=float(s["noise"]),
                case_index=case["case_index"],
            )
            for c in removed
        ]
        images = np.stack([pairs[0].with_concept, *(q.without for q in pairs)])
        out_y = np.asarray(logits(images))[:, case["class"]]
        out.append(dict(zip(removed, (out_y[0] - out_y[1:]).astype(float).tolist(), strict=True)))
    return out


def _ceiling(drop: dict[str, float], nameable: list[str]) -> float | None:
    """Expected win, over the random draw, of citing the nameable concept with the largest
    drop against another shown concept (``drop`` has every shown one)."""
    if not nameable:
        return None
    best = max(nameable, key=lambda c: drop[c])
    others = [c for c in drop if c != best]
    return float(np.mean([drop[best] > drop[c] for c in others])) if others else None


def faithfulness_metrics(
    cases: list[dict],
    drops: list[dict],
    probe: ExplanationProbe,
) -> dict[str, Any]:
    """The metrics of the module doc from the cases and their removal drops."""
    from scipy.stats import spearmanr

    wins, contributions, cited_drops, ceilings, both = [], [], [], [], []
    for case, drop in zip(cases, drops, strict=True):
        for concept, contribution in case["cited"].items():
            contributions.append(contribution)
            cited_drops.append(drop[concept])
        if not case["random"]:
            continue
        first, other = next(iter(case["cited"])), case["random"]
        wins.append(drop[first] > drop[other])
        ceilings.append(_ceiling(drop, case["nameable"]))
        causes = probe.causes.get(probe.classes[case["class"]], [])
        both.append(first in causes and other in causes)
        if not wins[-1]:
            log.info(
                "explanation loses on %s (%s): cited %s (contribution %.3f) drop %.3f, "
                "random %s drop %.3f, both causes of the class: %s",
                case["image_id"],
                probe.classes[case["class"]],
                first,
                case["cited"][first],
                drop[first],
                other,
                drop[other],
                both[-1],
            )
    varies = len(cited_drops) > 2 and np.ptp(contributions) > 0 and np.ptp(cited_drops) > 0
    rho = spearmanr(contributions, cited_drops).statistic if varies else np.nan  # else undefined
    ceilings = [c for c in ceilings if c is not None]
    return {
        "explanation_faithfulness": float(np.mean(wins)) if wins else None,
        "explanation_rank_correlation": None if np.isnan(rho) else float(rho),
        "n_faithfulness_images": len(wins),
        "explanation_faithfulness_ceiling": float(np.mean(ceilings)) if ceilings else None,
        "explanation_both_causes_rate": float(np.mean(both)) if both and probe.causes else None,
    }


def explanation_faithfulness(
    table: pd.DataFrame,
    probe: ExplanationProbe,
    concepts: list[str] | None = None,
    logits: Logits | None = None,
) -> dict[str, Any]:
    """The metrics of the module doc, from explanations.parquet's table; ``concepts``: the
    CBM's concept names (what the ceiling may cite; None: every planted concept);
    ``logits``: images → opaque logits (default: ``probe.opaque`` loaded)."""
    nameable = None
    if concepts is not None:
        nameable = {planted_concept_of(str(c), probe.synonyms) for c in concepts} - {None}
    cases = _removals(table, probe, np.random.default_rng(probe.seed), nameable)
    if logits is not None:
        drops = removal_drops(cases, probe, logits)
    else:
        from ..runtime import pick_device
        from .probe import unit_responder

        p = probe.params
        with unit_responder(
            probe.opaque,
            probe.arch,
            len(probe.classes),
            "logits",
            image_size=p.image_size,
            device=str(pick_device(p.device)),
        ) as opaque:
            drops = removal_drops(cases, probe, opaque)
    metrics = faithfulness_metrics(cases, drops, probe)
    log.info("explanations verified by intervention: %s", metrics)
    return metrics


@dataclass(frozen=True)
class ProbeSettings:
    """What the explanation probe reads besides its files: the dataset's format and
    generator settings (None: not generated, so no probe), the opaque model's architecture,
    the verify keys of the probe and the model input / device of the re-rendered images."""

    kind: str
    synth: dict | None
    arch: str
    explain: ExplanationSettings
    model: VerifyParams

    @classmethod
    def from_config(
        cls,
        kind: str,
        synth: dict | None,
        arch: str,
        verify: dict[str, Any],
        model_input: dict[str, Any],
        runtime: dict[str, Any] | None = None,
    ) -> ProbeSettings:
        """From evaluate_cbm's params: ``verify`` holds ExplanationSettings' keys (any other
        is a ConfigError), ``model_input`` image_size / pooling / vit_tokens."""
        explain = settings_from(ExplanationSettings, verify, section="verify")
        model = VerifyParams.from_config(verify, model_input, model_input, runtime)
        return cls(kind, synth, arch, explain, model)


def explanation_probe(
    opaque: PathLike, manifest: PathLike, gt_synonyms: PathLike, settings: ProbeSettings
) -> ExplanationProbe | None:
    """The probe of a generated synthetic dataset, or None (other data)."""
    if settings.synth is None:
        return None
    from ..data.manifest import read_manifest
    from ..data.synth.counterfactual import concept_names
    from ..evaluate.groundtruth import class_causes, read_json_file
    from .run import read_synonyms

    classes = list(read_manifest(manifest).classes)
    return ExplanationProbe(
        kind=settings.kind,
        synth=settings.synth,
        opaque=opaque,
        arch=settings.arch,
        classes=classes,
        synonyms=read_synonyms(gt_synonyms, concept_names(settings.kind)),
        params=settings.model,
        n_images=settings.explain.n_explanations,
        seed=settings.explain.seed,
        causes=class_causes(read_json_file(gt_synonyms), classes),
    )
