"""embed_images and embed_texts: the CLIP embeddings the annotation and naming stages match.

``image_emb.zarr`` has the activation-store layout (:mod:`neurodissect.activations.store`):
root attrs (kind ``clip_image_embeddings``, model source, n_units = D, splits), one
subgroup per non-empty split with ``image_id`` (N,) and ``acts`` (N, D) float32, rows
in manifest order — ``acts`` are the L2-normalised image embeddings of every image.

``text_emb.zarr`` (a plain Zarr v3 group)::

    concepts      (K,)   str, the vocabulary in concepts.parquet order
    emb           (K, D) float32, L2-normalised embeddings of template.format(concept)
    template_emb  (D,)   float32, L2-normalised embedding of the bare template
    attrs: template, bare_template, model (where the CLIP came from), n_concepts, dim

The bare template is the template with ``{}`` removed and whitespace tidied ("an image
showing {}" → "an image showing"): the debiasing reference g_0 of template-debiased
matching, s_i(c) = cos(f_i, g_c) − cos(f_i, g_0).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..activations.store import StoreWriter
from ..config import settings_from
from ..data.manifest import SPLITS, read_manifest
from ..errors import ConfigError, InputError
from ..io import PathLike, atomic_path, read_table
from ..runtime import pick_device, progress
from .data import ManifestImageFiles
from .encode import encode_image_batches, encode_texts
from .model import load_clip, model_info

log = logging.getLogger(__name__)
IMAGE_STORE_KIND = "clip_image_embeddings"


def bare_template(template: str) -> str:
    """The template without its ``{}`` slot, whitespace tidied ("a photo of {}." → "a photo of.")."""
    text = template.replace("{}", " ")
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return " ".join(text.split())


def prompts(template: str, concepts) -> list[str]:
    if template.count("{}") != 1:
        raise ConfigError(f"annotate.template={template!r}: expected exactly one '{{}}' slot")
    return [template.replace("{}", str(c)) for c in concepts]


@dataclass(frozen=True)
class ImageEmbedParams:
    """embed_images' settings: clip.batch_size, activations.shards and the runtime keys."""

    batch_size: int = 128
    shards: int = 1  # activations.shards: jobs writing row ranges of one store
    chunk_rows: int = 1024  # rows per Zarr chunk (not a config key)
    device: str = "auto"
    num_workers: int = 0

    @classmethod
    def from_config(
        cls, clip: dict[str, Any], shards: int = 1, runtime: dict[str, Any] | None = None
    ) -> ImageEmbedParams:
        return settings_from(cls, runtime, {"shards": shards}, clip, section="clip")


@dataclass(frozen=True)
class TextEmbedParams:
    """embed_texts' settings: the prompt template (annotate.template) and the device."""

    template: str = "an image showing {}"
    batch_size: int = 256  # prompts per forward pass (not a config key)
    device: str = "auto"

    @classmethod
    def from_config(
        cls, annotate: dict[str, Any], runtime: dict[str, Any] | None = None
    ) -> TextEmbedParams:
        return settings_from(cls, runtime, annotate, section="annotate")


