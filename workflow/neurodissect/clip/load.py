"""load_clip: a ready-made CLIP instead of training one (clip.source open_clip | local |
transformers).

``open_clip`` downloads ``clip.model_name`` with weights ``clip.pretrained`` (needs
internet, once), or an open_clip Hub repo ``hf-hub:ORG/NAME`` (:mod:`.hub`); ``local``
copies the open_clip local-dir at ``clip.path``; ``transformers`` stores a Hugging Face
CLIP-style model from a hub id or a ``save_pretrained`` folder (:mod:`.hf`); either
way the model is stored at ``results/{dataset}/clip/model/`` exactly like a trained
one, and evaluated the same way (metrics.json: image→report recall@1/5 on the test
split where it has reports, zero-shot classification with class-name prompts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..data.manifest import read_manifest
from ..errors import ConfigError
from ..io import PathLike, write_json
from ..runtime import pick_device
from .hf import fetch_transformers
from .model import copy_local, fetch_pretrained, load_clip
from .train import evaluate_alignment

log = logging.getLogger(__name__)


# The rule's params: LoadParams plus the class of clip.source (neurodissect.dag.settings
# CLIP_SOURCES), each listing exactly the keys that source's loader reads, so a change to
# another source's keys reruns nothing.
@dataclass(frozen=True)
class LoadParams:
    """The clip keys every ready-made source reads."""

    source: str = "train"
    batch_size: int = 128  # of the evaluation


@dataclass(frozen=True)
class OpenClipSource:
    """clip.source open_clip (an hf-hub:ORG/NAME model has no pretrained tag to read)."""

    model_name: str = "ViT-B-32"
    pretrained: str = "openai"


@dataclass(frozen=True)
class LocalSource:
    """clip.source local: an open_clip local-dir folder."""

    path: str | None = None


@dataclass(frozen=True)
class TransformersSource:
    """clip.source transformers: a hub id, or a save_pretrained folder in ``path``."""

    model_name: str = "ViT-B-32"
    path: str | None = None


def obtain_clip(
    manifest_path: PathLike,
    model_out: PathLike,
    metrics_out: PathLike,
    *,
    source: str,
    model_name: str = "ViT-B-32",
    pretrained: str = "openai",
    path: PathLike | None = None,
    batch_size: int = 128,
    device: str = "auto",
    num_workers: int = 0,
) -> dict[str, Any]:
    """Rule entry point: store the CLIP of ``source`` at ``model_out`` and evaluate it."""
    manifest = read_manifest(manifest_path)  # a bad manifest fails before any download
    if source == "open_clip":
        info = fetch_pretrained(model_name, pretrained, model_out)
    elif source == "local":
        if not path:
            raise ConfigError(
                "clip.source is 'local' but clip.path is not set (an open_clip local-dir)"
            )
        info = copy_local(path, model_out)
    elif source == "transformers":
        info = fetch_transformers(model_name, path, model_out)
    else:
        raise ConfigError(
            f"clip.source={source!r}: load_clip handles open_clip, local and transformers"
        )
    model, preprocess, tokenizer = load_clip(model_out, pick_device(device))
    metrics = evaluate_alignment(
        model, preprocess, tokenizer, manifest, "test", batch_size, num_workers
    )
    write_json(metrics, metrics_out)
    log.info("%s CLIP: test %s", source, {k: v for k, v in metrics.items() if k != "split"})
    return {"clip": info}
