"""clip.source transformers: a Hugging Face ``transformers`` CLIP-style model (CLIPModel,
or any ``AutoModel`` with ``get_image_features`` / ``get_text_features``: MONET,
PubMedCLIP, PLIP, ...), from a hub id (``clip.model_name``) or a ``save_pretrained``
folder (``clip.path``).

It is stored at ``results/{dataset}/clip/model/`` as a ``save_pretrained`` folder
(``config.json``, ``model.safetensors``, the processor's and tokenizer's files) plus
``neurodissect_clip.json`` (where it came from). :func:`load_transformers_clip`
returns the same triple as an open_clip model — a module with ``encode_image`` /
``encode_text``, an image transform and a tokenizer — using the model's own
processor, so embedding and evaluation code serve both kinds unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ..io import PathLike, atomic_path

MARKER = "neurodissect_clip.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR = ("preprocessor_config.json", "processor_config.json")
TOKENIZER = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer_config.json")


def is_transformers_dir(model_dir: PathLike) -> bool:
    d = Path(model_dir)
    return (d / "config.json").is_file() and not (d / OPEN_CLIP_CONFIG).is_file()


def check_folder(model_dir: PathLike) -> None:
    """A clear InputError naming the first file a ``save_pretrained`` CLIP folder lacks."""
    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(f"{d}: not a folder (expected a transformers save_pretrained folder)")
    for what, names in (
        ("model config", ("config.json",)),
        ("weights", WEIGHTS),
        ("image processor config", PROCESSOR),
        ("tokenizer", TOKENIZER),
    ):
        if not any((d / n).is_file() for n in names):
            raise InputError(
                f"{d}: transformers CLIP folder without its {what}: missing "
                f"{' or '.join(names)} (write it with model.save_pretrained and "
                "processor.save_pretrained)"
            )


def stored_info(model_dir: PathLike) -> dict[str, Any]:
    path = Path(model_dir) / MARKER
    if not path.is_file():
        return {"source": "external"}
    return dict(json.loads(path.read_text()))


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected
    embedding; older versions and some models return the tensor itself."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersClip(torch.nn.Module):
    """A transformers CLIP-style model behind open_clip's encode_image / encode_text."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))

    def encode_text(self, batch) -> torch.Tensor:
        return _features(self.model.get_text_features(**batch))


class ImageTransform:
    """PIL image → (C, H, W) tensor by the model's own image processor."""

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]


class TextTokenizer:
    """texts → a padded, truncated batch (``.to(device)`` like open_clip's tokens)."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts):
        from transformers import BatchEncoding

        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        # CLIP text towers take ids and mask only (BERT tokenizers add token_type_ids)
        return BatchEncoding({k: enc[k] for k in ("input_ids", "attention_mask") if k in enc})


def _load(source: str | Path):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(source, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(source)
    return model, processor


def _context_length(model) -> int:
    text_config = getattr(model.config, "text_config", model.config)
    return int(getattr(text_config, "max_position_embeddings", 77))


def _check_clip_style(model, where: Any) -> None:
    if not all(hasattr(model, m) for m in ("get_image_features", "get_text_features")):
        raise InputError(
            f"{where}: {type(model).__name__} has no get_image_features / "
            "get_text_features (not a CLIP-style image-text model)"
        )


def load_transformers_clip(model_dir: PathLike, device: Any = "cpu"):
    """(wrapped model in eval mode, image transform, tokenizer) of a stored folder."""
    check_folder(model_dir)
    try:
        model, processor = _load(Path(model_dir))
    except Exception as exc:  # corrupt weights or configs surface as many types
        raise InputError(
            f"{model_dir}: transformers cannot load this folder "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    _check_clip_style(model, model_dir)
    for part in ("image_processor", "tokenizer"):
        if getattr(processor, part, None) is None:
            raise InputError(f"{model_dir}: its processor has no {part}")
    wrapped = TransformersClip(model).to(device).eval()
    tokenizer = TextTokenizer(processor.tokenizer, _context_length(model))
    return wrapped, ImageTransform(processor.image_processor), tokenizer


def fetch_transformers(model_name: str, path: PathLike | None, dest: PathLike) -> dict[str, Any]:
    """clip.source transformers: load ``path`` (a local folder) or the hub id
    ``model_name`` and store it as a ``save_pretrained`` folder at ``dest``."""
    if path:
        check_folder(path)
        info = {"source": "transformers", "path": str(path)}
        try:
            model, processor = _load(Path(path))
        except Exception as exc:  # as in load_transformers_clip
            raise InputError(
                f"{path}: transformers cannot load this folder "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
    elif model_name:
        info = {"source": "transformers", "model_name": model_name}
        try:
            model, processor = _load(model_name)
        except Exception as exc:  # download / hub errors come in many types
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            raise ConfigError(
                f"cannot fetch transformers model clip.model_name={model_name!r} "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); "
                + (
                    "HF_HUB_OFFLINE is set: it must be in the Hugging Face cache"
                    if offline
                    else "clip.source: transformers needs internet access once"
                )
                + ", or give a local save_pretrained folder as clip.path"
            ) from None
        info["revision"] = getattr(model.config, "_commit_hash", None) or ""
    else:
        raise ConfigError(
            "clip.source is 'transformers' but neither clip.model_name (a hub id) "
            "nor clip.path (a save_pretrained folder) is set"
        )
    _check_clip_style(model, path or model_name)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info