def embed_images(
    model_dir: PathLike,
    manifest_path: PathLike,
    store_out: PathLike,
    params: ImageEmbedParams,
    shard: int | None = None,
) -> dict[str, Any]:
    """Rule entry point: L2-normalised image embeddings of every split to ``store_out``.
    ``shard=i`` of ``params.shards``: only shard i's rows, a part for ``seal_shards``."""
    batch_size, chunk_rows = params.batch_size, params.chunk_rows
    dev = pick_device(params.device)
    model, preprocess, tokenizer = load_clip(model_dir, dev)
    manifest = read_manifest(manifest_path)
    dim = encode_texts(model, tokenizer, [""]).shape[1]
    info = model_info(model_dir)
    attrs = {
        "kind": IMAGE_STORE_KIND,
        "layer": "clip_image",
        "model": info,
        "normalised": True,
        "classes": manifest.classes,
        "task": manifest.task,
    }
    counts = {}
    ranges = None
    if shard is not None:  # whole chunks and whole batches, so the bytes equal one job's
        import math

        from ..activations.shards import plan_ranges, row_alignment

        n_rows = {s: len(manifest.split(s)) for s in SPLITS if len(manifest.split(s))}
        align = {
            s: math.lcm(batch_size, row_alignment(n, chunk_rows, dim)) for s, n in n_rows.items()
        }
        ranges, shard_info = plan_ranges(n_rows, align, params.shards, shard)
        attrs |= shard_info
    with StoreWriter(store_out, n_units=dim, attrs=attrs, chunk_rows=chunk_rows) as writer:
        for split in SPLITS:
            part = manifest.split(split)
            if not len(part):
                continue
            files = ManifestImageFiles(part, preprocess)
            span = ranges[split] if ranges is not None else None
            writer.begin_split(split, files.ids, rows=span)
            images = files if span is None else Subset(files, range(*span))
            loader = DataLoader(
                images,
                batch_size=batch_size,
                shuffle=False,
                num_workers=params.num_workers,
                pin_memory=dev.type == "cuda",
            )
            try:
                for emb in encode_image_batches(model, progress(loader, desc=f"embed {split}")):
                    writer.append(split, emb)
            except torch.OutOfMemoryError:
                raise ConfigError(
                    f"out of GPU memory embedding images at batch size {batch_size}; lower it"
                ) from None
            counts[split] = len(images)
    log.info("embedded %s images (dim %d)", counts, dim)
    return {"n_images": counts, "dim": dim, "device": str(dev), "clip": info}


def read_concepts(path: PathLike) -> list[str]:
    df = read_table(path, "not found (run build_vocabulary first)")
    if "concept" not in df.columns:
        raise InputError(f"{path}: no 'concept' column (has {list(df.columns)})")
    concepts = df["concept"].astype(str).tolist()
    if not concepts:
        raise InputError(f"{path}: the vocabulary is empty")
    return concepts


def embed_texts(
    model_dir: PathLike, concepts_path: PathLike, store_out: PathLike, params: TextEmbedParams
) -> dict[str, Any]:
    """Rule entry point: prompt embeddings of every concept plus the bare template's."""
    import zarr

    template = params.template
    concepts = read_concepts(concepts_path)
    texts = prompts(template, concepts)
    bare = bare_template(template)
    model, _, tokenizer = load_clip(model_dir, pick_device(params.device))
    emb = encode_texts(model, tokenizer, texts, params.batch_size)
    template_emb = encode_texts(model, tokenizer, [bare])[0]
    info = model_info(model_dir)
    with atomic_path(store_out) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.create_array("concepts", shape=(len(concepts),), dtype=str)[:] = np.asarray(concepts)
        group.create_array(
            "emb", shape=emb.shape, dtype="float32", chunks=(min(len(emb), 4096), emb.shape[1])
        )[:] = emb
        group.create_array("template_emb", shape=template_emb.shape, dtype="float32")[:] = (
            template_emb
        )
        group.attrs.update(
            {
                "template": template,
                "bare_template": bare,
                "model": info,
                "n_concepts": len(concepts),
                "dim": int(emb.shape[1]),
            }
        )
    log.info(
        "embedded %d concept prompts (%r) and the bare template %r", len(texts), template, bare
    )
    return {"n_concepts": len(concepts), "dim": int(emb.shape[1]), "clip": info}


def read_text_embeddings(path: PathLike) -> dict[str, Any]:
    """concepts (K,), emb (K, D), template_emb (D,) and attrs of a text_emb.zarr."""
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        return {
            "concepts": np.asarray(group["concepts"][:]).astype(object).astype(str),
            "emb": group["emb"][:],
            "template_emb": group["template_emb"][:],
            "attrs": dict(group.attrs),
        }
    except (FileNotFoundError, KeyError) as exc:
        raise InputError(f"{path}: not a text embedding store ({exc})") from None
