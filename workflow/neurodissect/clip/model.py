"""The CLIP model folder: an open_clip ``local-dir`` that any open_clip user can load.

Layout of ``results/{dataset}/clip/model/``::

    open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ..., "neurodissect": {...}}
    open_clip_model.safetensors  the weights (no pickle)

so ``open_clip.create_model_and_transforms("local-dir:results/<ds>/clip/model")`` and
``open_clip.get_tokenizer("local-dir:...")`` load it. The ``neurodissect`` block records
where the model came from (source train / open_clip / local, model name, tag).

The small CLIP trained here is built from a config dict (``pretrained=None``): a
modified-ResNet or ViT image tower and a short causal text transformer over
open_clip's BPE vocabulary (shipped in the wheel, so nothing is downloaded).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import settings_from
from ..errors import ConfigError, InputError
from ..io import PathLike, atomic_path

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Architecture:
    """Shape of the small CLIP (the ``clip`` config keys that build it)."""

    embed_dim: int = 128
    image_size: int = 64
    vision_tower: str = "resnet"  # resnet | vit
    vision_width: int = 16
    vision_layers: int = 1  # resnet: blocks per stage; vit: transformer layers (x4)
    text_width: int = 128
    text_layers: int = 3
    context_length: int = 128

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Architecture:
        # the clip section also holds training keys: only the architecture's are read
        return settings_from(cls, {k: cfg[k] for k in cfg if k in cls.__dataclass_fields__})


def model_config(arch: Architecture) -> dict[str, Any]:
    """open_clip ``model_cfg`` of the small CLIP."""
    if arch.vision_tower == "resnet":
        if arch.image_size % 32:
            raise ConfigError(
                f"clip.image_size={arch.image_size}: the resnet image tower needs a multiple "
                "of 32 (it downsamples 32x); use e.g. 32, 64 or 96, or clip.vision_tower: vit"
            )
        # ModifiedResNet: 4 stages, output channels 32 x width, attention-pool heads of 64
        vision = {
            "layers": [arch.vision_layers] * 4,
            "width": arch.vision_width,
            "image_size": arch.image_size,
            "head_width": 64,
        }
    elif arch.vision_tower == "vit":
        patch = max(4, arch.image_size // 8)
        if arch.image_size % patch:
            raise ConfigError(
                f"clip.image_size={arch.image_size}: the vit tower needs a multiple of 8"
            )
        vision = {
            "layers": 4 * arch.vision_layers,
            "width": 4 * arch.vision_width,
            "head_width": 32,
            "patch_size": patch,
            "image_size": arch.image_size,
        }
    else:
        raise ConfigError(f"clip.vision_tower={arch.vision_tower!r}: expected resnet or vit")
    text = {
        "context_length": arch.context_length,
        "vocab_size": 49408,
        "width": arch.text_width,
        "heads": max(1, arch.text_width // 32),
        "layers": arch.text_layers,
    }
    return {"embed_dim": arch.embed_dim, "vision_cfg": vision, "text_cfg": text}


def preprocess_config(image_size: int) -> dict[str, Any]:
    """open_clip ``preprocess_cfg``: square resize, ImageNet statistics (as the opaque model)."""
    return {
        "size": image_size,
        "mode": "RGB",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }


def build_clip(model_cfg: dict[str, Any]):
    """A randomly initialised open_clip CLIP from a ``model_cfg`` dict (pretrained=None)."""
    from open_clip.model import CLIP

    return CLIP(**json.loads(json.dumps(model_cfg)))  # a copy: CLIP keeps the dicts


# -- the local-dir folder ----------------------------------------------------------------
def save_local_dir(
    model,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    dest: PathLike,
    info: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write ``dest`` atomically as an open_clip local-dir (config + safetensors weights);
    ``extra(folder)`` adds files (a Hugging Face text tower's tokenizer and config)."""
    from safetensors.torch import save_file

    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg, "neurodissect": info}
    # safetensors refuses shared storage; CLIP ties nothing, but make each tensor its own
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(tmp / WEIGHTS_FILE))
        if extra is not None:
            extra(tmp)


def read_config(model_dir: PathLike) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{model_dir}: not an open_clip local-dir (no {CONFIG_FILE}; expected a folder "
            "written by train_clip / load_clip or open_clip's push_to_hf_hub)"
        ) from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if "model_cfg" not in config:
        raise InputError(f"{path}: lacks the 'model_cfg' block open_clip needs")
    return config


def model_info(model_dir: PathLike) -> dict[str, Any]:
    """Where the model in ``model_dir`` came from (the config's ``neurodissect`` block)."""
    from . import hf

    if hf.is_transformers_dir(model_dir):
        return hf.stored_info(model_dir)
    return dict(read_config(model_dir).get("neurodissect", {"source": "external"}))


def load_clip(model_dir: PathLike, device: Any = "cpu"):
    """(model in eval mode, image preprocess, tokenizer) of an open_clip local-dir.

    Loads exactly as ``open_clip.create_model_and_transforms("local-dir:<model_dir>")``;
    a missing or broken folder is an InputError naming it.
    """
    import open_clip

    from . import hf, hub

    if hf.is_transformers_dir(model_dir):
        return hf.load_transformers_clip(model_dir, device)
    config = read_config(model_dir)  # a clear error for a folder that is not a local-dir
    name = f"local-dir:{Path(model_dir)}"
    weights = sorted(
        p.name for p in Path(model_dir).glob("*") if p.suffix in (".safetensors", ".bin", ".pth")
    )
    if not weights:
        raise InputError(
            f"{model_dir}: open_clip local-dir without weights (no .safetensors/.bin/.pth)"
        )
    try:
        # a Hugging Face text tower is built from the config stored beside the weights
        overrides = hub.local_text_tower(model_dir, config["model_cfg"])
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, device=device, **overrides
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise InputError(f"{model_dir}: open_clip cannot load this local-dir ({exc})") from None
    model.eval()
    return model, preprocess, tokenizer


def fetch_pretrained(model_name: str, pretrained: str, dest: PathLike) -> dict[str, Any]:
    """clip.source open_clip: download ``model_name``/``pretrained`` (needs internet) and
    store it as a local-dir at ``dest``, so later rules never download."""
    import open_clip
    from open_clip.factory import get_model_config
    from open_clip.pretrained import get_pretrained_cfg

    from .hub import HUB_PREFIX, fetch_hub

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
