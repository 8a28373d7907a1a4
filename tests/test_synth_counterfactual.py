"""Counterfactual renders: one planted concept toggled, nothing else moved."""

import numpy as np
import pytest

from neurodissect.data.synth import cxr as synth_cxr
from neurodissect.data.synth import derm as synth_derm
from neurodissect.data.synth.counterfactual import concept_names, recipe_present, render_pair
from neurodissect.data.synth.layout import STREAM_CASE, STREAM_RENDER, stream

SIZE = 48


def _changed(pair) -> np.ndarray:
    d = pair.with_concept != pair.without
    return d.any(axis=-1) if d.ndim == 3 else d


@pytest.mark.parametrize("kind", ["synthderm", "synthcxr"])
def test_pair_differs_only_inside_the_concepts_region(kind):
    for concept in concept_names(kind):
        changed = 0
        for index in range(3):
            pair = render_pair(
                kind, concept, seed=1, index=index, size=SIZE, difficulty=0.5, noise=0.1
            )
            diff = _changed(pair)
            assert not (diff & ~pair.region).any(), (kind, concept, index)
            changed += int(diff.sum())
        assert changed > 0, f"{kind}: toggling {concept} never changed a pixel"


@pytest.mark.parametrize(("module", "kind"), [(synth_derm, "synthderm"), (synth_cxr, "synthcxr")])
def test_the_recipes_own_side_is_the_generators_image(module, kind):
    """No toggle = the generator's image, byte for byte (existing datasets unchanged)."""
    for index in range(4):
        present = recipe_present(kind, 2, index, 0.1)
        concept = concept_names(kind)[index]
        pair = render_pair(kind, concept, seed=2, index=index, size=SIZE, difficulty=0.3, noise=0.1)
        case = module.sample_case(stream(2, module.KIND_CODE, STREAM_CASE, index), 0.1)
        args = (case.sides,) if kind == "synthcxr" else ()
        image = module.render(
            stream(2, module.KIND_CODE, STREAM_RENDER, index), present, *args, SIZE, 0.3
        )
        image = image[0] if kind == "synthcxr" else image
        original = pair.with_concept if present[concept] else pair.without
        assert pair.present == present[concept]
        np.testing.assert_array_equal(original, image)


def test_adding_and_removing_are_both_real_and_deterministic():
    present = recipe_present("synthderm", 0, 0, 0.1)
    absent = next(c for c, on in present.items() if not on and c != "erythema")
    a = render_pair("synthderm", absent, seed=0, index=0, size=SIZE, difficulty=0.5, noise=0.1)
    b = render_pair("synthderm", absent, seed=0, index=0, size=SIZE, difficulty=0.5, noise=0.1)
    assert not a.present and _changed(a).any()
    np.testing.assert_array_equal(a.with_concept, b.with_concept)
    with pytest.raises(KeyError, match="no planted concept"):
        render_pair("synthderm", "nodule", seed=0, index=0, size=SIZE, difficulty=0.5, noise=0.1)


@pytest.mark.parametrize("kind", ["synthderm", "synthcxr"])
def test_a_datasets_images_are_rebuilt_from_their_ids(kind, synth_raw):
    """recipes_of maps a generated image id to its recipe: re-rendering it (any concept
    toggled off then on again) gives the dataset's PNG byte for byte."""
    from PIL import Image

    from neurodissect.data.synth import DEFAULTS
    from neurodissect.data.synth.counterfactual import recipes_of

    root = synth_raw(kind, n=160, size=32, seed=0)
    files = sorted((root / "images").glob("*.png"))[:6]
    ids = [f.stem if kind == "synthderm" else f.name for f in files]
    recipes = recipes_of(kind, ids, seed=0, n=160)
    for path, (index, case_index) in zip(files, recipes, strict=True):
        present = recipe_present(kind, 0, case_index, DEFAULTS["noise"])
        pair = render_pair(
            kind,
            "hair" if kind == "synthderm" else "nodule",
            seed=0,
            index=index,
            size=32,
            difficulty=DEFAULTS["difficulty"],
            noise=DEFAULTS["noise"],
            case_index=case_index,
        )
        concept_on = present["hair" if kind == "synthderm" else "nodule"]
        original = pair.with_concept if concept_on else pair.without
        np.testing.assert_array_equal(original, np.asarray(Image.open(path)))
    with pytest.raises(KeyError, match="not images of this"):
        recipes_of(kind, ["nope"], seed=0, n=160)
