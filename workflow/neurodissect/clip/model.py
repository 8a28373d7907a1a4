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
# a Hugging Face text tower's config (BiomedCLIP's PubMedBERT), stored beside the weights
TEXT_TOWER_DIR = "hf_text"


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


def has_hf_text_tower(model_cfg: dict[str, Any]) -> bool:
    return "hf_model_name" in model_cfg.get("text_cfg", {})


def local_text_tower(model_dir: PathLike, model_cfg: dict[str, Any]) -> dict[str, Any]:
    """``create_model`` overrides that build a Hugging Face text tower from the config
    stored in ``model_dir`` instead of the hub; ``{}`` for open_clip's own text tower."""
    if not has_hf_text_tower(model_cfg):
        return {}
    folder = Path(model_dir) / TEXT_TOWER_DIR
    for need in (folder / "config.json", Path(model_dir) / "tokenizer_config.json"):
        if not need.is_file():
            raise InputError(
                f"{model_dir}: its text tower is a Hugging Face model but "
                f"{need.relative_to(model_dir)} is missing (load_clip stores it there)"
            )
    text_cfg = dict(model_cfg["text_cfg"], hf_model_name=str(folder), hf_model_pretrained=False)
    return {"text_cfg": text_cfg}


def load_clip(model_dir: PathLike, device: Any = "cpu"):
    """(model in eval mode, image preprocess, tokenizer) of an open_clip local-dir.

    Loads exactly as ``open_clip.create_model_and_transforms("local-dir:<model_dir>")``;
    a missing or broken folder is an InputError naming it.
    """
    import open_clip

    from . import hf

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
        overrides = local_text_tower(model_dir, config["model_cfg"])
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, device=device, **overrides
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise InputError(f"{model_dir}: open_clip cannot load this local-dir ({exc})") from None
    model.eval()
    return model, preprocess, tokenizer
