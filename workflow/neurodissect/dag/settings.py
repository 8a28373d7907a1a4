"""Rule params from the stage settings dataclasses: each rule passes exactly the keys of
its config section that its stage's settings class has fields for, so changing a key
reruns only the rules whose class reads it, and no key list is kept by hand.

Read at parse time from the source (``ast``): importing the stage modules would load
torch into every Snakemake start. A test checks these names against the real classes.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .code import PACKAGE_DIR

# clip.source -> the settings class of that ready-made source's own keys (rule load_clip)
CLIP_SOURCES: dict[str, str] = {
    "open_clip": "clip.load:OpenClipSource",
    "local": "clip.load:LocalSource",
    "transformers": "clip.load:TransformersSource",
}

# config section -> the settings classes ("module:Class" in the package) that read it.
# The schema-defaults test walks this table: a key of a section that none of its
# classes has (nor WORKFLOW_KEYS) would be dropped silently, so it fails the test.
SECTIONS: dict[str, tuple[str, ...]] = {
    "activations": ("activations.extract:ExtractParams",),
    "annotate": (
        "annotate.exemplars:ExemplarParams",
        "annotate.matching:MatchParams",
        "evaluate.annotation:AnnotationEvalParams",
        "clip.embed:TextEmbedParams",
    ),
    "atlas": ("atlas.settings:AtlasParams",),
    "cav": ("cav:CAVParams",),
    "cbm": ("cbm.model:CBMParams", "cbm.selection:SelectParams", "evaluate.cbm:CBMEvalParams"),
    "clip": (
        "clip.train:ClipParams",
        "clip.load:LoadParams",
        *CLIP_SOURCES.values(),
        "clip.embed:ImageEmbedParams",
    ),
    "data": ("data.prepare:PrepareParams",),
    "naming": ("naming.run:NamingParams",),
    "opaque": ("opaque.train:OpaqueTrainParams",),
    "sae": (
        "sae.train:SAETrainParams",
        "sae.evaluate:SAEEvalParams",
        "sae.baselines:BaselineParams",
    ),
    "verify": ("verify.run:VerifyParams", "verify.run:ExplanationSettings"),
    "vocab": ("vocab:VocabParams",),
}


@cache
def field_names(spec: str, package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """The dataclass fields of ``spec`` ("module:Class"), in order, read from its source
    (annotated class-level names; ``ClassVar`` ones are not fields)."""
    module, _, name = spec.partition(":")
    path = package_dir.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return tuple(
                stmt.target.id
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and "ClassVar" not in ast.unparse(stmt.annotation)
            )
    raise LookupError(f"{path}: no class {name}")


def settings_params(
    section: Mapping[str, Any], spec: str, package_dir: Path = PACKAGE_DIR
) -> dict[str, Any]:
    """The keys of a config ``section`` that the settings class ``spec`` has fields for, in
    the section's order (fields the section lacks the rule fills from elsewhere, e.g.
    image_size from opaque)."""
    names = set(field_names(spec, package_dir))
    return {k: v for k, v in section.items() if k in names}
