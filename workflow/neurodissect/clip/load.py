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

import json
import logging
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import settings_from
from ..dag.settings import CLIP_SOURCES
from ..data.manifest import read_manifest
from ..errors import ConfigError, InputError
from ..io import PathLike, atomic_path, write_json
from ..runtime import pick_device
from .hf import fetch_transformers
from .hub import HUB_PREFIX, fetch_hub
from .model import CONFIG_FILE, load_clip, model_info, save_local_dir
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


@dataclass(frozen=True)
class LoadSettings:
    """What load_clip reads: the keys every source reads, the chosen source's own keys and
    the runtime keys of the evaluation."""

    shared: LoadParams
    own: OpenClipSource | LocalSource | TransformersSource  # the class of shared.source
    device: str = "auto"
    num_workers: int = 0

    @classmethod
    def from_config(
        cls, clip: dict[str, Any], runtime: dict[str, Any] | None = None
    ) -> LoadSettings:
        """From the rule's clip keys (LoadParams' and the source class's; any other key is a
        ConfigError) and the runtime section."""
        shared_keys = {f.name for f in fields(LoadParams)}
        shared = settings_from(LoadParams, {k: v for k, v in clip.items() if k in shared_keys})
        spec = CLIP_SOURCES.get(shared.source)
        if spec is None:
            raise ConfigError(
                f"clip.source={shared.source!r}: load_clip handles {', '.join(CLIP_SOURCES)}"
            )
        own_keys = {k: v for k, v in clip.items() if k not in shared_keys}
        own = settings_from(globals()[spec.partition(":")[2]], own_keys, section="clip")
        return settings_from(cls, runtime, {"shared": shared, "own": own})


def obtain_clip(
    manifest_path: PathLike, model_out: PathLike, metrics_out: PathLike, settings: LoadSettings
) -> dict[str, Any]:
    """Rule entry point: store the CLIP of ``settings``' source at ``model_out`` and
    evaluate it (metrics_out)."""
    manifest = read_manifest(manifest_path)  # a bad manifest fails before any download
    own = settings.own
    if isinstance(own, OpenClipSource):
        info = fetch_pretrained(own.model_name, own.pretrained, model_out)
    elif isinstance(own, LocalSource):
        if not own.path:
            raise ConfigError(
                "clip.source is 'local' but clip.path is not set (an open_clip local-dir)"
            )
        info = copy_local(own.path, model_out)
    else:
        info = fetch_transformers(own.model_name, own.path, model_out)
    model, preprocess, tokenizer = load_clip(model_out, pick_device(settings.device))
    metrics = evaluate_alignment(
        model,
        preprocess,
        tokenizer,
        manifest,
        "test",
        settings.shared.batch_size,
        settings.num_workers,
    )
    write_json(metrics, metrics_out)
    log.info(
        "%s CLIP: test %s",
        settings.shared.source,
        {k: v for k, v in metrics.items() if k != "split"},
    )
    return {"clip": info}


# -- the sources ---------------------------------------------------------------------------
def fetch_pretrained(model_name: str, pretrained: str, dest: PathLike) -> dict[str, Any]:
    """clip.source open_clip: download ``model_name``/``pretrained`` (needs internet) and
    store it as a local-dir at ``dest``, so later rules never download."""
    import open_clip
    from open_clip.factory import get_model_config
    from open_clip.pretrained import get_pretrained_cfg

    if model_name.startswith(HUB_PREFIX):  # the repo carries its config: no tag needed
        return fetch_hub(model_name, dest)
    model_cfg = get_model_config(model_name)
    if model_cfg is None:
        raise ConfigError(
            f"clip.model_name={model_name!r} is not an open_clip model; "
            f"known: {', '.join(open_clip.list_models()[:20])}, ..."
        )
    tag_cfg = get_pretrained_cfg(model_name, pretrained) or {}
    if not tag_cfg and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ConfigError(
            f"clip.pretrained={pretrained!r} is not a tag of {model_name!r} "
            f"(known: {tags}) nor a weights file"
        )
    # weights trained with QuickGELU need it in the stored config too
    model_cfg["quick_gelu"] = bool(tag_cfg.get("quick_gelu", model_cfg.get("quick_gelu", False)))
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, force_quick_gelu=model_cfg["quick_gelu"]
        )
    except Exception as exc:  # download / hub errors come in many types
        raise ConfigError(
            f"cannot fetch open_clip model {model_name!r} with weights {pretrained!r} "
            f"(clip.source: open_clip needs internet access, or a cached copy; "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Offline, use clip.source: local with clip.path, or clip.source: train"
        ) from None
    preprocess_cfg = {
        k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg
    }
    preprocess_cfg["size"] = model_cfg["vision_cfg"].get("image_size", 224)
    info = {"source": "open_clip", "model_name": model_name, "pretrained": pretrained}
    save_local_dir(model, model_cfg, preprocess_cfg, dest, info)
    return info


def copy_local(path: PathLike, dest: PathLike) -> dict[str, Any]:
    """clip.source local: check that ``path`` loads as a local-dir, then copy it to ``dest``."""
    src = Path(path)
    if not src.is_dir():
        raise InputError(f"{src}: clip.path is not a folder (expected an open_clip local-dir)")
    load_clip(src)  # fails with a clear error before anything is copied
    info = {"source": "local", "path": str(src), "origin": model_info(src)}
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        config = json.loads((tmp / CONFIG_FILE).read_text())
        config["neurodissect"] = info
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return info
