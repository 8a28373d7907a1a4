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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..io import PathLike
from .run import VerifyParams, planted_concept_of

log = logging.getLogger(__name__)


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


def _removals(table: pd.DataFrame, probe: ExplanationProbe, rng) -> list[dict]:
    """Per testable image: its recipe, the class, the cited planted concepts (with their
    contributions) and the random other concept to remove."""
    from ..data.synth.counterfactual import recipe_present, recipes_of

    images = list(dict.fromkeys(table["image_id"].astype(str)))[: probe.n_images]
    recipes = recipes_of(probe.kind, images, int(probe.synth["seed"]), int(probe.synth["n"]))
    cases = []
    for image_id, (index, case_index) in zip(images, recipes, strict=True):
        rows = table[table["image_id"].astype(str) == image_id].sort_values("rank")
        present = recipe_present(probe.kind, int(probe.synth["seed"]), case_index,
                                 float(probe.synth["noise"]))  # fmt: skip
        cited: dict[str, float] = {}
        for name, contribution in zip(rows["concept"], rows["contribution"], strict=True):
            concept = planted_concept_of(str(name), probe.synonyms)
            if concept is not None and present.get(concept) and concept not in cited:
                cited[concept] = float(contribution)
        if not cited:
            continue
        first = next(iter(cited))
        others = sorted(c for c, on in present.items() if on and c != first)
        cases.append({"index": index, "case_index": case_index, "cited": cited,
                      "class": probe.classes.index(str(rows["class"].iloc[0])),
                      "random": str(rng.choice(others)) if others else None})  # fmt: skip
    return cases


def explanation_faithfulness(table: pd.DataFrame, probe: ExplanationProbe) -> dict[str, Any]:
    """The metrics of the module doc, from explanations.parquet's table."""
    from scipy.stats import spearmanr

    from ..data.synth.counterfactual import render_pair
    from ..runtime import pick_device
    from .probe import unit_responder

    s, p = probe.synth, probe.params
    cases = _removals(table, probe, np.random.default_rng(probe.seed))
    wins, contributions, drops = [], [], []
    device = str(pick_device(p.device))
    with unit_responder(probe.opaque, probe.arch, len(probe.classes), "logits",
                        image_size=p.image_size, device=device) as logits:  # fmt: skip
        for case in cases:
            removed = [*case["cited"], *([case["random"]] if case["random"] else [])]
            pairs = [render_pair(probe.kind, c, seed=int(s["seed"]), index=case["index"],
                                 size=int(s["size"]), difficulty=float(s["difficulty"]),
                                 noise=float(s["noise"]), case_index=case["case_index"])
                     for c in dict.fromkeys(removed)]  # fmt: skip
            images = np.stack([pairs[0].with_concept, *(q.without for q in pairs)])
            out = logits(images)[:, case["class"]]
            drop = dict(zip(dict.fromkeys(removed), out[0] - out[1:], strict=True))
            for concept, contribution in case["cited"].items():
                contributions.append(contribution)
                drops.append(float(drop[concept]))
            if case["random"]:
                wins.append(drop[next(iter(case["cited"]))] > drop[case["random"]])
    rho = spearmanr(contributions, drops).statistic if len(drops) > 2 else np.nan
    metrics = {
        "explanation_faithfulness": float(np.mean(wins)) if wins else None,
        "explanation_rank_correlation": None if np.isnan(rho) else float(rho),
        "n_faithfulness_images": len(wins),
    }
    log.info("explanations verified by intervention: %s", metrics)
    return metrics


def explanation_probe(kind: str, synth: dict | None, opaque: PathLike, arch: str,
                      manifest: PathLike, gt_synonyms: PathLike, cfg: dict,
                      model_input: dict, device: str = "auto") -> ExplanationProbe | None:  # fmt: skip
    """The probe of a generated synthetic dataset from rule params, or None (other data)."""
    if synth is None:
        return None
    from ..data.manifest import read_manifest
    from ..data.synth.counterfactual import concept_names
    from .run import read_synonyms

    params = VerifyParams.from_config(cfg, model_input, model_input, {"device": device})
    return ExplanationProbe(
        kind=kind, synth=synth, opaque=opaque, arch=arch,
        classes=list(read_manifest(manifest).classes),
        synonyms=read_synonyms(gt_synonyms, concept_names(kind)), params=params,
        n_images=int(cfg.get("n_explanations", 100)), seed=int(cfg.get("seed", 0)),
    )  # fmt: skip
