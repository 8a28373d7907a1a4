"""Counterfactual renders of synthetic images: the same recipe with one planted
concept added or removed, everything else (case, lesion or anatomy, layout, the other
concepts, sensor noise) unchanged.

An image's recipe is its generator key: (seed, image index, case index). A pair is
rendered from the image's own random streams; the toggled concept's draws come from
the image stream when it is present (a dry draw when removed) and from a stream of its
own when added, so nothing else moves (see :class:`.draw.Scene`). With no
toggle the render is byte-identical to the generator's image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draw import Scene, output_region
from .layout import STREAM_CASE, STREAM_RENDER, stream

STREAM_TOGGLE = 4  # after the layout's GROUPS, CASE, RENDER, REPORT streams


@dataclass(frozen=True)
class Pair:
    """One image rendered with and without a concept; ``region`` (size x size bool) is
    where the concept is drawn in either; ``present`` whether the recipe has it."""

    with_concept: np.ndarray
    without: np.ndarray
    region: np.ndarray
    present: bool


def _generator(kind: str):
    from . import cxr, cxr_draw, derm, derm_draw

    def draw_cxr(scene, case, size, d):
        return cxr_draw.render_scene(scene, case.sides, size, d)[0]

    if kind == "synthderm":
        return derm, lambda scene, case, size, d: derm_draw.render_scene(scene, size, d)
    if kind == "synthcxr":
        return cxr, draw_cxr
    raise ValueError(f"no counterfactual renderer for dataset kind {kind!r}")


def concept_names(kind: str) -> list[str]:
    return list(_generator(kind)[0].CONCEPT_NAMES)


def recipe_present(kind: str, seed: int, case_index: int, noise: float) -> dict[str, bool]:
    """The planted concepts of the case ``case_index`` (as the generator samples it)."""
    module, _ = _generator(kind)
    case = module.sample_case(stream(seed, module.KIND_CODE, STREAM_CASE, case_index), noise)
    return dict(zip(module.CONCEPT_NAMES, map(bool, case.concepts), strict=True))


def render_pair(
    kind: str,
    concept: str,
    *,
    seed: int,
    index: int,
    size: int,
    difficulty: float,
    noise: float,
    case_index: int | None = None,
) -> Pair:
    """Image ``index`` (case ``case_index``, default ``index``) with and without ``concept``."""
    module, draw = _generator(kind)
    if concept not in module.CONCEPT_NAMES:
        raise KeyError(f"{kind} has no planted concept {concept!r}")
    k = module.KIND_CODE
    case_index = index if case_index is None else case_index
    case = module.sample_case(stream(seed, k, STREAM_CASE, case_index), noise)
    present = dict(zip(module.CONCEPT_NAMES, map(bool, case.concepts), strict=True))
    toggle_rng = np.random.default_rng(
        [seed, k, STREAM_TOGGLE, index, module.CONCEPT_NAMES.index(concept)]
    )
    images, regions = {}, []
    for toggle in (None, concept):
        scene = Scene(stream(seed, k, STREAM_RENDER, index), present, toggle, toggle_rng, concept)
        images[toggle] = draw(scene, case, size, difficulty)
        regions.append(output_region(scene.region, size))
    shown, hidden = (None, concept) if present[concept] else (concept, None)
    return Pair(images[shown], images[hidden], regions[0] | regions[1], present[concept])


def recipes_of(kind: str, image_ids, seed: int, n: int) -> list[tuple[int, int]]:
    """(image index, case index) of each generated image id of a dataset of ``n`` images."""
    from . import cxr, derm

    ids = [str(i) for i in image_ids]
    if kind == "synthderm":
        lesions = derm.lesion_of_images(seed, n)
        index = [int(i.removeprefix("SD_")) if i.startswith("SD_") else -1 for i in ids]
        case = [lesions[i] if 0 <= i < n else -1 for i in index]
    elif kind == "synthcxr":
        where = {
            f"{p:08d}_{f:03d}.png": k for k, (p, f) in enumerate(cxr.patients_of_images(seed, n))
        }
        index = [where.get(i, -1) for i in ids]
        case = index  # a synthcxr case is sampled per image
    else:
        raise ValueError(f"no counterfactual renderer for dataset kind {kind!r}")
    unknown = [i for i, k in zip(ids, index, strict=True) if k < 0]
    if unknown:
        raise KeyError(
            f"{len(unknown)} image ids are not images of this {kind} dataset "
            f"(seed {seed}, n {n}), e.g. {unknown[:3]}"
        )
    return list(zip(index, case, strict=True))
